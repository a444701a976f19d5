package tail

import (
	"math/bits"
	"sync"

	"github.com/skiff-logs/skiff/agent/event"
)

// recycler keeps the memory of acknowledged chunks (message blocks and record slices) for the
// chunks read next. Reading at full speed otherwise allocates about 1.5 times what it reads,
// and the collector's work grows with it: with the memory it frees coming back here, the
// collector seldom runs, and a tight memory limit costs little CPU.
//
// It keeps at most limit bytes (what does not fit is left to the collector), in free lists by
// power-of-two capacity class. Blocks smaller than minRecycled are not kept: a trickling file's
// small reads cost the collector little. A recycler is safe for concurrent use; the zero value
// keeps nothing.
type recycler struct {
	limit int64

	mu     sync.Mutex
	held   int64
	blocks [classes][][]byte
	recs   [classes][][]event.Record
}

const (
	// classes covers capacities up to 2^(classes-1) bytes or records.
	classes = 32
	// minRecycled is the smallest block kept, in bytes.
	minRecycled = 4 << 10
)

// class is the free list of capacity c: capacities in [2^(k-1), 2^k) share class k.
func class(c int) int { return bits.Len(uint(c)) }

// block returns an empty block of capacity at least n (at most 2n when recycled).
func (m *recycler) block(n int) []byte {
	if n >= minRecycled {
		if b := take(m, &m.blocks, n, 1); b != nil {
			return b
		}
	}
	return make([]byte, 0, n)
}

// records returns an empty record slice of capacity at least n (at most 2n when recycled).
// Its records are zero.
func (m *recycler) records(n int) []event.Record {
	if r := take(m, &m.recs, n, recordSize); r != nil {
		return r
	}
	return make([]event.Record, 0, n)
}

// take removes from the free lists one slice of capacity in [n, 2n] and returns it emptied, or
// nil. Such a slice is in n's class or the next; size is the bytes of an element.
func take[E any](m *recycler, lists *[classes][][]E, n int, size int64) []E {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := class(n); k <= class(n)+1 && k < classes; k++ {
		list := lists[k]
		for i := len(list) - 1; i >= 0; i-- {
			if s := list[i]; cap(s) >= n && cap(s) <= 2*n {
				list[i] = list[len(list)-1]
				list[len(list)-1] = nil
				lists[k] = list[:len(list)-1]
				m.held -= int64(cap(s)) * size
				return s[:0]
			}
		}
	}
	return nil
}

// free takes back the memory of a chunk no one refers to any more: its message blocks and its
// record slice. The records are zeroed first: they must not keep Acks, Kube metadata or
// fields alive, and a record handed out again must be empty.
func (m *recycler) free(blocks [][]byte, recs []event.Record) {
	clear(recs[:cap(recs)])
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		if c := cap(b); c >= minRecycled && m.held+int64(c) <= m.limit {
			m.blocks[class(c)] = append(m.blocks[class(c)], b[:0])
			m.held += int64(c)
		}
	}
	if c := int64(cap(recs)) * recordSize; c > 0 && m.held+c <= m.limit {
		m.recs[class(cap(recs))] = append(m.recs[class(cap(recs))], recs[:0])
		m.held += c
	}
}
