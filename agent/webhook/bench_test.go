package webhook

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkWriteEventList100 measures the body handler on a 100-event EventList (~700 B per
// event, indented as the apiserver's JSON is not; compaction has work to do): validate, split,
// compact, add kind and apiVersion, one write and one fsync to the spool in b.TempDir().
func BenchmarkWriteEventList100(b *testing.B) {
	body := eventList(b, "bench", 100)
	s := newTestSpool(b, b.TempDir(), 64<<20, 0)
	s.fileAge = time.Hour
	in := &Input{cfg: Config{Name: "bench"}, spool: s, m: newInputMetrics("bench"), log: quiet}
	bufs := &buffers{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if code, msg := in.write(bufs, body); code != http.StatusOK {
			b.Fatal(code, msg)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSplitEventList100 is BenchmarkWriteEventList100 without the spool: the CPU cost of a
// request's body alone.
func BenchmarkSplitEventList100(b *testing.B) {
	body := eventList(b, "bench", 100)
	var lines, scratch []byte
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if lines, scratch, _, err = splitEventList(lines[:0], scratch, body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkHTTPSEventList100 posts 100-event EventLists over HTTPS (keep-alive, one client at a
// time) to a running input whose reader ships the spool: the whole request path.
func BenchmarkHTTPSEventList100(b *testing.B) {
	f := start(b, nil)
	c := f.client(nil)
	body := eventList(b, "bench", 100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if code, msg := post(c, f.url, body); code != http.StatusOK {
			b.Fatal(code, msg)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkLatencyAt200EventsPerSecond posts 10-event EventLists every 50 ms (200 events/s, the
// issue's load) over HTTPS and reports the latency of the requests as the client sees it
// (p50, p99, max), fsync included. Run it with -benchtime=400x or more for a stable p99.
func BenchmarkLatencyAt200EventsPerSecond(b *testing.B) {
	f := start(b, nil)
	c := f.client(nil)
	body := eventList(b, "lat", 10)
	if code, msg := post(c, f.url, body); code != http.StatusOK { // connect and handshake once
		b.Fatal(code, msg)
	}
	var lat []time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		<-tick.C
		t0 := time.Now()
		if code, msg := post(c, f.url, body); code != http.StatusOK {
			b.Fatal(code, msg)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
