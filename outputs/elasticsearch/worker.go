package elasticsearch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/klauspost/compress/gzip"

	"github.com/skiff-logs/skiff/agent/event"
)

// bulkPath asks only for what per-item handling needs: a successful item is {"status":201}.
const bulkPath = "/_bulk?filter_path=errors,items.*.status,items.*.error"

// clusterBlock is the error type of items refused by an index or cluster block.
var clusterBlock = []byte(`"cluster_block_exception"`)

// job is a batch taken from the queue by a worker. Only that worker touches it.
type job struct {
	b      *event.Batch
	queued time.Time // when Send queued b
	next   int       // first record not yet encoded into a request
	left   int       // records not yet delivered, rejected or failed
	// state is nil while every finished record was delivered; then, per record, the status of
	// those that were not (the zero value, Delivered, for the others).
	state []event.Status
}

// item is one record encoded in the worker's body: the segment body[off:end] holds its action
// and document lines. The pending items of a request always occupy consecutive segments.
type item struct {
	j        *job
	i        int
	off, end int
}

// fate is what a bulk response decided for an item.
type fate uint8

const (
	fateRetry fate = iota
	fateDelivered
	fateReject
)

// itemResult is an item's status and error object (errs[errOff:errEnd], empty if none) as read
// from a bulk response.
type itemResult struct {
	status         int
	errOff, errEnd int
	fate           fate
}

// worker builds bulk requests from the queue and delivers them, one at a time, retrying until
// every item is delivered, rejected or the output is aborted.
type worker struct {
	o     *Output
	body  []byte
	items []item
	cur   *job // job whose records are partly encoded; they go into the next request
	enc   *encoder
	timer *time.Timer
	iter  *jsoniter.Iterator // reads responses as they stream in
	biter *jsoniter.Iterator // reads error bodies already in memory
	res   []itemResult
	errs  []byte // error objects of the current response
	lines []byte // dead-letter lines being written
	gz    *gzip.Writer
	zbuf  bytes.Buffer
	// blocked: the last bulk response refused items for a cluster or index block.
	blocked bool
	// outcome: what the last request said about Elasticsearch's load, for the limiter.
	outcome outcome
	// replay: the worker re-sends spool members (items without a job) and never spools;
	// stopped: its last deliver ended because the output is closing or aborted.
	replay, stopped bool
}

func newWorker(o *Output) *worker {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &worker{
		o:     o,
		enc:   newEncoder(o.index),
		timer: t,
		iter:  jsoniter.Parse(jsoniter.ConfigDefault, nil, 4096),
		biter: jsoniter.ParseBytes(jsoniter.ConfigDefault, nil),
		// Never nil: jsoniter's SkipAndAppendBytes takes a nil buffer for "not capturing".
		errs: make([]byte, 0, 4096),
	}
}

func (w *worker) run() {
	for w.fill() {
		w.deliver(w.items)
		// Delivered items must not keep their jobs, batches and records (with their chunks'
		// message arenas) alive until a later, longer request overwrites them: those chunks no
		// longer count against memory_limit.
		clear(w.items)
		if w.o.aborted() {
			break
		}
	}
	w.failHeld()
}

// fill encodes records into a fresh body until it reaches FlushBytes, FlushInterval has passed
// since its oldest record was queued by Send, or the output is closing and the queue is empty.
// Once that time has passed it waits for nothing more, but still takes what is queued (up to
// FlushBytes): those records waited too. It returns false when the worker should exit: closing
// with nothing to send, or aborted (having failed the items it had encoded).
func (w *worker) fill() bool {
	o := w.o
	if cap(w.body) > 4*o.cfg.FlushBytes {
		w.body = nil // grown by an outsized record: give the memory back
	}
	w.body, w.items = w.body[:0], w.items[:0]
	var tick <-chan time.Time
	defer w.timer.Stop()
	for len(w.body) < o.cfg.FlushBytes {
		if w.cur == nil {
			if o.aborted() {
				w.finishItems(w.items, event.Failed)
				return false
			}
			j := o.take()
			if j == nil {
				select {
				case <-o.closing:
					return len(w.items) > 0
				default:
				}
				select {
				case <-o.wake:
				case <-tick:
					return true
				case <-o.closing:
				case <-o.abortCtx.Done():
				}
				continue
			}
			w.cur = j
		}
		j := w.cur
		recs := j.b.Records
		for j.next < len(recs) && len(w.body) < o.cfg.FlushBytes {
			off := len(w.body)
			w.body = w.enc.appendItem(w.body, recs[j.next])
			w.items = append(w.items, item{j: j, i: j.next, off: off, end: len(w.body)})
			j.next++
		}
		if j.next == len(recs) {
			w.cur = nil
		}
		if tick == nil {
			// The body's first record is its oldest: the queue is in Send order, and a job
			// left over from the previous body was taken before everything still queued.
			w.timer.Reset(time.Until(j.queued.Add(o.cfg.FlushInterval)))
			tick = w.timer.C
		}
	}
	return true
}

// deliver sends pending until every item is delivered or rejected, retrying with backoff, or
// until giveUp says to stop, which finishes the rest with the status it chose.
func (w *worker) deliver(pending []item) {
	o := w.o
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > 0 {
			if w.giveUp(pending) {
				return
			}
			d := o.backoff(attempt)
			if o.onBackoff != nil {
				o.onBackoff(d)
			}
			if !o.sleep(d) {
				continue // aborted: giveUp decides
			}
			o.m.retries.Add(float64(len(pending)))
		}
		if !w.waitGate() || !w.acquire() {
			continue
		}
		w.outcome = outcomeOther
		rest, split := w.attempt(pending)
		o.slots.release(w.outcome)
		if split {
			h := len(pending) / 2
			o.cfg.Logger.Info("bulk request refused as a whole; splitting it to find the document at fault", "output", o.cfg.Name,
				"items", len(pending), "bytes", pending[len(pending)-1].end-pending[0].off)
			w.deliver(pending[:h])
			w.deliver(pending[h:])
			return
		}
		// The delay grows while nothing gets through. A response that accepted some items
		// starts it over from the base delay: under a partial 429 storm a doubling delay (up
		// to MaxBackoff) made delivery nearly stop (reliability scenario c: 4,348 of 600,001
		// lines indexed in 5 minutes), while the adaptive concurrency already lowers the
		// load on a server that sheds it.
		if len(rest) < len(pending) {
			attempt = 0
		}
		pending = rest
	}
}

// waitGateCheck is how often a live worker waiting for the gate checks whether what it holds is
// due for the spool.
const waitGateCheck = 250 * time.Millisecond

// waitGate waits until bulk requests may go out. False means the output was aborted or, for a
// live worker, that the template has been failing for FallbackAfter (Elasticsearch unreachable
// since the start), so giveUp spools what the worker holds.
func (w *worker) waitGate() bool {
	select {
	case <-w.o.gate:
		return true
	default:
	}
	t := time.NewTicker(waitGateCheck)
	defer t.Stop()
	for {
		select {
		case <-w.o.gate:
			return true
		case <-w.o.abortCtx.Done():
			return false
		case <-t.C:
			if !w.replay && w.o.fallbackDue() {
				return false
			}
		}
	}
}

// acquire takes one of the request slots, which the live workers and the replayer share:
// replay takes one slot at a time, so live traffic keeps the others. While Elasticsearch
// rejects with 429 there are fewer slots than workers. False means the output was aborted.
func (w *worker) acquire() bool {
	return w.o.slots.acquire(w.o.abortCtx.Done())
}

// attempt makes one bulk request of pending and finishes the items it can. It returns the items
// to retry (compacted at the start of pending, their segments moved together), or split when
// the request must be cut in halves.
func (w *worker) attempt(pending []item) (rest []item, split bool) {
	o := w.o
	log := o.cfg.Logger
	body := w.body[pending[0].off:pending[len(pending)-1].end]
	ctx, cancel := context.WithTimeout(o.abortCtx, o.cfg.Timeout)
	defer cancel()
	res, err := w.post(ctx, body)
	if err != nil {
		o.m.reqErr.Inc()
		o.requestFailed()
		if !o.aborted() {
			log.Warn("bulk request failed", "output", o.cfg.Name, "items", len(pending), "error", err)
		}
		return pending, false
	}
	defer func() {
		// Reading to the end lets the connection be reused.
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}()
	status := res.StatusCode
	if status/100 == 2 {
		o.m.reqOK.Inc()
		w.blocked = false
		rest := w.handleResponse(pending, res.Body)
		if w.outcome != outcomeRejected && !w.blocked {
			w.outcome = outcomeClean
		}
		if w.blocked {
			// Elasticsearch answers but takes no writes: as good as unreachable for the spool.
			o.requestFailed()
		} else {
			o.requestSucceeded()
		}
		return rest, false
	}
	o.m.reqErr.Inc()
	errObj, fromES := w.readError(res.Body, status)
	if status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest && fromES {
		// Elasticsearch (or, for 413, a proxy) refuses this body as a whole, e.g. for an _id
		// longer than 512 bytes. Halves until one document is left, which is then the one at
		// fault. A 400 that does not come from Elasticsearch is retried instead: a proxy
		// refusing everything must not send every document to the dead-letter file.
		o.requestSucceeded()
		if len(pending) > 1 {
			return pending, true
		}
		w.res = append(w.res[:0], itemResult{status: status, errOff: 0, errEnd: len(errObj), fate: fateReject})
		w.errs = append(w.errs[:0], errObj...)
		return w.settle(pending), false
	}
	if status == http.StatusTooManyRequests {
		w.outcome = outcomeRejected
	}
	o.requestFailed()
	log.Warn("bulk request refused", "output", o.cfg.Name, "status", status, "items", len(pending),
		"error", string(truncate(errObj, 512)))
	return pending, false
}

// post sends one bulk body, gzipped when configured.
func (w *worker) post(ctx context.Context, body []byte) (*http.Response, error) {
	o := w.o
	data := body
	if o.cfg.Compression {
		if w.gz == nil {
			w.gz, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed)
		}
		w.zbuf.Reset()
		w.gz.Reset(&w.zbuf)
		_, _ = w.gz.Write(body) // writes to a bytes.Buffer cannot fail
		_ = w.gz.Close()
		data = w.zbuf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, bulkPath, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if o.cfg.Compression {
		req.Header.Set("Content-Encoding", "gzip")
	}
	start := time.Now()
	res, err := o.client.Perform(req)
	o.m.latency.Observe(time.Since(start).Seconds())
	return res, err
}

// handleResponse reads a bulk response and finishes the items it settles. When "errors" is
// false every item was accepted and the rest of the response is not even parsed. Items the
// response says nothing about (a truncated or odd response) are retried: a replay of an
// accepted one is a harmless 409.
func (w *worker) handleResponse(pending []item, body io.Reader) []item {
	it := w.iter
	it.Reset(body)
	it.Error = nil
	w.res, w.errs = w.res[:0], w.errs[:0]
	for field := it.ReadObject(); field != ""; field = it.ReadObject() {
		switch field {
		case "errors":
			if !it.ReadBool() && it.Error == nil {
				w.finishItems(pending, event.Delivered)
				return pending[:0]
			}
		case "items":
			for it.ReadArray() {
				r := w.readItem(it)
				if len(w.res) < len(pending) {
					w.res = append(w.res, r)
				}
			}
		default:
			it.Skip()
		}
		if it.Error != nil {
			break
		}
	}
	if it.Error != nil && !errors.Is(it.Error, io.EOF) {
		w.o.cfg.Logger.Warn("unreadable bulk response; retrying the items it does not settle",
			"output", w.o.cfg.Name, "settled", len(w.res), "items", len(pending), "error", it.Error)
	}
	for k := range w.res {
		r := &w.res[k]
		switch s := r.status; {
		case s/100 == 2 || s == http.StatusConflict:
			r.fate = fateDelivered
		case s == http.StatusTooManyRequests:
			r.fate = fateRetry
			w.outcome = outcomeRejected
		case s >= 500 || s < 400:
			r.fate = fateRetry
		case bytes.Contains(w.errs[r.errOff:r.errEnd], clusterBlock):
			// A write or read-only block (403): lifted by an operator or once disk is freed,
			// never the document's fault.
			r.fate = fateRetry
			w.blocked = true
		default:
			r.fate = fateReject
		}
	}
	for len(w.res) < len(pending) {
		w.res = append(w.res, itemResult{fate: fateRetry})
	}
	return w.settle(pending)
}

// readItem reads one element of "items": {"<action>":{"status":N,"error":{...}}}.
func (w *worker) readItem(it *jsoniter.Iterator) itemResult {
	var r itemResult
	for action := it.ReadObject(); action != ""; action = it.ReadObject() {
		for f := it.ReadObject(); f != ""; f = it.ReadObject() {
			switch f {
			case "status":
				r.status = it.ReadInt()
			case "error":
				r.errOff = len(w.errs)
				w.errs = it.SkipAndAppendBytes(w.errs)
				r.errEnd = len(w.errs)
			default:
				it.Skip()
			}
		}
	}
	return r
}

// settle finishes pending's items by their fates in w.res: delivered ones as Delivered,
// rejected ones as Rejected once written to the dead-letter file (or back to retry if that
// write fails). It returns the items to retry.
func (w *worker) settle(pending []item) []item {
	o := w.o
	if n := w.deadLetter(pending); n > 0 {
		if path, err := o.dead.write(time.Now(), w.lines); err != nil {
			// dead.write logged it, once per episode of failures (path is the file it tried):
			// the documents are retried, not acknowledged.
			for k := range w.res {
				if w.res[k].fate == fateReject {
					w.res[k].fate = fateRetry
				}
			}
		} else {
			first := w.firstRejected()
			o.cfg.Logger.Warn("documents rejected by Elasticsearch, written to the dead-letter file",
				"output", o.cfg.Name, "documents", n, "path", path, "status", first.status,
				"error", string(truncate(w.errs[first.errOff:first.errEnd], 512)))
		}
	}
	// Finish settled items before moving segments; finishing a job may end its batch, but never
	// one of an item still to retry.
	// They are counted first, so that whoever sees an acknowledgement also sees it counted.
	var delivered, rejected int
	for k := range pending {
		switch w.res[k].fate {
		case fateDelivered:
			delivered++
		case fateReject:
			rejected++
		}
	}
	w.count(event.Delivered, delivered)
	w.count(event.Rejected, rejected)
	for k, p := range pending {
		switch w.res[k].fate {
		case fateDelivered:
			w.finish(p.j, p.i, event.Delivered)
		case fateReject:
			w.finish(p.j, p.i, event.Rejected)
		}
	}
	if delivered+rejected == len(pending) {
		return pending[:0]
	}
	dst, n := pending[0].off, 0
	for k, p := range pending {
		if w.res[k].fate != fateRetry {
			continue
		}
		size := p.end - p.off
		copy(w.body[dst:dst+size], w.body[p.off:p.end])
		pending[n] = item{j: p.j, i: p.i, off: dst, end: dst + size}
		dst += size
		n++
	}
	return pending[:n]
}

func (w *worker) firstRejected() itemResult {
	for _, r := range w.res {
		if r.fate == fateReject {
			return r
		}
	}
	return itemResult{}
}

// deadLetter builds, into w.lines, one dead-letter line per item rejected in w.res, and returns
// their number.
func (w *worker) deadLetter(pending []item) int {
	w.lines = w.lines[:0]
	n := 0
	now := time.Now().UTC()
	for k, p := range pending {
		r := w.res[k]
		if r.fate != fateReject {
			continue
		}
		n++
		b := append(w.lines, `{"@timestamp":"`...)
		b = now.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","output":`...)
		b = appendQuoted(b, w.o.cfg.Name)
		if p.j != nil {
			rec := p.j.b.Records[p.i]
			b = append(b, `,"index":"`...)
			b = w.o.index.Append(b, rec)
			b = append(b, `","_id":`...)
			b = appendRecordID(b, rec)
		} else {
			// A replayed spool item: its action line names index and id.
			b = append(b, `,"action":`...)
			b = append(b, actionOf(w.body[p.off:p.end])...)
		}
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.status), 10)
		b = append(b, `,"error":`...)
		if r.errEnd > r.errOff {
			b = append(b, w.errs[r.errOff:r.errEnd]...)
		} else {
			b = append(b, `{"type":"unknown","reason":"Elasticsearch gave no error object"}`...)
		}
		b = append(b, `,"document":`...)
		b = append(b, documentOf(w.body[p.off:p.end])...)
		w.lines = append(b, "}\n"...)
	}
	return n
}

// readError reads the error object of a failed whole request (Elasticsearch answers
// {"error":{...},"status":N}); when the body has none, it makes one from the status and text.
// fromES reports whether the body was such an Elasticsearch error object.
func (w *worker) readError(body io.Reader, status int) (obj []byte, fromES bool) {
	data, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	it := w.biter
	it.ResetBytes(data)
	it.Error = nil
	for f := it.ReadObject(); f != "" && it.Error == nil; f = it.ReadObject() {
		if f == "error" {
			if raw := it.SkipAndReturnBytes(); it.Error == nil && len(raw) > 0 && raw[0] == '{' {
				return raw, true
			}
			break
		}
		it.Skip()
	}
	out := append([]byte(`{"type":"http_`), strconv.Itoa(status)...)
	out = append(out, `","reason":`...)
	out = appendQuoted(out, strings.ToValidUTF8(string(truncate(bytes.TrimSpace(data), 1024)), "\uFFFD"))
	return append(out, '}'), false
}

// finish records that record i of j ended with status s, and finishes j's batch when it was
// the last one. Metrics are counted by the caller.
func (w *worker) finish(j *job, i int, s event.Status) {
	if j == nil {
		return // a replayed spool item: no batch waits for it
	}
	if s != event.Delivered {
		if j.state == nil {
			j.state = make([]event.Status, len(j.b.Records))
		}
		j.state[i] = s
	}
	j.left--
	if j.left == 0 {
		w.o.finishJob(j)
	}
}

// finishItems finishes every item with status s. They are counted first, so that whoever sees
// an acknowledgement also sees it in the metrics.
func (w *worker) finishItems(items []item, s event.Status) {
	w.count(s, len(items))
	for _, p := range items {
		w.finish(p.j, p.i, s)
	}
}

// count counts n records finished with s: as the output's, or, on the replay worker, as
// replayed when they were acknowledged.
func (w *worker) count(s event.Status, n int) {
	if !w.replay {
		w.o.countResolved(s, n)
	} else if s == event.Delivered || s == event.Rejected {
		w.o.spool.replayed.Add(float64(n))
	}
}

// giveUp decides whether to stop retrying pending for now, having finished its items (or, on
// the replay worker, left them to the spool file, setting stopped). The output aborted: they are
// Failed, and read again after a restart. Requests failing with retryable errors for longer than
// FallbackAfter: they are written to the fallback spool as one member and finished Spooled,
// unless the spool is full, in which case retrying goes on and Send blocks.
func (w *worker) giveUp(pending []item) bool {
	o := w.o
	if w.replay {
		select {
		case <-o.closing:
			w.stopped = true
		case <-o.abortCtx.Done():
			w.stopped = true
		default:
		}
		return w.stopped
	}
	if o.aborted() {
		w.finishItems(pending, event.Failed)
		return true
	}
	if !o.fallbackDue() {
		return false
	}
	body := w.body[pending[0].off:pending[len(pending)-1].end]
	// A failed spool write is logged by the spool, once per episode: keep retrying Elasticsearch.
	if ok, _ := o.spool.write(body, len(pending)); !ok {
		return false
	}
	w.finishItems(pending, event.Spooled)
	return true
}

// failHeld fails the records of the partly encoded job, when the worker exits aborted.
func (w *worker) failHeld() {
	j := w.cur
	if j == nil {
		return
	}
	w.cur = nil
	w.o.countResolved(event.Failed, len(j.b.Records)-j.next)
	for i := j.next; i < len(j.b.Records); i++ {
		w.finish(j, i, event.Failed)
	}
}

// finishJob calls Done on j's batch: once with Delivered when every record was delivered, else
// after splitting off the rejected and failed records into batches finished with their status.
func (o *Output) finishJob(j *job) {
	b := j.b
	o.m.queued.Sub(float64(b.Len()))
	if state := j.state; state != nil {
		for _, s := range [...]event.Status{event.Rejected, event.Failed, event.Spooled} {
			part := b.Split(func(i int, _ *event.Record) bool { return state[i] != s })
			n := 0
			for _, x := range state {
				if x != s {
					state[n] = x
					n++
				}
			}
			state = state[:n]
			if part.Len() > 0 {
				part.Done(s)
			}
		}
	}
	b.Done(event.Delivered)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
