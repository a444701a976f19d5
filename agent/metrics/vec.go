package metrics

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// family is what the exposition says about a metric family besides its values.
type family struct {
	name, help, typ string
	labels          []string // as declared; the values of WithLabelValues come in this order
	order           []int    // indices into labels, by label name (the exposition's order)
}

func newFamily(name, help, typ string, labels []string) *family {
	if !validName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	order := make([]int, len(labels))
	for i, l := range labels {
		if !validName(l) || strings.HasPrefix(l, "__") || l == "le" {
			panic(fmt.Sprintf("metrics: invalid label name %q of %s", l, name))
		}
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return labels[order[i]] < labels[order[j]] })
	for i := 1; i < len(order); i++ {
		if labels[order[i]] == labels[order[i-1]] {
			panic(fmt.Sprintf("metrics: duplicate label %q of %s", labels[order[i]], name))
		}
	}
	return &family{name: name, help: help, typ: typ, labels: slices.Clone(labels), order: order}
}

// validName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* (metric and label names; skiff
// uses no colons).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// vec is a family of metrics of type M told apart by label values.
type vec[M any] struct {
	fam    *family
	newM   func() *M
	mu     sync.Mutex
	kids   map[string]*child[M]
	sorted []*child[M] // kids in exposition order; nil when a child was added or deleted since
}

type child[M any] struct {
	values []string
	m      *M
}

// key appends the map key of values to b: the value itself for one label, otherwise each
// value prefixed with its length (unambiguous whatever bytes the values hold).
func key(b []byte, values []string) []byte {
	if len(values) == 1 {
		return append(b, values[0]...)
	}
	for _, v := range values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

func (v *vec[M]) checkArity(values []string) {
	if len(values) != len(v.fam.labels) {
		panic(fmt.Sprintf("metrics: %s has labels %q, got %d values", v.fam.name, v.fam.labels, len(values)))
	}
}

// with returns the child of values, creating it on first use.
func (v *vec[M]) with(values []string) *M {
	v.checkArity(values)
	var buf [128]byte
	k := key(buf[:0], values)
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.kids[string(k)]; ok {
		return c.m
	}
	if v.kids == nil {
		v.kids = make(map[string]*child[M])
	}
	c := &child[M]{values: slices.Clone(values), m: v.newM()}
	v.kids[string(k)] = c
	v.sorted = nil
	return c.m
}

// delete removes the child of values and reports whether there was one.
func (v *vec[M]) delete(values []string) bool {
	v.checkArity(values)
	var buf [128]byte
	k := key(buf[:0], values)
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.kids[string(k)]; !ok {
		return false
	}
	delete(v.kids, string(k))
	v.sorted = nil
	return true
}

// has reports whether the child of values exists.
func (v *vec[M]) has(values []string) bool {
	v.checkArity(values)
	var buf [128]byte
	k := key(buf[:0], values)
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.kids[string(k)]
	return ok
}

// children returns the children in exposition order (by label values, labels taken by name).
// The slice is shared: callers must not modify it.
func (v *vec[M]) children() []*child[M] {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sorted == nil && len(v.kids) > 0 {
		s := make([]*child[M], 0, len(v.kids))
		for _, c := range v.kids {
			s = append(s, c)
		}
		order := v.fam.order
		sort.Slice(s, func(i, j int) bool {
			for _, o := range order {
				if a, b := s[i].values[o], s[j].values[o]; a != b {
					return a < b
				}
			}
			return false
		})
		v.sorted = s
	}
	return v.sorted
}

func (v *vec[M]) names() []string { return []string{v.fam.name} }

// CounterVec is a family of counters told apart by label values.
type CounterVec struct{ v vec[Counter] }

// NewCounterVec returns a counter family named name with help text help and the given label
// names (it panics on invalid names). Register it with a Set (Registry) to expose it.
func NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{vec[Counter]{fam: newFamily(name, help, "counter", labels), newM: func() *Counter { return new(Counter) }}}
}

// WithLabelValues returns the counter of the given label values (in the declared label order),
// creating it at 0 on first use. It takes a mutex and a map lookup: resolve the child once and
// keep it. It panics when the number of values is not the number of labels.
func (v *CounterVec) WithLabelValues(values ...string) *Counter { return v.v.with(values) }

// DeleteLabelValues removes the counter of the given label values from the family (a child
// kept by a caller keeps counting, unexposed) and reports whether it existed.
func (v *CounterVec) DeleteLabelValues(values ...string) bool { return v.v.delete(values) }

// Has reports whether the counter of the given label values exists.
func (v *CounterVec) Has(values ...string) bool { return v.v.has(values) }

// GaugeVec is a family of gauges told apart by label values.
type GaugeVec struct{ v vec[Gauge] }

// NewGaugeVec returns a gauge family named name with help text help and the given label names
// (it panics on invalid names). Register it with a Set (Registry) to expose it.
func NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{vec[Gauge]{fam: newFamily(name, help, "gauge", labels), newM: func() *Gauge { return new(Gauge) }}}
}

// WithLabelValues returns the gauge of the given label values (in the declared label order),
// creating it at 0 on first use. It takes a mutex and a map lookup: resolve the child once and
// keep it. It panics when the number of values is not the number of labels.
func (v *GaugeVec) WithLabelValues(values ...string) *Gauge { return v.v.with(values) }

// DeleteLabelValues removes the gauge of the given label values from the family (a child kept
// by a caller keeps working, unexposed) and reports whether it existed.
func (v *GaugeVec) DeleteLabelValues(values ...string) bool { return v.v.delete(values) }

// Has reports whether the gauge of the given label values exists.
func (v *GaugeVec) Has(values ...string) bool { return v.v.has(values) }

// HistogramVec is a family of histograms with the same buckets told apart by label values.
type HistogramVec struct {
	v   vec[Histogram]
	les []string // the le label values of the buckets, +Inf last
}

// NewHistogramVec returns a histogram family named name with help text help, the given bucket
// upper bounds (strictly increasing, finite; +Inf is implied) and label names. It panics on
// invalid names or bounds. Register it with a Set (Registry) to expose it.
func NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	upper := slices.Clone(buckets)
	for i, b := range upper {
		if b != b || b > maxFloat || b < -maxFloat || i > 0 && b <= upper[i-1] {
			panic(fmt.Sprintf("metrics: %s: buckets must be finite and strictly increasing: %v", name, buckets))
		}
	}
	les := make([]string, 0, len(upper)+1)
	for _, b := range upper {
		les = append(les, string(appendFloat(nil, b)))
	}
	les = append(les, "+Inf")
	return &HistogramVec{
		v:   vec[Histogram]{fam: newFamily(name, help, "histogram", labels), newM: func() *Histogram { return newHistogram(upper) }},
		les: les,
	}
}

const maxFloat = 1.7976931348623157e308

// WithLabelValues returns the histogram of the given label values (in the declared label
// order), creating it empty on first use. It takes a mutex and a map lookup: resolve the child
// once and keep it. It panics when the number of values is not the number of labels.
func (v *HistogramVec) WithLabelValues(values ...string) *Histogram { return v.v.with(values) }

// DeleteLabelValues removes the histogram of the given label values from the family and
// reports whether it existed.
func (v *HistogramVec) DeleteLabelValues(values ...string) bool { return v.v.delete(values) }

// NewCounter returns an unlabelled counter named name with help text help (it panics on an
// invalid name). Register it with a Set (Registry) to expose it.
func NewCounter(name, help string) *Counter {
	return &Counter{fam: newFamily(name, help, "counter", nil)}
}

// NewGauge returns an unlabelled gauge named name with help text help (it panics on an invalid
// name). Register it with a Set (Registry) to expose it.
func NewGauge(name, help string) *Gauge {
	return &Gauge{fam: newFamily(name, help, "gauge", nil)}
}
