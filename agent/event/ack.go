package event

import (
	"sync/atomic"
)

// Status is how a batch ended.
type Status uint8

const (
	// Delivered: the output has the records durably (Elasticsearch acknowledged them, or the
	// file output wrote and fsynced them).
	Delivered Status = iota
	// Rejected: the output refused the records for good and they were written, fsynced, to the
	// dead-letter store. They count as done: positions move past them.
	Rejected
	// Spooled: the records were written and fsynced to the fallback spool; done for positions.
	Spooled
	// Dropped: a rule dropped the records on purpose; done for positions.
	Dropped
	// Failed: the records were not delivered (shutdown deadline, fatal error). Positions do not
	// move past them, so they are read again after a restart.
	Failed
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Rejected:
		return "rejected"
	case Spooled:
		return "spooled"
	case Dropped:
		return "dropped"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Done reports whether records with this status count as finished for positions.
func (s Status) Done() bool { return s != Failed }

// Ack counts the outstanding deliveries of one Chunk. The reader creates it with one reference of
// its own (the seal), every Batch.Add takes one more, every Batch.Done gives its references back,
// and the reader releases the seal once the chunk is fully routed. When the count reaches zero the
// notify function given to NewAck runs exactly once, on the goroutine that released last.
//
// End is the file offset just after the chunk's last record: the position that may be committed
// once this Ack and every earlier one of the same file are done.
type Ack struct {
	End    int64
	n      atomic.Int64
	failed atomic.Bool
	notify func(*Ack)
}

// NewAck returns an Ack holding the seal reference. notify may be nil.
func NewAck(end int64, notify func(*Ack)) *Ack {
	a := &Ack{End: end, notify: notify}
	a.n.Store(1)
	return a
}

// Retain takes n more references.
func (a *Ack) Retain(n int64) { a.n.Add(n) }

// Release gives back n references with the status of their records. A Failed status marks the
// whole Ack failed: positions will not move past it.
func (a *Ack) Release(n int64, s Status) {
	if s == Failed {
		a.failed.Store(true)
	}
	left := a.n.Add(-n)
	if left == 0 && a.notify != nil {
		a.notify(a)
	}
	if left < 0 {
		panic("event: Ack released more often than retained")
	}
}

// Failed reports whether any record of the chunk failed delivery.
func (a *Ack) Failed() bool { return a.failed.Load() }

// Pending reports the number of references not yet released.
func (a *Ack) Pending() int64 { return a.n.Load() }
