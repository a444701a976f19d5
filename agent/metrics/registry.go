package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Collector is something a Set exposes: a *CounterVec, *GaugeVec, *HistogramVec, a
// *Counter or *Gauge made by NewCounter or NewGauge, or the runtime collectors
// (NewGoCollector, NewProcessCollector). Only this package implements it.
type Collector interface {
	// names returns the names of the families the collector writes, in the order it writes them
	// (sorted); a collector that cannot be registered returns none.
	names() []string
	// appendText appends the collector's families in the text exposition format.
	appendText(b []byte) []byte
}

// ContentType is the media type of the text exposition format 0.0.4 that a Set serves.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Set is a set of collectors with distinct family names (the package's Registry is one),
// written in the Prometheus text exposition format 0.0.4. It is an http.Handler serving that
// text (for /metrics). Safe for concurrent use.
type Set struct {
	mu    sync.Mutex
	cs    []Collector // sorted by their first family name
	names map[string]bool
	bufs  sync.Pool // *[]byte scratch of ServeHTTP
}

// NewSet returns an empty Set.
func NewSet() *Set { return &Set{names: map[string]bool{}} }

// Register adds c. It fails when c has no families (a vector's child) or when one of its
// family names is already registered.
func (r *Set) Register(c Collector) error {
	ns := c.names()
	if len(ns) == 0 {
		return fmt.Errorf("register metrics: %T is not a registrable collector (a vector child?)", c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range ns {
		if r.names[n] {
			return fmt.Errorf("register metrics: %s is already registered", n)
		}
	}
	for _, n := range ns {
		r.names[n] = true
	}
	i, _ := slices.BinarySearchFunc(r.cs, ns[0], func(c Collector, n string) int { return strings.Compare(c.names()[0], n) })
	// A new slice every time: AppendText iterates over the one it saw without holding mu.
	r.cs = slices.Insert(slices.Clip(slices.Clone(r.cs)), i, c)
	return nil
}

// MustRegister registers every collector and panics on the first that Register refuses.
func (r *Set) MustRegister(cs ...Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// AppendText appends the text exposition of every registered collector to b: families sorted
// by name (collectors are ordered by their first family name and write theirs sorted; the
// runtime collectors' go_ and process_ prefixes do not interleave with skiff_), series sorted
// by label values, families without series left out.
func (r *Set) AppendText(b []byte) []byte {
	r.mu.Lock()
	cs := r.cs
	r.mu.Unlock()
	for _, c := range cs {
		b = c.appendText(b)
	}
	return b
}

// WriteTo writes the text exposition to w.
func (r *Set) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.AppendText(nil))
	return int64(n), err
}

// maxPooledScrape keeps an unusually large scrape's buffer out of the pool.
const maxPooledScrape = 1 << 20

// ServeHTTP answers any request with the text exposition (Content-Type ContentType).
func (r *Set) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	bp, _ := r.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = r.AppendText((*bp)[:0])
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(*bp)))
	_, _ = w.Write(*bp)
	if cap(*bp) <= maxPooledScrape {
		r.bufs.Put(bp)
	}
}

// appendHeader appends the HELP and TYPE lines of f.
func appendHeader(b []byte, f *family) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendEscaped(b, f.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.typ...)
	return append(b, '\n')
}

// appendSample appends one sample line: name suffix{labels,le="…"} value. values are in the
// family's declared label order; le is left out when empty.
func appendSample(b []byte, f *family, suffix string, values []string, le string, v float64) []byte {
	b = append(b, f.name...)
	b = append(b, suffix...)
	if len(values) > 0 || le != "" {
		b = append(b, '{')
		for i, o := range f.order {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, f.labels[o]...)
			b = append(b, `="`...)
			b = appendEscaped(b, values[o], true)
			b = append(b, '"')
		}
		if le != "" {
			if len(values) > 0 {
				b = append(b, ',')
			}
			b = append(b, `le="`...)
			b = append(b, le...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	return append(b, '\n')
}

// appendEscaped appends s escaped for the text format: backslash and newline always, the
// double quote in label values. Invalid UTF-8 (a file path may hold any bytes) becomes U+FFFD,
// since the format is UTF-8.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\\':
				b = append(b, `\\`...)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '"' && quote:
				b = append(b, `\"`...)
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

// appendFloat formats v as the text format wants it: Go's shortest representation, and +Inf,
// -Inf, NaN.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func (v *CounterVec) names() []string { return v.v.names() }

func (v *CounterVec) appendText(b []byte) []byte { return appendValues(b, &v.v) }

// appendValues appends a family of counters or gauges.
func appendValues[M any, PM interface {
	*M
	Valuer
}](b []byte, v *vec[M]) []byte {
	kids := v.children()
	if len(kids) == 0 {
		return b
	}
	b = appendHeader(b, v.fam)
	for _, c := range kids {
		b = appendSample(b, v.fam, "", c.values, "", PM(c.m).Value())
	}
	return b
}

func (v *GaugeVec) names() []string { return v.v.names() }

func (v *GaugeVec) appendText(b []byte) []byte { return appendValues(b, &v.v) }

func (v *HistogramVec) names() []string { return v.v.names() }

func (v *HistogramVec) appendText(b []byte) []byte {
	kids := v.v.children()
	if len(kids) == 0 {
		return b
	}
	f := v.v.fam
	b = appendHeader(b, f)
	for _, c := range kids {
		h := c.m
		// Read every bucket once; the cumulative counts and _count come from the same reads,
		// so +Inf always equals _count. The sum is read after (an observation in flight may be
		// in the counts and not yet in the sum, or the other way round: harmless).
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			b = appendSample(b, f, "_bucket", c.values, v.les[i], float64(cum))
		}
		b = appendSample(b, f, "_sum", c.values, "", h.Sum())
		b = appendSample(b, f, "_count", c.values, "", float64(cum))
	}
	return b
}

func (c *Counter) names() []string            { return unlabelledNames(c.fam) }
func (c *Counter) appendText(b []byte) []byte { return appendUnlabelled(b, c.fam, c.Value()) }
func (g *Gauge) names() []string              { return unlabelledNames(g.fam) }
func (g *Gauge) appendText(b []byte) []byte   { return appendUnlabelled(b, g.fam, g.Value()) }

// unlabelledNames is the family name of an unlabelled counter or gauge: none for a vector's
// child (fam nil), which its vector writes.
func unlabelledNames(fam *family) []string {
	if fam == nil {
		return nil
	}
	return []string{fam.name}
}

// appendUnlabelled writes an unlabelled counter or gauge of family fam with value v (nothing
// for a vector's child, fam nil).
func appendUnlabelled(b []byte, fam *family, v float64) []byte {
	if fam == nil {
		return b
	}
	return appendSample(appendHeader(b, fam), fam, "", nil, "", v)
}
