package metrics

import (
	"bytes"
	"flag"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// sampleSet is a Set with every kind of metric, label values needing escaping, special floats
// and an empty vector (which must not appear).
func sampleSet() *Set {
	s := NewSet()
	// Labels declared out of name order: the exposition orders them by name.
	reqs := NewCounterVec("test_requests_total", "Requests, by \"code\" and path\\dir.\nSecond line.", "path", "code")
	reqs.WithLabelValues("/b", "200").Add(3)
	reqs.WithLabelValues("/a", "500").Inc()
	reqs.WithLabelValues("/a", "200").Add(0.5)
	reqs.WithLabelValues("quote\" back\\slash new\nline", "1").Add(1e21)
	reqs.WithLabelValues("bad\xffutf8 é", "2").Add(2)
	g := NewGaugeVec("test_level", "A gauge.", "name")
	g.WithLabelValues("neg").Set(-2.5)
	g.WithLabelValues("inf").Set(math.Inf(1))
	g.WithLabelValues("-inf").Set(math.Inf(-1))
	g.WithLabelValues("nan").Set(math.NaN())
	g.WithLabelValues("small").Set(1e-7)
	h := NewHistogramVec("test_seconds", "A histogram.", ExponentialBuckets(0.001, 2, 4), "out")
	for _, v := range []float64{0.0005, 0.001, 0.0015, 0.004, 0.0041, 100} {
		h.WithLabelValues("es").Observe(v)
	}
	h.WithLabelValues("empty")
	c := NewCounter("test_plain_total", "A counter without labels.")
	c.Add(7)
	gg := NewGauge("test_plain", "A gauge without labels.")
	gg.Set(42)
	s.MustRegister(reqs, g, h, c, gg, NewCounterVec("test_unused_total", "Never used: not exposed.", "x"))
	return s
}

func TestExpositionGolden(t *testing.T) {
	golden(t, "exposition.txt", sampleSet().AppendText(nil))
}

// TestExpositionParses runs the text through client_golang's own parser (prometheus/common,
// a test-only dependency) and checks that every family, type, label value (escaping undone)
// and value comes back.
func TestExpositionParses(t *testing.T) {
	text := sampleSet().AppendText(nil)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	if _, ok := fams["test_unused_total"]; ok {
		t.Error("a vector without series was exposed")
	}
	reqs := fams["test_requests_total"]
	if reqs.GetType() != dto.MetricType_COUNTER || len(reqs.Metric) != 5 {
		t.Fatalf("test_requests_total: %v", reqs)
	}
	if !strings.Contains(reqs.GetHelp(), "\"code\"") || !strings.Contains(reqs.GetHelp(), "path\\dir.\nSecond") {
		t.Errorf("help %q", reqs.GetHelp())
	}
	values := map[string]float64{}
	for _, m := range reqs.Metric {
		var l []string
		for _, lp := range m.Label {
			l = append(l, lp.GetName()+"="+lp.GetValue())
		}
		values[strings.Join(l, ",")] = m.GetCounter().GetValue()
	}
	want := map[string]float64{
		"code=200,path=/b": 3, "code=500,path=/a": 1, "code=200,path=/a": 0.5,
		"code=1,path=quote\" back\\slash new\nline": 1e21,
		"code=2,path=bad\uFFFDutf8 é":               2,
	}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("%q = %v, want %v (all: %v)", k, values[k], v, values)
		}
	}
	lvl := fams["test_level"]
	if lvl.GetType() != dto.MetricType_GAUGE || len(lvl.Metric) != 5 {
		t.Fatalf("test_level: %v", lvl)
	}
	hist := fams["test_seconds"]
	if hist.GetType() != dto.MetricType_HISTOGRAM || len(hist.Metric) != 2 {
		t.Fatalf("test_seconds: %v", hist)
	}
	for _, m := range hist.Metric {
		if m.Label[0].GetValue() != "es" {
			continue
		}
		hh := m.GetHistogram()
		if hh.GetSampleCount() != 6 || math.Abs(hh.GetSampleSum()-100.0111) > 1e-9 {
			t.Errorf("count %d sum %v", hh.GetSampleCount(), hh.GetSampleSum())
		}
		var got []uint64
		for _, b := range hh.Bucket {
			got = append(got, b.GetCumulativeCount())
		}
		// Bounds 0.001 0.002 0.004 0.008 +Inf: an observation equal to a bound is in its bucket.
		if !slices.Equal(got, []uint64{2, 3, 4, 5, 6}) {
			t.Errorf("cumulative buckets %v, want [2 3 4 5 6]", got)
		}
	}
	if fams["test_plain_total"].Metric[0].GetCounter().GetValue() != 7 || fams["test_plain"].Metric[0].GetGauge().GetValue() != 42 {
		t.Error("unlabelled metrics lost their values")
	}
}

func TestHistogramBuckets(t *testing.T) {
	h := NewHistogramVec("h_seconds", "h", []float64{1, 2, 5}).WithLabelValues()
	for _, c := range []struct {
		v      float64
		counts []uint64 // per bucket after this observation, not cumulative
	}{
		{0, []uint64{1, 0, 0, 0}},
		{1, []uint64{2, 0, 0, 0}},
		{1.0000001, []uint64{2, 1, 0, 0}},
		{5, []uint64{2, 1, 1, 0}},
		{5.5, []uint64{2, 1, 1, 1}},
		{math.Inf(1), []uint64{2, 1, 1, 2}},
		{math.Inf(-1), []uint64{3, 1, 1, 2}},
		{-3, []uint64{4, 1, 1, 2}},
	} {
		h.Observe(c.v)
		var got []uint64
		for i := range h.counts {
			got = append(got, h.counts[i].Load())
		}
		if !slices.Equal(got, c.counts) {
			t.Errorf("after Observe(%v): counts %v, want %v", c.v, got, c.counts)
		}
	}
	if h.Count() != 8 {
		t.Errorf("Count() = %d", h.Count())
	}
	h.Observe(math.NaN())
	if h.counts[3].Load() != 3 || !math.IsNaN(h.Sum()) {
		t.Errorf("NaN: +Inf bucket %d, sum %v", h.counts[3].Load(), h.Sum())
	}
	if b := ExponentialBuckets(0.0005, 2, 15); len(b) != 15 || b[0] != 0.0005 || b[14] != 8.192 {
		t.Errorf("ExponentialBuckets(0.0005, 2, 15) = %v", b)
	}
}

// TestConcurrentUpdates: many goroutines adding to the same children lose nothing (run it
// with -race).
func TestConcurrentUpdates(t *testing.T) {
	cv := NewCounterVec("c_total", "c", "l")
	gv := NewGaugeVec("g", "g", "l")
	hv := NewHistogramVec("h_seconds", "h", ExponentialBuckets(1, 2, 3), "l")
	const workers, n = 8, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c, g, h := cv.WithLabelValues("x"), gv.WithLabelValues("x"), hv.WithLabelValues("x")
			for i := range n {
				c.Add(2)
				c.Add(0.25)
				c.Inc()
				g.Add(1.5)
				g.Sub(0.5)
				g.Inc()
				g.Dec()
				h.Observe(float64(i % 10))
				if i%1000 == 0 {
					cv.WithLabelValues(string(rune('a' + w))).Inc() // new children while others count
					_ = cv.Has("x")
				}
			}
		})
	}
	wg.Wait()
	c, g, h := cv.WithLabelValues("x"), gv.WithLabelValues("x"), hv.WithLabelValues("x")
	if got, want := Value(c), float64(workers*n)*3.25; got != want {
		t.Errorf("counter %v, want %v", got, want)
	}
	if got, want := Value(g), float64(workers*n); got != want {
		t.Errorf("gauge %v, want %v", got, want)
	}
	if got, want := h.Count(), uint64(workers*n); got != want {
		t.Errorf("histogram count %d, want %d", got, want)
	}
	if got, want := h.Sum(), float64(workers*n/10*45); got != want {
		t.Errorf("histogram sum %v, want %v", got, want)
	}
}

func TestConcurrentScrape(t *testing.T) {
	s := NewSet()
	cv := NewCounterVec("c_total", "c", "l")
	s.MustRegister(cv)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 2000 {
			cv.WithLabelValues(string(rune('a' + i%50))).Inc()
			if i%7 == 0 {
				cv.DeleteLabelValues(string(rune('a' + i%50)))
			}
		}
	})
	for range 200 {
		if text := s.AppendText(nil); len(text) > 0 && !bytes.HasPrefix(text, []byte("# HELP c_total c\n")) {
			t.Fatalf("scrape: %s", text)
		}
	}
	wg.Wait()
}

func TestVecChildren(t *testing.T) {
	v := NewGaugeVec("g", "g", "a", "b")
	// Values that would collide under a naive join.
	v.WithLabelValues("x\x00", "y").Set(1)
	v.WithLabelValues("x", "\x00y").Set(2)
	if Value(v.WithLabelValues("x\x00", "y")) != 1 || Value(v.WithLabelValues("x", "\x00y")) != 2 {
		t.Error("children of different label values share a value")
	}
	if v.WithLabelValues("p", "q") != v.WithLabelValues("p", "q") {
		t.Error("WithLabelValues returned a different child for the same values")
	}
	if !v.Has("p", "q") || !v.DeleteLabelValues("p", "q") || v.Has("p", "q") || v.DeleteLabelValues("p", "q") {
		t.Error("Has/DeleteLabelValues")
	}
	mustPanic(t, "wrong number of label values", func() { v.WithLabelValues("only one") })
	mustPanic(t, "negative counter Add", func() { new(Counter).Add(-1) })
	mustPanic(t, "invalid metric name", func() { NewCounter("1abc", "") })
	mustPanic(t, "le label", func() { NewHistogramVec("h", "", []float64{1}, "le") })
	mustPanic(t, "unsorted buckets", func() { NewHistogramVec("h", "", []float64{2, 1}) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

func TestCounterValue(t *testing.T) {
	var c Counter
	c.Add(1 << 60) // beyond exact float64 integers: the float path
	c.Add(3)
	c.Add(0.5)
	if got := Value(&c); got != float64(1<<60)+3.5 {
		t.Errorf("Value = %v", got)
	}
	var g Gauge
	g.Set(3)
	g.Sub(5)
	if Value(&g) != -2 {
		t.Errorf("gauge = %v", Value(&g))
	}
}

func TestRegister(t *testing.T) {
	s := NewSet()
	v := NewCounterVec("a_total", "a", "l")
	if err := s.Register(v); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(NewCounter("a_total", "again")); err == nil {
		t.Error("a second family of the same name was registered")
	}
	if err := s.Register(v.WithLabelValues("x")); err == nil {
		t.Error("a vector's child was registered")
	}
	if err := s.Register(new(Gauge)); err == nil {
		t.Error("a zero Gauge was registered")
	}
}

func TestHandler(t *testing.T) {
	s := sampleSet()
	srv := httptest.NewServer(s)
	defer srv.Close()
	for range 2 { // the second answer comes from a pooled buffer
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if resp.StatusCode != 200 || !bytes.Equal(body, s.AppendText(nil)) {
			t.Errorf("status %d, body:\n%s", resp.StatusCode, body)
		}
	}
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), s.AppendText(nil)) {
		t.Errorf("WriteTo: %v", err)
	}
}

// TestRegistry checks the whole /metrics text: it parses, families are sorted and unique, the
// runtime series are there with plausible values, and the skiff families keep their names,
// types, labels and help texts (testdata/skiff_families.txt: dashboards and docs use them).
func TestRegistry(t *testing.T) {
	text := Registry.AppendText(nil)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(text), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(name)[0])
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("families not sorted or repeated: %v", names)
	}
	for _, c := range []struct {
		name string
		typ  dto.MetricType
		min  float64
	}{
		{"go_goroutines", dto.MetricType_GAUGE, 1},
		{"go_threads", dto.MetricType_GAUGE, 1},
		{"go_memstats_alloc_bytes", dto.MetricType_GAUGE, 1},
		{"go_memstats_heap_alloc_bytes", dto.MetricType_GAUGE, 1},
		{"go_memstats_sys_bytes", dto.MetricType_GAUGE, 1 << 20},
		{"go_memstats_alloc_bytes_total", dto.MetricType_COUNTER, 1},
		{"go_info", dto.MetricType_GAUGE, 1},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER, 0},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, 1 << 20},
		{"process_virtual_memory_bytes", dto.MetricType_GAUGE, 1 << 20},
		{"process_open_fds", dto.MetricType_GAUGE, 3},
		{"process_max_fds", dto.MetricType_GAUGE, 3},
		{"process_start_time_seconds", dto.MetricType_GAUGE, 1.7e9},
	} {
		f, ok := fams[c.name]
		if !ok {
			t.Errorf("%s missing", c.name)
			continue
		}
		m := f.Metric[0]
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if f.GetType() != c.typ || v < c.min {
			t.Errorf("%s: type %v value %v, want %v >= %v", c.name, f.GetType(), v, c.typ, c.min)
		}
	}
	var b []byte
	for _, c := range Registry.cs {
		var f *family
		switch c := c.(type) {
		case *CounterVec:
			f = c.v.fam
		case *GaugeVec:
			f = c.v.fam
		case *HistogramVec:
			f = c.v.fam
		case *Counter:
			f = c.fam
		case *Gauge:
			f = c.fam
		default:
			continue
		}
		b = appendHeader(b, f)
		b = append(b, "# labels "...)
		b = append(b, strings.Join(f.labels, ",")...)
		b = append(b, '\n')
	}
	golden(t, "skiff_families.txt", b)
}

func BenchmarkCounterAdd(b *testing.B) {
	c := InputBytes.WithLabelValues("bench")
	b.ReportAllocs()
	for b.Loop() {
		c.Add(4096)
	}
}

func BenchmarkCounterAddParallel(b *testing.B) {
	c := InputBytes.WithLabelValues("bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(1)
		}
	})
}

func BenchmarkCounterAddFraction(b *testing.B) {
	c := MemoryBudgetBlockedSeconds
	b.ReportAllocs()
	for b.Loop() {
		c.Add(0.001)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := OutputLatency.WithLabelValues("bench")
	b.ReportAllocs()
	v := 0.0
	for b.Loop() {
		v += 0.0001
		if v > 20 {
			v = 0
		}
		h.Observe(v)
	}
}

func BenchmarkWithLabelValues(b *testing.B) {
	OutputRecords.WithLabelValues("bench", "delivered")
	b.ReportAllocs()
	for b.Loop() {
		OutputRecords.WithLabelValues("bench", "delivered")
	}
}

// BenchmarkScrape is one /metrics scrape of the full Registry into a reused buffer.
func BenchmarkScrape(b *testing.B) {
	for i := range 100 {
		FileUnackedBytes.WithLabelValues("/var/log/pods/bench/" + string(rune('a'+i%26)) + string(rune('a'+i/26))).Set(float64(i))
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = Registry.AppendText(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
