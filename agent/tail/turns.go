package tail

import (
	"context"
	"runtime"
	"sync"
)

// A reader has no goroutine of its own. poke queues a turn for it; one of the Tailer's workers
// runs the turn (reader.activate: read what the file has, hand on its chunks, decide whether the
// file is done) and then, if the file is not done, leaves the reader idle until the next poke.
// A thousand quiet files so hold no goroutine stacks (a goroutine per file held 2 KiB each at
// best, and 4.5 KiB each at the peak of make bench-kube), and the collector has none to scan.
//
// A reader's turn state moves:
//
//	idle    --poke-->        queued   (and into the queue)
//	queued  --worker-->      running
//	running --poke-->        rerun    (the worker queues it again after the turn)
//	running --turn ends-->   idle, or closed when the file is done or failed
//	waiting --predecessor--> idle, then poked (a file whose path's previous file still drains)
//
// Pokes coalesce: a reader is queued at most once, and a poke during a turn costs one more turn.
const (
	turnIdle int32 = iota
	turnQueued
	turnRunning
	turnRerun
	turnWaiting
	turnClosed
)

// readWorkers is the number of workers that run the readers' turns: enough to keep every core
// busy while some wait for budget or for a slow handle, few enough that their stacks (grown deep
// in parsing, enrichment and routing) cost nothing worth counting. The Budget bounds how many
// read at once in any case.
func readWorkers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// turnQueue is the readers whose turn is due, in the order they were poked.
type turnQueue struct {
	mu    sync.Mutex
	q     []*reader
	ready chan struct{} // a token per turn queued, up to one per worker: wakes a waiting worker
}

func (tq *turnQueue) push(r *reader) {
	tq.mu.Lock()
	tq.q = append(tq.q, r)
	tq.mu.Unlock()
	select {
	case tq.ready <- struct{}{}:
	default: // every worker already has a token: one of them takes this turn after its own
	}
}

// pop returns the next reader whose turn is due, waiting for one; nil once ctx has ended.
func (tq *turnQueue) pop(ctx context.Context) *reader {
	for {
		if ctx.Err() != nil {
			return nil
		}
		tq.mu.Lock()
		if len(tq.q) > 0 {
			r := tq.q[0]
			tq.q[0] = nil
			tq.q = tq.q[1:]
			tq.mu.Unlock()
			return r
		}
		tq.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-tq.ready:
		}
	}
}

// poke asks for a turn of the reader without blocking (it may be called with t.mu held).
func (r *reader) poke() {
	for {
		switch r.turn.Load() {
		case turnIdle:
			if r.turn.CompareAndSwap(turnIdle, turnQueued) {
				r.t.turns.push(r)
				return
			}
		case turnRunning:
			if r.turn.CompareAndSwap(turnRunning, turnRerun) {
				return
			}
		default: // a turn is due already, or none can be (waiting, closed)
			return
		}
	}
}

// launch gives a new reader its first turn, once its path's previous file (r.after) drained.
func (t *Tailer) launch(ctx context.Context, r *reader) {
	if r.after == nil {
		r.poke()
		return
	}
	r.turn.Store(turnWaiting)
	t.waiters.Add(1)
	go func() {
		defer t.waiters.Done()
		select {
		case <-ctx.Done(): // closeAll closes it
		case <-r.after:
			r.turn.Store(turnIdle)
			r.poke()
		}
	}()
}

// worker runs readers' turns until ctx ends. A reader whose file is done, or whose reading
// failed, is closed by the worker that ran its last turn.
func (t *Tailer) worker(ctx context.Context, handle handleFunc) {
	defer t.workers.Done()
	for {
		r := t.turns.pop(ctx)
		if r == nil {
			return
		}
		r.turn.Store(turnRunning)
		r.activate(ctx, handle)
		if r.err != nil || r.done {
			if r.err != nil && ctx.Err() == nil {
				r.logger().Error("closing file after an error; the next scan reopens it from its saved position", "err", r.err)
			}
			r.turn.Store(turnClosed)
			r.close(r.err == nil && r.g != nil)
			continue
		}
		if !r.turn.CompareAndSwap(turnRunning, turnIdle) {
			// Poked during the turn (rerun): another turn, after those already queued.
			r.turn.Store(turnQueued)
			t.turns.push(r)
		}
	}
}

// closeAll closes the readers still open once the workers and waiters have stopped (ctx ended):
// they are idle, queued or waiting, and no turn of theirs will run.
func (t *Tailer) closeAll() {
	t.mu.Lock()
	open := make([]*reader, 0, len(t.live))
	for r := range t.live {
		open = append(open, r)
	}
	t.mu.Unlock()
	for _, r := range open {
		if r.turn.Swap(turnClosed) != turnClosed {
			r.close(false)
		}
	}
}
