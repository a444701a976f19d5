package elasticsearch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
)

func TestLimiterAIMD(t *testing.T) {
	for _, tc := range []struct {
		name     string
		max      int
		outcomes []outcome
		want     int
	}{
		{"starts at max", 4, nil, 4},
		{"halves on rejection", 4, []outcome{outcomeRejected}, 2},
		{"never below one", 4, []outcome{outcomeRejected, outcomeRejected, outcomeRejected, outcomeRejected}, 1},
		{"odd halves down", 5, []outcome{outcomeRejected}, 2},
		{"one back after a clean run", 4, append([]outcome{outcomeRejected, outcomeRejected}, clean(recoverAfter)...), 2},
		{"short clean run adds nothing", 4, append([]outcome{outcomeRejected, outcomeRejected}, clean(recoverAfter-1)...), 1},
		{"rejection restarts the run", 4, append(append([]outcome{outcomeRejected, outcomeRejected}, clean(recoverAfter-1)...), append([]outcome{outcomeRejected}, clean(recoverAfter-1)...)...), 1},
		{"other outcomes neither count nor reset", 4, []outcome{outcomeRejected, outcomeRejected, outcomeClean, outcomeClean, outcomeOther, outcomeClean, outcomeClean, outcomeClean}, 2},
		{"never above max", 2, clean(5 * recoverAfter), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := metrics.OutputConcurrency.WithLabelValues(uniq("limiter"))
			l := newLimiter(tc.max, g)
			for _, oc := range tc.outcomes {
				if !l.acquire(nil) {
					t.Fatal("acquire failed")
				}
				l.release(oc)
			}
			if limit, inFlight := l.state(); limit != tc.want || inFlight != 0 {
				t.Errorf("limit %d in flight %d, want %d and 0", limit, inFlight, tc.want)
			}
			if got := gaugeValue(t, g); got != float64(tc.want) {
				t.Errorf("gauge %v, want %d", got, tc.want)
			}
		})
	}
}

func clean(n int) []outcome {
	out := make([]outcome, n)
	for i := range out {
		out[i] = outcomeClean
	}
	return out
}

func TestLimiterAcquireWaitsAndAborts(t *testing.T) {
	l := newLimiter(1, metrics.OutputConcurrency.WithLabelValues(uniq("limiter")))
	if !l.acquire(nil) {
		t.Fatal("first acquire failed")
	}
	done := make(chan struct{})
	close(done)
	if l.acquire(done) {
		t.Fatal("acquire beyond the limit succeeded")
	}
	got := make(chan bool)
	go func() { got <- l.acquire(nil) }()
	l.release(outcomeClean)
	if !<-got {
		t.Fatal("acquire after release failed")
	}
}

// peak is the largest value an atomic counter has had while watched.
type peak struct{ v atomic.Int64 }

func (p *peak) see(n int64) {
	for {
		cur := p.v.Load()
		if n <= cur || p.v.CompareAndSwap(cur, n) {
			return
		}
	}
}

func TestAdaptiveConcurrency429Storm(t *testing.T) {
	const n, workers = 1000, 4
	var (
		storm                atomic.Bool
		watching             atomic.Bool // storm, with the limit already down to 1
		inFlight, started    atomic.Int64
		early, stormPeak     peak
		afterPeak            peak
		stormReqs, cleanReqs atomic.Int64
		mu                   sync.Mutex
		accepted             = map[string]int{}
	)
	storm.Store(true)
	ready := make(chan struct{})
	f := newFakeES(t, func(_ int, items []bulkItem) (int, []int) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		time.Sleep(5 * time.Millisecond) // let requests overlap
		if k := started.Add(1); k <= workers {
			// The first requests wait for each other, so the fake sees all workers at once
			// before the first rejection.
			if k == workers {
				early.see(inFlight.Load())
				close(ready)
			}
			select {
			case <-ready:
			case <-time.After(5 * time.Second):
			}
		}
		if storm.Load() {
			if watching.Load() {
				stormPeak.see(cur)
			}
			if stormReqs.Add(1)%2 == 1 {
				return 429, nil // the whole request refused
			}
			// es_rejected_execution_exception for the odd ids, the even ones accepted.
			st := make([]int, len(items))
			mu.Lock()
			defer mu.Unlock()
			for i, it := range items {
				st[i] = 429
				if !oddID(it.ID) {
					st[i] = 201
					accepted[it.ID]++
				}
			}
			return 200, st
		}
		cleanReqs.Add(1)
		afterPeak.see(cur)
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			accepted[it.ID]++
		}
		return 200, nil
	})
	s := newSink(t, "aimd")
	cfg := fastConfig(f.srv.URL)
	cfg.Name = uniq("aimd")
	cfg.Workers = workers
	cfg.FlushBytes = 2048 // a few records per request
	cfg.MaxBackoff = 100 * time.Millisecond
	o := start(t, cfg, func(o *Output) { o.base = 5 * time.Millisecond })
	gauge := metrics.OutputConcurrency.WithLabelValues(cfg.Name)
	for i := 0; i < n; i += 20 {
		send(t, o, s.batch(i, 20, nil))
	}

	waitFor(t, func() bool { return stormReqs.Load() >= workers })
	if got := early.v.Load(); got != workers {
		t.Errorf("%d bulk requests in flight before the first rejection, want %d", got, workers)
	}
	// Rejections continue: the limit falls to one request, and once the requests sent before
	// have ended, the fake never sees more than one at a time.
	stormStart := time.Now()
	waitFor(t, func() bool { limit, in := o.slots.state(); return limit == 1 && in <= 1 })
	watching.Store(true)
	from := stormReqs.Load()
	waitFor(t, func() bool { return stormReqs.Load() >= from+30 })
	if got := gaugeValue(t, gauge); got != 1 {
		t.Errorf("skiff_output_concurrency during the storm = %v, want 1", got)
	}
	storm.Store(false)
	stormTime := time.Since(stormStart)
	if got := stormPeak.v.Load(); got != 1 {
		t.Errorf("%d bulk requests in flight while rejections continued at limit 1, want 1", got)
	}

	// After the storm: back to one request per worker.
	waitFor(t, func() bool { limit, _ := o.slots.state(); return limit == workers })
	s.wait(30 * time.Second)
	if got := afterPeak.v.Load(); got != workers {
		t.Errorf("peak %d bulk requests in flight after the storm, want %d", got, workers)
	}
	if got := gaugeValue(t, gauge); got != workers {
		t.Errorf("skiff_output_concurrency after the storm = %v, want %d", got, workers)
	}
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed", got)
	}
	mu.Lock()
	for i := range n {
		if c := accepted[s.id(i)]; c != 1 {
			t.Errorf("%s accepted %d times, want exactly once", s.id(i), c)
		}
	}
	mu.Unlock()
	if got := counter(t, o.m.delivered); got != n {
		t.Errorf("delivered = %v, want %d", got, n)
	}
	// No hot loop: every worker waits at least half its backoff between attempts, which reaches
	// half of MaxBackoff within a few attempts, so the storm allows about
	// workers·(stormTime/(MaxBackoff/2) + attempts to reach the cap) requests.
	bound := int64(workers) * (int64(stormTime/(cfg.MaxBackoff/2)) + 8)
	if got := stormReqs.Load(); got > bound {
		t.Errorf("%d bulk requests during a %v storm, want at most %d (no hot loop)", got, stormTime, bound)
	}
	t.Logf("storm %v: %d requests refused, then %d clean requests", stormTime, stormReqs.Load(), cleanReqs.Load())
}
