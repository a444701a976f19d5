// Package elasticsearch is skiff's Elasticsearch output: it bulk-indexes records with op_type
// create and deterministic ids, so a replay is recognised (409) instead of duplicated, retries
// what Elasticsearch could not take (429, 5xx, connection errors) with jittered exponential
// backoff, and writes what it refuses for good (mapping errors) to a dead-letter gzip file.
//
// Bulk bodies are built and bulk responses read by this package (go-elasticsearch provides the
// client: addresses, TLS, authentication, node selection); esutil.BulkIndexer is not used, since
// it can drop items when a flush fails and gives no backpressure.
package elasticsearch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/outputs/template"
)

// ErrClosed is returned by Send once Close has been called (or Run's context ended); the caller
// still owns the batch it tried to send.
var ErrClosed = errors.New("elasticsearch: output closed")

// baseBackoff is the first retry delay; each further attempt doubles it, up to MaxBackoff.
const baseBackoff = 100 * time.Millisecond

// Output is an Elasticsearch output. It implements the agent's Output contract: Run once, Send
// from any goroutine, Close once at shutdown (a second Close waits for the first).
type Output struct {
	cfg    Config
	client *elasticsearch.BaseClient
	index  *template.Template
	dead   deadLetter
	spool  *spool
	m      outMetrics
	// slots bounds the bulk requests in flight, at most Workers, fewer while Elasticsearch
	// rejects with 429: live workers and the replayer take one per request.
	slots *limiter
	// replayEvery is how often the replayer looks at the spool (tests shorten it).
	replayEvery time.Duration
	// base is the first retry delay (baseBackoff; tests shorten it).
	base time.Duration
	// onBackoff, when set by tests, sees every retry delay chosen.
	onBackoff func(time.Duration)

	// The queue: batches waiting for a worker, bounded by QueueRecords records.
	mu       sync.Mutex
	batches  []queuedBatch
	head     int
	queued   int
	closed   bool          // Send refuses new batches
	running  bool          // Run has started
	finished bool          // the output is done: Run will not start any more
	space    chan struct{} // closed (and replaced) when records leave the queue
	wake     chan struct{} // capacity 1: a batch was queued

	// closing is closed by Close: workers flush what they hold without waiting for
	// FlushInterval, and exit when the queue is empty.
	closing   chan struct{}
	closeOnce sync.Once
	// abortCtx ends at Close's deadline or when Run's context ends: retries stop, requests are
	// cancelled, and whatever is still held is finished with event.Failed.
	abortCtx context.Context
	abort    context.CancelFunc
	// gate is closed once bulk requests may go out: the index template is installed (or cannot
	// be, for a reason retrying will not fix), so the first index of the day gets our mapping.
	gate     chan struct{}
	gateOnce sync.Once
	// done is closed when Run's work has ended (or at Close when Run never started).
	done     chan struct{}
	doneOnce sync.Once

	// failed counts records finished with event.Failed, for Close's error.
	failed atomic.Int64
	// failingSince is the UnixNano time of the first of the current streak of failed requests
	// (connection errors, 429/5xx on the whole request), 0 while requests succeed. Workers spool
	// once it is older than FallbackAfter; the replayer probes Elasticsearch while it is set.
	failingSince atomic.Int64
}

// queuedBatch is a batch in the queue and when Send queued it: FlushInterval counts from then.
type queuedBatch struct {
	b  *event.Batch
	at time.Time
}

type outMetrics struct {
	delivered, rejected, failed *metrics.Counter
	spooled                     *metrics.Counter
	retries                     *metrics.Counter
	reqOK, reqErr               *metrics.Counter
	latency                     *metrics.Histogram
	queued                      *metrics.Gauge
}

// New validates cfg (after filling zero fields with defaults) and builds the client. It starts
// nothing and does not contact Elasticsearch; Run does. Errors name the configuration key.
func New(cfg Config) (*Output, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	idx, err := template.Parse(cfg.Index, template.Index)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if cfg.installTemplates() && !idx.Static() && idx.Prefix() == "" {
		return nil, fmt.Errorf("index: %q: must start with literal text when install_templates is on (the template's pattern is that text followed by *)", cfg.Index)
	}
	tr, err := cfg.transport()
	if err != nil {
		return nil, err
	}
	client, err := elasticsearch.NewBaseClient(elasticsearch.Config{
		Addresses: cfg.Hosts,
		APIKey:    cfg.APIKey,
		Username:  cfg.Username,
		Password:  cfg.Password,
		Transport: tr,
		// Retrying a status is ours to decide per item; no response has status -1, so this
		// turns the client's status retries (502, 503, 504 by default) off.
		RetryOnStatus: []int{-1},
		// Connection errors move on to the next node, a bounded number of times, and never
		// after the request was cancelled.
		MaxRetries: len(cfg.Hosts),
		RetryOnError: func(req *http.Request, err error) bool {
			return req.Context().Err() == nil
		},
	})
	if err != nil {
		// The client's errors quote no credentials, but may quote a URL: keep only the kind.
		return nil, fmt.Errorf("hosts: build client: %w", err)
	}
	abortCtx, abort := context.WithCancel(context.Background())
	name := cfg.Name
	o := &Output{
		cfg:    cfg,
		client: client,
		index:  idx,
		dead:   newDeadLetter(cfg.DataDir, name, cfg.Logger),
		spool:  newSpool(cfg.DataDir, name, cfg.SpoolMaxBytes, cfg.Logger),
		base:   baseBackoff,

		slots:       newLimiter(cfg.Workers, metrics.OutputConcurrency.WithLabelValues(name)),
		replayEvery: defaultReplayEvery,
		m: outMetrics{
			delivered: metrics.OutputRecords.WithLabelValues(name, event.Delivered.String()),
			rejected:  metrics.OutputRecords.WithLabelValues(name, event.Rejected.String()),
			failed:    metrics.OutputRecords.WithLabelValues(name, event.Failed.String()),
			spooled:   metrics.OutputRecords.WithLabelValues(name, event.Spooled.String()),
			retries:   metrics.OutputRetries.WithLabelValues(name),
			reqOK:     metrics.OutputRequests.WithLabelValues(name, "ok"),
			reqErr:    metrics.OutputRequests.WithLabelValues(name, "error"),
			latency:   metrics.OutputLatency.WithLabelValues(name),
			queued:    metrics.OutputQueued.WithLabelValues(name),
		},
		space:    make(chan struct{}),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		abortCtx: abortCtx,
		abort:    abort,
		gate:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	return o, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.cfg.Name }

// Send queues b. It blocks while QueueRecords records are already waiting (a batch larger than
// that is taken alone once the queue is empty), and returns ctx.Err() if ctx ends first, or
// ErrClosed after Close; in both cases the caller keeps b. Once Send returns nil, the output
// owns b and calls b.Done exactly once.
func (o *Output) Send(ctx context.Context, b *event.Batch) error {
	n := b.Len()
	if n == 0 {
		o.mu.Lock()
		closed := o.closed
		o.mu.Unlock()
		if closed {
			return ErrClosed
		}
		b.Done(event.Delivered)
		return nil
	}
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		if o.queued == 0 || o.queued+n <= o.cfg.QueueRecords {
			o.batches = append(o.batches, queuedBatch{b: b, at: time.Now()})
			o.queued += n
			o.mu.Unlock()
			o.m.queued.Add(float64(n))
			select {
			case o.wake <- struct{}{}:
			default:
			}
			return nil
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take removes the oldest queued batch, or returns nil when there is none.
func (o *Output) take() *job {
	o.mu.Lock()
	if o.head == len(o.batches) {
		o.mu.Unlock()
		return nil
	}
	q := o.batches[o.head]
	b := q.b
	o.batches[o.head] = queuedBatch{}
	o.head++
	more := o.head < len(o.batches)
	if !more {
		o.batches, o.head = o.batches[:0], 0
	} else if o.head >= 1024 && 2*o.head >= len(o.batches) {
		n := copy(o.batches, o.batches[o.head:])
		clear(o.batches[n:])
		o.batches, o.head = o.batches[:n], 0
	}
	o.queued -= b.Len()
	close(o.space)
	o.space = make(chan struct{})
	o.mu.Unlock()
	if more {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return &job{b: b, left: b.Len(), queued: q.at}
}

// stopAccepting makes Send refuse new batches and wakes the senders blocked on a full queue.
func (o *Output) stopAccepting() {
	o.mu.Lock()
	if !o.closed {
		o.closed = true
		close(o.space)
		o.space = make(chan struct{})
	}
	o.mu.Unlock()
}

// failQueued finishes every batch still queued with event.Failed.
func (o *Output) failQueued() {
	o.mu.Lock()
	left := o.batches[o.head:]
	o.batches, o.head, o.queued = nil, 0, 0
	o.mu.Unlock()
	for _, q := range left {
		o.finishBatch(q.b, event.Failed, q.b.Len())
	}
}

// finishBatch ends b with status s; n is the number of its records the metrics have not counted
// yet.
func (o *Output) finishBatch(b *event.Batch, s event.Status, n int) {
	o.countResolved(s, n)
	o.m.queued.Sub(float64(b.Len()))
	b.Done(s)
}

func (o *Output) countResolved(s event.Status, n int) {
	if n == 0 {
		return
	}
	switch s {
	case event.Delivered:
		o.m.delivered.Add(float64(n))
	case event.Rejected:
		o.m.rejected.Add(float64(n))
	case event.Failed:
		o.m.failed.Add(float64(n))
		o.failed.Add(int64(n))
	case event.Spooled:
		o.m.spooled.Add(float64(n))
	}
}

// Run installs the index template (in the background, retrying while Elasticsearch is
// unreachable) and runs the bulk workers. It returns nil after Close has drained the output, or
// when ctx ends, in which case every batch still held is finished with event.Failed. Run may be
// called once. Called after Close began, it still delivers what is queued (until Close's
// deadline); called after Close gave up waiting for it, it returns at once.
func (o *Output) Run(ctx context.Context) error {
	o.mu.Lock()
	if o.running {
		o.mu.Unlock()
		return fmt.Errorf("elasticsearch output %s: Run called twice", o.cfg.Name)
	}
	if o.finished {
		o.mu.Unlock()
		return nil
	}
	o.running = true
	o.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		o.stopAccepting()
		o.abort()
	})
	defer stop()

	log := o.cfg.Logger
	log.Info("elasticsearch output starting", "output", o.cfg.Name, "hosts", o.cfg.redactedHosts(),
		"index", o.cfg.Index, "workers", o.cfg.Workers)
	if o.cfg.TLSInsecure {
		log.Warn("TLS certificate verification is off", "output", o.cfg.Name)
	}

	var installer sync.WaitGroup
	if o.cfg.installTemplates() {
		installer.Go(o.installTemplate)
	} else {
		o.openGate()
	}
	if err := o.spool.load(); err != nil {
		log.Error("fallback spool unreadable; files in it are not replayed until restart", "output", o.cfg.Name, "error", err)
	}
	var replay sync.WaitGroup
	replay.Go(newReplayer(o).run)
	var workers sync.WaitGroup
	for range o.cfg.Workers {
		w := newWorker(o)
		workers.Go(w.run)
	}
	workers.Wait()
	// Nothing is held any more: a template install still retrying has no one to wait for it;
	// the replayer leaves the spool files for the next run.
	o.abort()
	installer.Wait()
	replay.Wait()
	o.spool.close()
	o.finishRun()
	return nil
}

// finishRun fails what is still queued, releases the client and marks the output done.
func (o *Output) finishRun() {
	o.mu.Lock()
	o.finished = true
	o.mu.Unlock()
	o.stopAccepting()
	o.failQueued()
	o.dead.close(o.cfg.Logger)
	o.doneOnce.Do(func() {
		// Closing the client only drops idle connections; errors are of no use here.
		_ = o.client.Close(context.Background())
		close(o.done)
	})
}

// Close stops accepting batches, lets the workers flush and deliver what they hold, retrying
// until ctx ends, then finishes the rest with event.Failed and waits for the workers. It returns
// an error when records were finished Failed. Safe to call more than once, and concurrently.
// Close waits for Run to start and finish; if Run has not started by ctx's end, Close fails the
// queued batches itself.
func (o *Output) Close(ctx context.Context) error {
	o.stopAccepting()
	o.closeOnce.Do(func() { close(o.closing) })
	stop := context.AfterFunc(ctx, o.abort)
	defer stop()
	select {
	case <-o.done:
	case <-ctx.Done():
		// Run may not have started yet (the agent starts it in a goroutine); if it has not by
		// the deadline, nothing will deliver the queue.
		o.mu.Lock()
		orphan := !o.running && !o.finished
		o.finished = o.finished || orphan
		o.mu.Unlock()
		if orphan {
			o.finishRun()
		}
		<-o.done
	}
	if n := o.failed.Load(); n > 0 {
		return fmt.Errorf("close elasticsearch output %s: %d records not delivered", o.cfg.Name, n)
	}
	return nil
}

func (o *Output) openGate() { o.gateOnce.Do(func() { close(o.gate) }) }

// aborted reports whether retrying has been called off.
func (o *Output) aborted() bool { return o.abortCtx.Err() != nil }

// sleep waits d, or less if the output is aborted; it reports whether it slept fully.
func (o *Output) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-o.abortCtx.Done():
		return false
	}
}

// backoff is the delay before retry number attempt (1 for the first retry): base·2^(attempt-1)
// capped at MaxBackoff, of which the upper half is random, so workers that failed together do
// not retry together, and each delay is at least the previous one until the cap.
func (o *Output) backoff(attempt int) time.Duration {
	d := o.cfg.MaxBackoff
	if attempt < 32 {
		if e := o.base << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// requestFailed and requestSucceeded track the streak of failed requests for giveUp.
func (o *Output) requestFailed() {
	o.failingSince.CompareAndSwap(0, time.Now().UnixNano())
}

// fallbackDue reports whether Elasticsearch has been failing for FallbackAfter: held batches
// go to the spool.
func (o *Output) fallbackDue() bool {
	since := o.failingSince.Load()
	return since != 0 && time.Since(time.Unix(0, since)) >= o.cfg.FallbackAfter
}

func (o *Output) requestSucceeded() {
	if o.failingSince.Load() != 0 {
		o.failingSince.Store(0)
	}
}
