package webhook

import (
	"net/http"
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
