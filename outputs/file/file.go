// Package file is the gzip file output: it writes each record's document as one JSON line to a
// file named by a path template (per tag, time-sliced, like fluentd's forest + file outputs),
// and acknowledges records only once they are compressed, written and fsynced.
package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/outputs/template"
)

// Defaults for the zero values of Config.
const (
	DefaultFlushInterval = time.Second
	DefaultFlushBytes    = 1 << 20
	DefaultQueueRecords  = 8192
)

// Retry backoff after a failed write (doubling, with jitter).
const (
	retryMin = 100 * time.Millisecond
	retryMax = 30 * time.Second
)

// ErrClosed is returned by Send after Close (or after Run ended).
var ErrClosed = errors.New("file: output closed")

// Config configures a file output.
type Config struct {
	// Name identifies the output in logs and metrics; default "file".
	Name string
	// Path is a template (template.Path mode) for the file each record goes to, e.g.
	// "/var/log/skiff/{tag}/%Y/%m/%d/%H.log.gz". Records are routed by their own time, so the
	// hour in the path is the hour of the log line, not of the write.
	Path string
	// FlushInterval is the longest a record waits in memory before it is written; default 1s.
	FlushInterval time.Duration
	// FlushBytes is the size of the uncompressed documents of one path that makes it be
	// written at once; default 1 MiB.
	FlushBytes int
	// QueueRecords bounds the records the output holds (accepted and not yet finished); Send
	// blocks when it is full. Default 8192.
	QueueRecords int
	// Logger receives write errors and retries; default slog.Default().
	Logger *slog.Logger
}

// Output is the gzip file output. It implements the agent's Output contract: Run once, Send
// from any number of goroutines, Close at shutdown.
//
// Records are grouped by rendered path and encoded with document.Append, one line each. A path
// is written as one gzip member (then fsynced) when its documents reach FlushBytes, when
// FlushInterval has passed, or when Send is waiting for room; a batch is finished with
// event.Delivered only once every path holding one of its records has been written. A write
// that fails (disk full, a file where a directory should be) is counted
// (metrics.DataDirWriteErrors{component="file_output"}), logged once per episode of failures,
// and retried with backoff while the records stay held: nothing is acknowledged that is not on
// disk, nothing is dropped, the failed member is cut off again and a file left empty by it is
// removed. Files not written for 2×FlushInterval + 1 minute are closed.
type Output struct {
	cfg       Config
	tmpl      *template.Template
	log       *slog.Logger
	idleAfter time.Duration
	retryMin  time.Duration
	retryMax  time.Duration

	delivered, failed *metrics.Counter
	requestsOK        *metrics.Counter
	requestsErr       *metrics.Counter
	latency           *metrics.Histogram
	queued            *metrics.Gauge
	failures          *metrics.WriteFailures

	mu       sync.Mutex
	queue    []*event.Batch // accepted by Send, not yet taken by Run
	held     int            // records accepted and not yet finished
	space    chan struct{}  // closed (and replaced) when room is made for a waiting Send
	waiting  bool           // a Send waits for room
	started  bool           // Run was called
	closing  bool           // Close was called: Send refuses
	stopped  bool           // Run has ended (or never will): Send refuses
	closeCtx context.Context
	closeErr error

	wake       chan struct{} // capacity 1: Run has something to do
	runStarted chan struct{} // closed when Run starts
	closeCh    chan struct{} // closed by the first Close
	done       chan struct{} // closed when Run has finished everything
}

// New checks cfg and returns an output. It starts no goroutines; Run does the work.
func New(cfg Config) (*Output, error) {
	if cfg.Name == "" {
		cfg.Name = "file"
	}
	fail := func(key, format string, args ...any) (*Output, error) {
		return nil, fmt.Errorf("file output %q: %s: %s", cfg.Name, key, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Path == "":
		return fail("path", "must be set")
	case cfg.FlushInterval < 0:
		return fail("flush_interval", "must not be negative")
	case cfg.FlushBytes < 0:
		return fail("flush_bytes", "must not be negative")
	case cfg.QueueRecords < 0:
		return fail("queue_records", "must not be negative")
	}
	tmpl, err := template.Parse(cfg.Path, template.Path)
	if err != nil {
		return fail("path", "%v", err)
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.FlushBytes == 0 {
		cfg.FlushBytes = DefaultFlushBytes
	}
	if cfg.QueueRecords == 0 {
		cfg.QueueRecords = DefaultQueueRecords
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Output{
		cfg:         cfg,
		tmpl:        tmpl,
		log:         log.With("output", cfg.Name),
		idleAfter:   2*cfg.FlushInterval + time.Minute,
		retryMin:    retryMin,
		retryMax:    retryMax,
		delivered:   metrics.OutputRecords.WithLabelValues(cfg.Name, event.Delivered.String()),
		failed:      metrics.OutputRecords.WithLabelValues(cfg.Name, event.Failed.String()),
		requestsOK:  metrics.OutputRequests.WithLabelValues(cfg.Name, "ok"),
		requestsErr: metrics.OutputRequests.WithLabelValues(cfg.Name, "error"),
		latency:     metrics.OutputLatency.WithLabelValues(cfg.Name),
		queued:      metrics.OutputQueued.WithLabelValues(cfg.Name),
		failures:    metrics.NewWriteFailures("file_output", log.With("output", cfg.Name)),
		space:       make(chan struct{}),
		wake:        make(chan struct{}, 1),
		runStarted:  make(chan struct{}),
		closeCh:     make(chan struct{}),
		done:        make(chan struct{}),
	}, nil
}

// Send hands b to the output. It blocks while the output holds QueueRecords records (a batch
// larger than that is taken when the output holds nothing), and returns nil once the output
// owns b; b.Done is then called exactly once, later. If ctx ends first it returns ctx.Err(),
// and after Close (or once Run has ended) ErrClosed, without taking b.
func (o *Output) Send(ctx context.Context, b *event.Batch) error {
	n := b.Len()
	o.mu.Lock()
	for {
		if o.closing || o.stopped {
			o.mu.Unlock()
			return ErrClosed
		}
		if o.held == 0 || o.held+n <= o.cfg.QueueRecords {
			break
		}
		o.waiting = true
		space := o.space
		o.mu.Unlock()
		o.signal() // so Run writes what it holds instead of waiting for the interval
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		o.mu.Lock()
	}
	if n == 0 {
		o.mu.Unlock()
		b.Done(event.Delivered)
		return nil
	}
	o.held += n
	o.queue = append(o.queue, b)
	o.mu.Unlock()
	o.queued.Add(float64(n))
	o.signal()
	return nil
}

func (o *Output) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Close stops accepting batches, writes what the output holds until ctx ends, finishes the
// rest with event.Failed, and waits for Run to end. It returns an error when records had to be
// failed. If Run has not started by the time ctx ends, Close finishes the queued batches itself
// (a later Run returns at once). Safe to call twice (the second call waits the same way and
// returns the same result).
func (o *Output) Close(ctx context.Context) error {
	o.mu.Lock()
	if !o.closing {
		o.closing = true
		o.closeCtx = ctx
		close(o.closeCh)
		o.wakeSenders()
	}
	o.mu.Unlock()
	select {
	case <-o.runStarted:
	case <-ctx.Done():
		o.mu.Lock()
		if o.started {
			o.mu.Unlock()
			break
		}
		o.started, o.stopped = true, true
		queue := o.queue
		o.queue = nil
		o.mu.Unlock()
		n := 0
		for _, b := range queue {
			n += b.Len()
			o.finish(b, event.Failed)
		}
		o.setCloseErr(n)
		close(o.done)
	}
	<-o.done
	return o.closeResult()
}

func (o *Output) setCloseErr(failed int) {
	if failed == 0 {
		return
	}
	o.mu.Lock()
	o.closeErr = fmt.Errorf("file output %q: %d records failed: not written before the output stopped", o.cfg.Name, failed)
	o.mu.Unlock()
}

func (o *Output) closeResult() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closeErr
}

// wakeSenders lets every waiting Send look again. o.mu must be held.
func (o *Output) wakeSenders() {
	close(o.space)
	o.space = make(chan struct{})
	o.waiting = false
}

// finish ends b with status s and gives its room back.
func (o *Output) finish(b *event.Batch, s event.Status) {
	n := b.Len()
	b.Done(s)
	if s == event.Delivered {
		o.delivered.Add(float64(n))
	} else {
		o.failed.Add(float64(n))
	}
	o.queued.Sub(float64(n))
	o.mu.Lock()
	o.held -= n
	if o.waiting {
		o.wakeSenders()
	}
	o.mu.Unlock()
}

// take returns the batches Send has queued, and whether a Send is waiting for room.
func (o *Output) take(into []*event.Batch) ([]*event.Batch, bool) {
	o.mu.Lock()
	into = append(into, o.queue...)
	clear(o.queue)
	o.queue = o.queue[:0]
	waiting := o.waiting
	o.mu.Unlock()
	return into, waiting
}
