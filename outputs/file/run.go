package file

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/outputs/document"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// Run encodes, groups and writes the batches Send hands over, until Close has drained the
// output (it then returns nil) or ctx ends (it then finishes every batch it holds with
// event.Failed and returns ctx.Err()). It must be called once.
func (o *Output) Run(ctx context.Context) error {
	o.mu.Lock()
	if o.started {
		stopped := o.stopped
		o.mu.Unlock()
		if stopped {
			return nil // closed before it ran
		}
		return errors.New("file output: Run called twice")
	}
	o.started = true
	close(o.runStarted)
	o.mu.Unlock()
	defer close(o.done)

	w := &writer{o: o, paths: make(map[string]*pathState), retry: time.NewTimer(time.Hour)}
	w.retry.Stop()
	defer w.retry.Stop()
	tick := time.NewTicker(o.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.shutdown()
			return ctx.Err()
		case <-o.closeCh:
			return w.drain(ctx)
		case <-o.wake:
			w.intake()
		case <-tick.C:
			w.flushAll()
			w.closeIdle()
		case <-w.retry.C:
			w.flushAll()
		}
		w.armRetry()
	}
}

// pending is a batch taken by Run, with the number of path buffers still holding its records.
type pending struct {
	b       *event.Batch
	waiting int
}

// pathState is one output file: its open handle and the documents waiting to be written to it.
type pathState struct {
	path      string
	file      *gzipfile.File
	buf       []byte
	records   int
	batches   []*pending // batches with records in buf; each appears once
	due       bool       // buf reached FlushBytes
	lastWrite time.Time
	failures  int
	retryAt   time.Time
}

// writer is the state Run owns; only Run's goroutine touches it.
type writer struct {
	o     *Output
	paths map[string]*pathState
	key   []byte
	taken []*event.Batch
	due   []*pathState
	retry *time.Timer
	// failing is set when some path waits out a retry backoff; armRetry clears it.
	failing bool
}

// intake encodes the queued batches into their paths' buffers and writes the paths that are
// due: those over FlushBytes, or all of them when a Send waits for room.
func (w *writer) intake() {
	batches, waiting := w.o.take(w.taken[:0])
	for _, b := range batches {
		w.add(b)
	}
	clear(batches)
	w.taken = batches[:0]
	if waiting {
		w.flushAll()
		return
	}
	for _, ps := range w.due {
		ps.due = false
		if len(ps.buf) > 0 && !w.backingOff(ps) {
			w.flush(ps)
		}
	}
	clear(w.due)
	w.due = w.due[:0]
}

// add encodes b's records. Paths are written only after the whole batch is encoded, so that a
// batch is never finished while some of its records are not yet in a buffer.
func (w *writer) add(b *event.Batch) {
	pb := &pending{b: b}
	flushBytes := w.o.cfg.FlushBytes
	for _, r := range b.Records {
		w.key = w.o.tmpl.Append(w.key[:0], r)
		ps := w.paths[string(w.key)]
		if ps == nil {
			ps = &pathState{path: string(w.key), lastWrite: time.Now()}
			w.paths[ps.path] = ps
		}
		ps.buf = document.Append(ps.buf, r)
		ps.buf = append(ps.buf, '\n')
		ps.records++
		if n := len(ps.batches); n == 0 || ps.batches[n-1] != pb {
			ps.batches = append(ps.batches, pb)
			pb.waiting++
		}
		if len(ps.buf) >= flushBytes && !ps.due {
			ps.due = true
			w.due = append(w.due, ps)
		}
	}
}

func (w *writer) backingOff(ps *pathState) bool {
	return ps.failures > 0 && time.Now().Before(ps.retryAt)
}

// flushAll writes every path that holds documents and is not waiting out a retry backoff.
func (w *writer) flushAll() {
	for _, ps := range w.paths {
		if len(ps.buf) > 0 && !w.backingOff(ps) {
			w.flush(ps)
		}
	}
}

// flush writes ps's documents as one gzip member and finishes the batches that had their last
// unwritten records there. On failure everything stays held for a retry.
func (w *writer) flush(ps *pathState) {
	o := w.o
	start := time.Now()
	var err error
	if ps.file == nil {
		ps.file, err = gzipfile.Open(ps.path)
	}
	if err == nil {
		err = ps.file.WriteMember(ps.buf)
	}
	o.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		o.requestsErr.Inc()
		w.failed(ps, err)
		return
	}
	o.requestsOK.Inc()
	if ps.failures > 0 {
		ps.failures = 0
		if !w.anyFailing() {
			o.failures.OK(ps.path) // the episode ends when no path fails any more
		}
	}
	ps.lastWrite = time.Now()
	if cap(ps.buf) > 4*o.cfg.FlushBytes {
		ps.buf = nil // do not keep the memory a long outage made it grow to
	} else {
		ps.buf = ps.buf[:0]
	}
	ps.records = 0
	for _, pb := range ps.batches {
		pb.waiting--
		if pb.waiting == 0 {
			o.finish(pb.b, event.Delivered)
		}
	}
	clear(ps.batches)
	ps.batches = ps.batches[:0]
}

// failed records a failed write of ps and schedules the retry. The file is closed so that the
// retry opens it afresh (the directory may have been repaired, or replaced); one that holds no
// member (created by this first write) is removed, so that no empty gzip file is left behind.
func (w *writer) failed(ps *pathState, err error) {
	if ps.file != nil {
		empty := ps.file.Size() == 0
		ps.file.Close()
		if empty {
			_ = os.Remove(ps.path)
		}
		ps.file = nil
	}
	ps.failures++
	w.failing = true
	backoff := w.o.retryMin << min(ps.failures-1, 20)
	backoff = min(backoff, w.o.retryMax)
	backoff += time.Duration(rand.Int64N(int64(backoff)/5 + 1)) // jitter, so paths spread out
	ps.retryAt = time.Now().Add(backoff)
	w.o.failures.Fail("file write failed; records are held and retried, not acknowledged", ps.path, err)
}

// anyFailing reports whether some path's last write failed.
func (w *writer) anyFailing() bool {
	for _, ps := range w.paths {
		if ps.failures > 0 {
			return true
		}
	}
	return false
}

// armRetry sets the retry timer for the earliest failed path, if any.
func (w *writer) armRetry() {
	if !w.failing {
		return
	}
	var next time.Time
	for _, ps := range w.paths {
		if ps.failures > 0 && len(ps.buf) > 0 && (next.IsZero() || ps.retryAt.Before(next)) {
			next = ps.retryAt
		}
	}
	if next.IsZero() {
		w.failing = false
		w.retry.Stop()
		return
	}
	w.retry.Reset(max(time.Until(next), 0))
}

// closeIdle closes the files of paths that have nothing to write and were not written for
// idleAfter: with time-sliced paths, the files of past hours.
func (w *writer) closeIdle() {
	now := time.Now()
	for key, ps := range w.paths {
		if len(ps.buf) > 0 || now.Sub(ps.lastWrite) < w.o.idleAfter {
			continue
		}
		w.closeFile(ps)
		delete(w.paths, key)
	}
}

func (w *writer) closeFile(ps *pathState) {
	if ps.file == nil {
		return
	}
	if err := ps.file.Close(); err != nil {
		// Every member was fsynced, so nothing is lost; still worth knowing.
		w.o.log.Warn("closing output file", "path", ps.path, "err", err)
	}
	ps.file = nil
}

// drain runs after Close: it writes everything queued and held, retrying failed paths until
// Close's context (or Run's) ends, then shuts down.
func (w *writer) drain(ctx context.Context) error {
	w.o.mu.Lock()
	closeCtx := w.o.closeCtx
	w.o.mu.Unlock()
	w.intake()
	w.flushAll()
	for w.holding() {
		w.armRetry()
		select {
		case <-closeCtx.Done():
		case <-ctx.Done():
		case <-w.retry.C:
			w.flushAll()
			continue
		}
		break
	}
	w.shutdown()
	return nil
}

func (w *writer) holding() bool {
	for _, ps := range w.paths {
		if len(ps.buf) > 0 {
			return true
		}
	}
	return false
}

// shutdown refuses further Sends, finishes every batch still held with event.Failed, and closes
// the files.
func (w *writer) shutdown() {
	o := w.o
	o.mu.Lock()
	o.stopped = true
	o.wakeSenders()
	o.mu.Unlock()
	batches, _ := o.take(w.taken[:0])
	n := 0
	for _, b := range batches {
		n += b.Len()
		o.finish(b, event.Failed)
	}
	for key, ps := range w.paths {
		for _, pb := range ps.batches {
			if pb.waiting > 0 {
				pb.waiting = 0
				n += pb.b.Len()
				o.finish(pb.b, event.Failed)
			}
		}
		if ps.records > 0 {
			o.log.Error("file output stopped before writing; records failed, they will be read again after a restart",
				"path", ps.path, "records", ps.records)
		}
		w.closeFile(ps)
		delete(w.paths, key)
	}
	o.setCloseErr(n)
}
