package positions

import (
	"sync"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
)

// Tracker turns the acknowledgements of one open file generation into committed positions.
//
// The reader registers each chunk, in file order, with NewAck. Acks complete in any order (one
// output may be faster than another); the tracker commits to the store the End of the longest
// prefix of registered acks that are complete and not failed. So the committed offset never runs
// ahead of delivery: every record before it was delivered, rejected to the dead-letter store,
// spooled, or deliberately dropped.
//
// An Ack that completes with a Failed record blocks progress past it for good: nothing after it
// is committed while this process lives, and after a restart the records from the last committed
// offset on are read again (and deduplicated downstream by their deterministic ids). That is the
// intended reaction to a shutdown deadline or a fatal output error.
//
// NewAck and Close must be called from one goroutine (the reader); the acknowledgements may
// arrive on any goroutine.
type Tracker struct {
	store *Store
	key   Key
	fp    uint64
	gen   uint32
	path  string

	notify func(*event.Ack) // t.done, bound once so NewAck does not allocate a closure

	mu         sync.Mutex
	queue      []*event.Ack // registered, not yet committed; queue[head:] is live
	head       int
	registered int64 // End of the last registered ack
	committed  int64
	stuck      bool // a failed ack heads the queue: nothing more will be committed
	closed     bool
	gauge      *pathGauge
	release    func()
	charges    map[*event.Ack]held // what NewAckCharged's acks hold, until each completes
	uncharge   func(n int64)
}

// NewTracker records e in s (replacing any entry with the same key; e.Offset is where reading
// starts) and returns the tracker for that file generation. The entry is pinned against expiry
// until Close. The path label of metrics.FileUnackedBytes is e.Path.
func NewTracker(s *Store, e Entry) *Tracker {
	s.Put(e)
	t := &Tracker{
		store:      s,
		key:        e.Key,
		fp:         e.Fingerprint,
		gen:        e.Generation,
		path:       e.Path,
		registered: e.Offset,
		committed:  e.Offset,
		gauge:      acquireGauge(e.Path),
		release:    s.hold(e.Key),
	}
	t.notify = t.done
	return t
}

// NewAck registers the next chunk of the file, whose last record ends at end, and returns its
// Ack holding the seal reference (see event.Ack). Chunks must be registered in file order; an
// end before the previous one is raised to it.
func (t *Tracker) NewAck(end int64) *event.Ack {
	t.mu.Lock()
	defer t.mu.Unlock()
	if end < t.registered {
		end = t.registered
	}
	a := event.NewAck(end, t.notify)
	if !t.closed {
		t.gauge.g.Add(float64(end - t.registered))
	}
	t.registered = end
	if !t.stuck {
		t.queue = append(t.queue, a)
	}
	return a
}

// SetUncharge sets the function that NewAckCharged's amounts are given back to when their
// Ack completes (delivered or failed). Call it once, before NewAckCharged.
func (t *Tracker) SetUncharge(f func(n int64)) { t.uncharge = f }

// held is what a chunk holds until its Ack completes.
type held struct {
	n    int64
	free func()
}

// NewAckCharged is NewAck for a chunk that holds n bytes of a budget and memory that free
// gives back (either may be zero): when the Ack's last reference is released, whatever its
// status, free is called, then n is passed to the SetUncharge function (on the releasing
// goroutine, without the tracker's lock held). Every holder of the Ack has then let go of the
// chunk's records (event.Record's contract), so free may reuse their memory.
func (t *Tracker) NewAckCharged(end, n int64, free func()) *event.Ack {
	a := t.NewAck(end)
	if n > 0 || free != nil {
		t.mu.Lock()
		if t.charges == nil {
			t.charges = make(map[*event.Ack]held)
		}
		t.charges[a] = held{n, free}
		t.mu.Unlock()
	}
	return a
}

// done runs when an Ack's last reference is released.
func (t *Tracker) done(a *event.Ack) {
	t.mu.Lock()
	if h, ok := t.charges[a]; ok {
		delete(t.charges, a)
		t.mu.Unlock()
		if h.free != nil {
			h.free()
		}
		if h.n > 0 {
			t.uncharge(h.n)
		}
		t.mu.Lock()
	}
	defer t.mu.Unlock()
	if t.stuck {
		return
	}
	end := t.committed
	for t.head < len(t.queue) {
		a := t.queue[t.head]
		if a.Pending() != 0 {
			break
		}
		if a.Failed() {
			t.stuck = true
			t.queue, t.head = nil, 0
			t.store.log.Warn("delivery failed: the position of this file stays where it is until restart, "+
				"then the records after it are read again", "path", t.path, "offset", end)
			break
		}
		end = a.End
		t.queue[t.head] = nil
		t.head++
	}
	if t.head > 64 && t.head*2 >= len(t.queue) {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue, t.head = t.queue[:n], 0
	}
	if end == t.committed {
		return
	}
	if !t.closed {
		t.gauge.g.Sub(float64(end - t.committed))
	}
	t.committed = end
	t.store.Commit(t.key, t.fp, t.gen, end)
}

// Committed returns the offset committed so far.
func (t *Tracker) Committed() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed
}

// Close ends the generation: the reader registers no more chunks. Acks still outstanding keep
// committing when they complete. Close unpins the store entry (it then expires after the
// retention) and removes this tracker's share of metrics.FileUnackedBytes; the label is deleted
// once no tracker of the path remains. Safe to call twice.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	t.gauge.g.Sub(float64(t.registered - t.committed))
	releaseGauge(t.gauge)
	t.release()
}

// pathGauge is a FileUnackedBytes child shared by the trackers of one path (a rotated file
// draining and its successor have the same discovered path).
type pathGauge struct {
	path string
	g    *metrics.Gauge
	refs int
}

var (
	gaugesMu sync.Mutex
	gauges   = map[string]*pathGauge{}
)

func acquireGauge(path string) *pathGauge {
	gaugesMu.Lock()
	defer gaugesMu.Unlock()
	pg, ok := gauges[path]
	if !ok {
		pg = &pathGauge{path: path, g: metrics.FileUnackedBytes.WithLabelValues(path)}
		gauges[path] = pg
	}
	pg.refs++
	return pg
}

func releaseGauge(pg *pathGauge) {
	gaugesMu.Lock()
	defer gaugesMu.Unlock()
	pg.refs--
	if pg.refs == 0 {
		delete(gauges, pg.path)
		metrics.FileUnackedBytes.DeleteLabelValues(pg.path)
	}
}
