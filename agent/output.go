package agent

import (
	"context"

	"github.com/skiff-logs/skiff/agent/event"
)

// Output is where routed records go (Elasticsearch, gzip files). Each output owns its batching,
// retries and acknowledgements.
//
// The agent calls Run once, in its own goroutine, before the first Send; Send from any number of
// goroutines; and Close once at shutdown.
type Output interface {
	// Run does the output's background work (flushing, retrying, replaying). It returns after
	// Close has drained the output, or early when ctx ends, in which case every batch still held
	// is finished with event.Failed.
	Run(ctx context.Context) error
	// Send hands b to the output. It blocks while the output's bounded queue is full (that is the
	// backpressure that pauses the tailers) and returns nil once the output owns b; the output
	// then calls b.Done exactly once, later. If ctx ends first, Send returns ctx.Err() without
	// taking b, and the caller must finish b itself.
	Send(ctx context.Context, b *event.Batch) error
	// Close stops accepting batches, flushes and delivers what it holds until ctx's deadline,
	// finishes the rest with event.Failed, and waits for Run's work to end. Safe to call twice.
	Close(ctx context.Context) error
}
