package elasticsearch

import (
	"sync"

	"github.com/skiff-logs/skiff/agent/metrics"
)

// recoverAfter is the number of consecutive clean bulk responses after which the limiter allows
// one more request in flight.
const recoverAfter = 5

// outcome is what a bulk request told the limiter about Elasticsearch's load.
type outcome uint8

const (
	// outcomeOther: no word on load (connection error, 5xx, a block, an aborted request).
	outcomeOther outcome = iota
	// outcomeClean: a bulk response without any 429.
	outcomeClean
	// outcomeRejected: a whole-request 429, or a bulk response with 429 items
	// (es_rejected_execution_exception).
	outcomeRejected
)

// limiter holds the request slots the live workers and the replayer share, with an adaptive
// limit (AIMD): a response with rejections halves the requests allowed in flight, down to 1;
// recoverAfter consecutive clean responses add one back, up to max. Requests already in flight
// when the limit drops finish; new ones wait until fewer than the limit are out.
type limiter struct {
	mu       sync.Mutex
	limit    int
	max      int
	inFlight int
	clean    int
	// free is closed (and replaced) when a request ends or the limit grows.
	free  chan struct{}
	gauge *metrics.Gauge
}

func newLimiter(max int, g *metrics.Gauge) *limiter {
	g.Set(float64(max))
	return &limiter{limit: max, max: max, free: make(chan struct{}), gauge: g}
}

// acquire waits for a slot; false means done was closed first.
func (l *limiter) acquire(done <-chan struct{}) bool {
	for {
		l.mu.Lock()
		if l.inFlight < l.limit {
			l.inFlight++
			l.mu.Unlock()
			return true
		}
		free := l.free
		l.mu.Unlock()
		select {
		case <-free:
		case <-done:
			return false
		}
	}
}

// release gives back a slot taken by acquire and adapts the limit to the request's outcome.
func (l *limiter) release(oc outcome) {
	l.mu.Lock()
	l.inFlight--
	switch oc {
	case outcomeRejected:
		l.clean = 0
		if l.limit > 1 {
			l.limit = max(1, l.limit/2)
			l.gauge.Set(float64(l.limit))
		}
	case outcomeClean:
		l.clean++
		if l.clean >= recoverAfter && l.limit < l.max {
			l.clean = 0
			l.limit++
			l.gauge.Set(float64(l.limit))
		}
	}
	close(l.free)
	l.free = make(chan struct{})
	l.mu.Unlock()
}

// state returns the current limit and the requests in flight.
func (l *limiter) state() (limit, inFlight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit, l.inFlight
}
