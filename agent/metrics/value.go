package metrics

import (
	"math"
	"sync/atomic"
)

// Valuer is a metric with a single current value: *Counter and *Gauge.
type Valuer interface {
	// Value returns the metric's current value.
	Value() float64
}

// Counter is a monotonically increasing value. The zero value is a usable counter that no Set
// exposes (tests use it); NewCounter and the children of a CounterVec are exposed.
// Add and Inc are lock-free and allocation-free, safe for concurrent use.
type Counter struct {
	ints atomic.Uint64 // sum of the integral increments (the common case: records, bytes)
	frac atomic.Uint64 // float64 bits of the sum of the other increments
	fam  *family       // set by NewCounter only; nil for vector children
}

// maxExact is the largest integral float64 below which every integer is exact.
const maxExact = 1 << 53

// Inc adds 1.
func (c *Counter) Inc() { c.ints.Add(1) }

// Add adds v, which must not be negative (a counter never decreases: Add panics on v < 0, as
// client_golang's did). Integral v (byte and record counts) takes one atomic add; a fractional
// v (seconds) a compare-and-swap loop.
func (c *Counter) Add(v float64) {
	if v >= 0 && v < maxExact {
		if u := uint64(v); float64(u) == v {
			c.ints.Add(u)
			return
		}
	} else if v < 0 {
		negativeAdd()
	}
	addFloat(&c.frac, v)
}

func negativeAdd() { panic("metrics: counter cannot decrease in value") }

// Value returns the counter's current value.
func (c *Counter) Value() float64 {
	return float64(c.ints.Load()) + math.Float64frombits(c.frac.Load())
}

// Gauge is a value that goes up and down. The zero value is a usable gauge that no Set
// exposes; NewGauge and the children of a GaugeVec are exposed. All methods are lock-free and
// allocation-free, safe for concurrent use.
type Gauge struct {
	bits atomic.Uint64 // float64 bits
	fam  *family       // set by NewGauge only
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v (which may be negative).
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Sub subtracts v.
func (g *Gauge) Sub(v float64) { addFloat(&g.bits, -v) }

// Inc adds 1.
func (g *Gauge) Inc() { addFloat(&g.bits, 1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { addFloat(&g.bits, -1) }

// Value returns the gauge's current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// addFloat adds v to the float64 whose bits p holds.
func addFloat(p *atomic.Uint64, v float64) {
	for {
		old := p.Load()
		if p.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Histogram counts observations in cumulative buckets with fixed upper bounds, and their sum.
// The children of a HistogramVec are exposed; Observe is lock-free and allocation-free, safe
// for concurrent use.
type Histogram struct {
	upper  []float64       // sorted upper bounds, shared by a vector's children
	counts []atomic.Uint64 // per bucket, not cumulative; the last one is +Inf
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
}

// Observe adds one observation of v: to the first bucket whose upper bound is >= v (NaN and
// values above the last bound go to +Inf), and to the sum.
func (h *Histogram) Observe(v float64) {
	lo, hi := 0, len(h.upper)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if h.upper[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if v != v { // NaN compares false to every bound and would land in the first bucket
		lo = len(h.upper)
	}
	h.counts[lo].Add(1)
	addFloat(&h.sum, v)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum returns the sum of the observations.
func (h *Histogram) Sum() float64 { return math.Float64frombits(h.sum.Load()) }

// ExponentialBuckets returns n upper bounds: start, start*factor, start*factor², … (start > 0,
// factor > 1, n >= 1; it panics otherwise). The bounds are computed by repeated multiplication,
// as client_golang did, so that the le label values are the same.
func ExponentialBuckets(start, factor float64, n int) []float64 {
	if n < 1 || start <= 0 || factor <= 1 {
		panic("metrics: ExponentialBuckets needs n >= 1, start > 0, factor > 1")
	}
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}
