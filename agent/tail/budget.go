package tail

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
)

// Budget bounds the memory the readers of all Tailers that share it (one per agent) hold for
// data read from files and not yet acknowledged. It has two halves:
//   - chunks: a reader acquires a chunk's size (messages and records) before handing the chunk
//     on, and the size is released when the chunk's Ack completes, delivered or failed;
//   - readers: a reader acquires its working set (read buffer, arena block, record slice)
//     before it takes a read buffer, and releases it when it reaches the end of the file.
//
// So at most a bounded number of readers read at once and at most half the budget waits in
// the outputs; the rest waits on disk (backpressure). Readers waiting for the budget hold no
// read buffer. A reader never waits for the readers half while holding chunk budget, and the
// chunks half drains through acknowledgements alone, so the two cannot deadlock. A request
// larger than a half takes the whole half and proceeds alone.
//
// A Budget is safe for concurrent use. Create it with NewBudget.
type Budget struct {
	chunks  semaphore
	readers semaphore
	// mem keeps the memory of acknowledged chunks for the readers' next chunks, up to the
	// chunks half.
	mem recycler
}

// NewBudget returns a budget of limit bytes, split evenly between chunks and readers.
func NewBudget(limit int64) *Budget {
	if limit < 2 {
		limit = 2
	}
	b := &Budget{}
	b.readers.init(b, limit/2)
	b.chunks.init(b, limit-limit/2)
	b.mem.limit = b.chunks.limit
	return b
}

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.chunks.limit + b.readers.limit }

// Used returns the bytes acquired and not yet released.
func (b *Budget) Used() int64 { return b.chunks.used() + b.readers.used() }

func (b *Budget) report() { metrics.MemoryBudgetUsedBytes.Set(float64(b.Used())) }

// semaphore is a weighted semaphore whose Acquire gives up when its context ends. Waiters are
// served in arrival order, each woken alone when its turn comes and its request fits: a waiter
// is never passed over by later, smaller requests (it would starve, and a reader waiting for a
// slot would fall behind by the whole time), and a release wakes only those it lets through,
// not every waiter (a burst of readers woken together would otherwise cost a wake-up per waiter
// per release).
type semaphore struct {
	b     *Budget
	limit int64

	mu      sync.Mutex
	n       int64
	waiters []*waiter // FIFO; waiters[0] is served first
}

// waiter is an acquire blocked in the queue; ready is closed once its n bytes were taken for it.
type waiter struct {
	n     int64
	ready chan struct{}
}

func (s *semaphore) init(b *Budget, limit int64) {
	s.b, s.limit = b, limit
}

func (s *semaphore) used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// acquire takes n bytes, blocking while they do not fit or earlier waiters wait, and returns
// what it took: n, or the whole limit when n exceeds it. The caller releases exactly the returned
// amount. It returns 0 and ctx's error when ctx ends first.
func (s *semaphore) acquire(ctx context.Context, n int64) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	if n > s.limit {
		n = s.limit
	}
	s.mu.Lock()
	if len(s.waiters) == 0 && s.n+n <= s.limit {
		s.n += n
		s.mu.Unlock()
		s.b.report()
		return n, nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	blocked := time.Now()
	defer func() { metrics.MemoryBudgetBlockedSeconds.Add(time.Since(blocked).Seconds()) }()
	select {
	case <-w.ready:
		s.b.report()
		return n, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	select {
	case <-w.ready:
		// Granted while ctx ended: give it back (to the next waiters).
		s.mu.Unlock()
		s.release(n)
		return 0, ctx.Err()
	default:
	}
	if i := slices.Index(s.waiters, w); i >= 0 {
		s.waiters = slices.Delete(s.waiters, i, i+1)
		// Leaving the head may let the next waiters through.
		s.grant()
	}
	s.mu.Unlock()
	return 0, ctx.Err()
}

// release gives back n bytes taken by acquire and wakes the waiters that now fit, in order.
func (s *semaphore) release(n int64) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.n -= n
	if s.n < 0 {
		s.mu.Unlock()
		panic("tail: budget released more than acquired")
	}
	s.grant()
	s.mu.Unlock()
	s.b.report()
}

// grant takes the bytes of the waiters at the head of the queue while they fit, and wakes
// them. Called with s.mu held.
func (s *semaphore) grant() {
	i := 0
	for ; i < len(s.waiters); i++ {
		w := s.waiters[i]
		if s.n+w.n > s.limit {
			break
		}
		s.n += w.n
		close(w.ready)
	}
	if i > 0 {
		s.waiters = slices.Delete(s.waiters, 0, i)
	}
}

// releaseChunk gives back the chunk bytes of a completed Ack.
func (b *Budget) releaseChunk(n int64) { b.chunks.release(n) }
