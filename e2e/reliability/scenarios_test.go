package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/internal/faultproxy"
)

// peakRSSBound is the chart's memory limit (256Mi): no scenario may take skiff near it.
const peakRSSBound = 256 << 20

// drainStall fails a drain when the document count has not moved for this long.
const drainStall = 3 * time.Minute

// TestReliability runs the scenarios in order on the suite's Elasticsearch; they are not
// parallel, since some stop Elasticsearch or block it.
func TestReliability(t *testing.T) {
	s := getSuite(t)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *suite, *row)
	}{
		{"a: SIGKILLs under load", sigkills},
		{"b: Elasticsearch stopped", outage},
		{"c: 429 storm", storm},
		{"d: fast rotation", rotation},
		{"e: restart with read-only block", readOnly},
		{"f: RSS flat, Elasticsearch down", rssFlat},
	} {
		t.Run(strings.Fields(sc.name)[0][:1], func(t *testing.T) {
			r := addRow(t, sc.name)
			t.Cleanup(func() { s.proxy.SetMode(faultproxy.Pass) })
			sc.run(t, s, r)
		})
	}
}

// background runs fn(ctx) in a goroutine; the returned stop cancels ctx and waits for fn.
func background(fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fn(ctx)
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// load prepares a scenario's node with files log files of lineLen-byte lines, starts skiff
// with es as extra elasticsearch output keys, and writes rate lines per second in all until
// the returned stop (also deferred by the caller) is called.
func load(t *testing.T, s *suite, name string, files, lineLen, rate int, es map[string]any) (*node, *writer, *proc, func()) {
	t.Helper()
	n := newNode(t, s, name)
	w := newWriter(t, n.root, files, lineLen)
	t.Cleanup(w.closeAll)
	p := n.start(n.config(es, nil))
	return n, w, p, background(func(ctx context.Context) { w.steady(ctx, rate) })
}

// finish checks Elasticsearch against everything w wrote, fills r, and asserts nothing was lost
// or duplicated and the peak RSS stayed under the bound.
func finish(t *testing.T, n *node, w *writer, r *row, drain time.Duration) tally {
	t.Helper()
	res := w.check(n)
	r.written, r.docs, r.lost, r.dup = res.written, res.docs, res.lost(), res.dup()
	r.peakRSS, r.drain = n.peak(), drain
	t.Logf("%s: written %d, documents %d, distinct %d, lost %d, duplicated %d, peak RSS %s, drain %v",
		r.scenario, res.written, res.docs, res.distinct, res.lost(), res.dup(), mib(r.peakRSS), drain.Round(time.Millisecond))
	if r.peakRSS >= peakRSSBound {
		t.Errorf("peak RSS %s, want under %s", mib(r.peakRSS), mib(peakRSSBound))
	}
	return res
}

// wrapUp ends a scenario whose fault is over: it stops the writing, waits until every line
// written is in Elasticsearch (the time to drain), calls atEnd (if not nil) while skiff still
// runs, gives skiff two more seconds to show any extra document, stops it with SIGTERM, and
// checks Elasticsearch (finish).
func wrapUp(t *testing.T, n *node, w *writer, r *row, p *proc, stopWriter func(), atEnd func()) tally {
	t.Helper()
	stopWriter()
	end := time.Now()
	n.drain(w.written(), drainStall)
	drain := time.Since(end)
	if atEnd != nil {
		atEnd()
	}
	time.Sleep(2 * time.Second)
	p.term()
	return finish(t, n, w, r, drain)
}

// assertExact fails t unless res shows no loss and no duplicate.
func assertExact(t *testing.T, res tally) {
	t.Helper()
	if res.lost() != 0 {
		t.Errorf("%d of %d lines lost; first missing by file: %v", res.lost(), res.written, res.missing)
	}
	if res.dup() != 0 {
		t.Errorf("%d duplicate documents", res.dup())
	}
}

// sigkills (a): skiff is SIGKILLed kills times at random points while 20 files are written and
// Elasticsearch comes and goes through the proxy (fallback_after 2s), so kills land during bulk
// requests, spool writes, positions writes and replay. Each kill's phase is read from skiff's
// metrics just before it.
func sigkills(t *testing.T, s *suite, r *row) {
	kills := pick(8, 50)
	n := newNode(t, s, "a")
	w := newWriter(t, n.root, 20, 160)
	defer w.closeAll()
	cfg := n.config(map[string]any{"fallback_after": "2s", "spool_max_bytes": "256MiB"}, nil)
	rng := rand.New(rand.NewPCG(1, 2))

	stopWriter := background(func(ctx context.Context) { w.steady(ctx, 1000) })
	defer stopWriter()
	toggleRng := rand.New(rand.NewPCG(3, 4))
	stopToggler := background(func(ctx context.Context) {
		for {
			up := time.Duration(2000+toggleRng.IntN(3000)) * time.Millisecond
			down := time.Duration(1000+toggleRng.IntN(5000)) * time.Millisecond
			for _, step := range []struct {
				m faultproxy.Mode
				d time.Duration
			}{{faultproxy.Pass, up}, {faultproxy.Down, down}} {
				s.proxy.SetMode(step.m)
				select {
				case <-ctx.Done():
					return
				case <-time.After(step.d):
				}
			}
		}
	})
	defer stopToggler()

	phases := map[string]int{}
	positionsWrites := 0
	for i := range kills {
		p := n.start(cfg)
		time.Sleep(time.Duration(500+rng.IntN(4500)) * time.Millisecond)
		// Two scrapes 300ms apart: what moved between them is what skiff was doing when it
		// was killed.
		before, err1 := n.metrics()
		time.Sleep(300 * time.Millisecond)
		now, err2 := n.metrics()
		mode := s.proxy.Mode()
		moved := func(name string) bool { return sum(now, name) > sum(before, name) }
		phase := "startup (no /metrics yet)"
		if err1 == nil && err2 == nil {
			switch {
			case moved("skiff_spool_replayed_records_total") || mode == faultproxy.Pass && sum(now, "skiff_spool_files") > 0:
				phase = "replay"
			case moved("skiff_spool_records_total"):
				phase = "spool writes"
			case mode == faultproxy.Down:
				phase = "bulk retries, Elasticsearch down"
			case moved("skiff_output_records_total") || sum(now, "skiff_output_queued_records") > 0:
				phase = "bulk requests"
			default:
				phase = "idle"
			}
			if moved("skiff_positions_writes_total") {
				positionsWrites++
			}
		}
		phases[phase]++
		p.kill()
		t.Logf("kill %d/%d in phase %s", i+1, kills, phase)
	}
	stopToggler()
	s.proxy.SetMode(faultproxy.Pass)
	res := wrapUp(t, n, w, r, n.start(cfg), stopWriter, nil)
	names := make([]string, 0, len(phases))
	for k := range phases {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, phases[k]))
	}
	r.note = fmt.Sprintf("%d SIGKILLs; what skiff was doing in the 300ms before each (from its metrics): %s; %d of the kills came within 300ms of a positions-file write",
		kills, strings.Join(parts, ", "), positionsWrites)
	assertExact(t, res)
}

// outage (b): Elasticsearch is stopped while 50 files write 2,000 lines/s in all, and started
// again on the same data directory after the outage; skiff spools after fallback_after and
// replays.
func outage(t *testing.T, s *suite, r *row) {
	down := pick(20*time.Second, 10*time.Minute)
	n, w, p, stopWriter := load(t, s, "b", 50, 160, pick(1000, 2000), map[string]any{"fallback_after": pick("5s", "30s")})
	defer stopWriter()
	time.Sleep(pick(5*time.Second, 30*time.Second))
	if err := s.stopES(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	esDown := true
	t.Cleanup(func() {
		if esDown {
			_ = s.startES()
		}
	})
	time.Sleep(down)
	m, _ := n.metrics()
	if err := s.startES(); err != nil {
		t.Fatal(err)
	}
	esDown = false
	outageLen := time.Since(stopped)
	var m2 metricSet
	res := wrapUp(t, n, w, r, p, stopWriter, func() { m2, _ = n.metrics() })
	r.note = fmt.Sprintf("Elasticsearch down %v (its restart included); skiff had spooled %.0f records when Elasticsearch came back, %.0f in all, and replayed %.0f",
		outageLen.Round(time.Second), sum(m, "skiff_spool_records_total"), sum(m2, "skiff_spool_records_total"), sum(m2, "skiff_spool_replayed_records_total"))
	if sum(m, "skiff_spool_records_total") == 0 {
		t.Errorf("nothing was spooled during a %v outage with fallback_after %s", down, pick("5s", "30s"))
	}
	assertExact(t, res)
}

// storm (c): the proxy answers 20% of _bulk requests with a whole 429 and half the items of the
// others with a per-item 429 es_rejected_execution_exception, forwarding only the rest.
func storm(t *testing.T, s *suite, r *row) {
	dur := pick(25*time.Second, 5*time.Minute)
	n, w, p, stopWriter := load(t, s, "c", 20, 160, 2000, nil)
	defer stopWriter()
	before := s.proxy.Stats()
	s.proxy.SetStorm(faultproxy.StormConfig{RequestFraction: 0.2, ItemFraction: 0.5})
	s.proxy.SetMode(faultproxy.Storm)
	time.Sleep(dur)
	m, _ := n.metrics()
	s.proxy.SetMode(faultproxy.Pass)
	after := s.proxy.Stats()
	during, duringWritten := n.count(), w.written()
	res := wrapUp(t, n, w, r, p, stopWriter, nil)
	r.note = fmt.Sprintf("%v of storm (%d of the %d lines written by then were indexed during it): %d whole _bulk requests and %d items answered 429 (%d items forwarded); skiff retried %.0f records, spooled %.0f",
		dur, during, duringWritten, after.BulkRejected-before.BulkRejected, after.ItemsRejected-before.ItemsRejected,
		after.ItemsForwarded-before.ItemsForwarded, sum(m, "skiff_output_retried_records_total"), sum(m, "skiff_spool_records_total"))
	if after.ItemsRejected == before.ItemsRejected {
		t.Error("the storm rejected no item")
	}
	assertExact(t, res)
}

// rotation (d): 10 files rotated the kubelet's way (rename to 0.log.<time>, gzip of all rotated
// files but the newest through .tmp, deletion beyond 5 files) and 4 by copytruncate, 1,000
// rotations a minute in all, while 2,000 lines/s are written. Lines in rotated files the
// "kubelet" deleted before skiff read them are lost by the simulator, not by skiff: every
// missing line must be inside a deleted file, and skiff_lost_bytes_total must equal the bytes of
// the missing lines.
func rotation(t *testing.T, s *suite, r *row) {
	dur := pick(25*time.Second, 5*time.Minute)
	n, w, p, stopWriter := load(t, s, "d", 14, 200, 2000, nil)
	defer stopWriter()
	w.mu.Lock()
	for _, f := range w.files[10:] {
		f.copyTruncate = true
	}
	w.mu.Unlock()
	rotations := 0
	stopRotator := background(func(ctx context.Context) {
		// 1,000 a minute: one every 60ms, catching up when a rotation (a gzip) took longer.
		const every = 60 * time.Millisecond
		start := time.Now()
		tick := time.NewTicker(every / 2)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for due := int(time.Since(start) / every); rotations < due && ctx.Err() == nil; rotations++ {
				if err := w.rotate(w.files[rotations%len(w.files)]); err != nil {
					t.Errorf("rotate: %v", err)
					return
				}
			}
		}
	})
	defer stopRotator()
	time.Sleep(dur)
	stopRotator()
	stopWriter()
	end := time.Now()
	drain := n.settle(end, pick(15*time.Second, 30*time.Second))
	m, err := n.metrics()
	if err != nil {
		t.Fatal(err)
	}
	p.term()
	res := finish(t, n, w, r, drain)
	lostBytes := sum(m, "skiff_lost_bytes_total")
	w.mu.Lock()
	deletedFiles, truncations := len(w.destroyed), len(w.truncated)
	w.mu.Unlock()
	r.note = fmt.Sprintf("%d rotations in %v (%.0f/min), %d of them copytruncate; the simulated kubelet deleted %d rotated files holding %d lines; "+
		"%d lines missing: %d in deleted files, %d truncated away by copytruncate (still in the copy), %d elsewhere; "+
		"their bytes %d, skiff_lost_bytes_total %.0f",
		rotations, dur, float64(rotations)/dur.Minutes(), truncations, deletedFiles, w.destroyedLines(),
		res.lost(), res.missingDestroyed, res.missingTruncated, res.missingCount-res.missingDestroyed-res.missingTruncated,
		res.lost()*w.lineLen(), lostBytes)
	if res.dup() != 0 {
		t.Errorf("%d duplicate documents", res.dup())
	}
	if unexplained := res.missingCount - res.missingDestroyed - res.missingTruncated; unexplained != 0 {
		t.Errorf("%d missing lines were neither in a file the kubelet deleted nor truncated away (lost by skiff); first missing by file: %v", unexplained, res.missing)
	}
	if want := float64(res.lost() * w.lineLen()); lostBytes != want {
		t.Errorf("skiff_lost_bytes_total %.0f, but the %d missing lines are %.0f bytes: skiff's reported loss does not match what it did not ship; first missing by file: %v",
			lostBytes, res.lost(), want, res.missing)
	}
}

// readOnly (e): the node's indices get index.blocks.read_only_allow_delete and the cluster
// cluster.blocks.read_only, Elasticsearch is restarted with them, and they are cleared after a
// while; skiff's blocked items are retried (and spooled after fallback_after) and all arrive.
func readOnly(t *testing.T, s *suite, r *row) {
	hold := pick(10*time.Second, 2*time.Minute)
	n, w, p, stopWriter := load(t, s, "e", 20, 160, 1000, map[string]any{"fallback_after": pick("5s", "30s")})
	defer stopWriter()
	time.Sleep(pick(5*time.Second, 30*time.Second))
	// The index exists by now: skiff has been shipping.
	if c := n.count(); c == 0 {
		t.Fatalf("nothing indexed after the warm-up; skiff: %s", n.progress())
	}
	clear := func() error {
		if err := s.esErr(http.MethodPut, "/_cluster/settings", map[string]any{"persistent": map[string]any{"cluster.blocks.read_only": nil}}, nil); err != nil {
			return err
		}
		return s.esErr(http.MethodPut, "/"+n.pattern()+"/_settings", map[string]any{"index.blocks.read_only_allow_delete": nil}, nil)
	}
	s.es(t, http.MethodPut, "/"+n.pattern()+"/_settings", map[string]any{"index.blocks.read_only_allow_delete": true}, nil)
	s.es(t, http.MethodPut, "/_cluster/settings", map[string]any{"persistent": map[string]any{"cluster.blocks.read_only": true}}, nil)
	blocked := true
	t.Cleanup(func() {
		if blocked {
			_ = clear()
		}
	})
	if err := s.stopES(); err != nil {
		t.Fatal(err)
	}
	if err := s.startES(); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Persistent map[string]any `json:"persistent"`
	}
	s.es(t, http.MethodGet, "/_cluster/settings?flat_settings=true", nil, &st)
	if st.Persistent["cluster.blocks.read_only"] != "true" {
		t.Fatalf("cluster.blocks.read_only not kept across the restart: %v", st.Persistent)
	}
	time.Sleep(hold)
	m, _ := n.metrics()
	if err := clear(); err != nil {
		t.Fatal(err)
	}
	blocked = false
	res := wrapUp(t, n, w, r, p, stopWriter, nil)
	r.note = fmt.Sprintf("restarted with both blocks, held %v after the restart; by then skiff had retried %.0f records and spooled %.0f",
		hold, sum(m, "skiff_output_retried_records_total"), sum(m, "skiff_spool_records_total"))
	assertExact(t, res)
}

// rssFlat (f): Elasticsearch is unreachable while 100 files are written at full speed; with a
// small spool_max_bytes the spool fills and the tailers pause. skiff's RSS, sampled every
// second, must not grow: the highest sample of the last third of the outage may exceed the
// highest of the first third by at most a quarter (at least 16 MiB). Then Elasticsearch comes
// back and everything must arrive once.
func rssFlat(t *testing.T, s *suite, r *row) {
	window := pick(30*time.Second, 3*time.Minute)
	n := newNode(t, s, "f")
	w := newWriter(t, n.root, 100, 1024)
	defer w.closeAll()
	// Elasticsearch goes down once skiff has installed its index template: an output that
	// starts while Elasticsearch is unreachable waits for the template and does not spool.
	p := n.start(n.config(map[string]any{"fallback_after": "2s", "spool_max_bytes": "4MiB"}, nil))
	n.waitTemplate()
	s.proxy.SetMode(faultproxy.Down)
	start := time.Now()
	writerDone := make(chan struct{})
	stopWriter := background(func(ctx context.Context) {
		defer close(writerDone)
		w.flat(ctx, int64(pick(1<<20, 4<<20)))
	})
	defer stopWriter()
	time.Sleep(window)
	m, _ := n.metrics()
	third := window / 3
	first := p.rssBetween(start, start.Add(third))
	last := p.rssBetween(start.Add(2*third), start.Add(window))
	maxOf := func(v []uint64) uint64 {
		var m uint64
		for _, x := range v {
			m = max(m, x)
		}
		return m
	}
	f, l := maxOf(first), maxOf(last)
	s.proxy.SetMode(faultproxy.Pass)
	// The writers finish their files by themselves.
	res := wrapUp(t, n, w, r, p, func() { <-writerDone }, nil)
	r.note = fmt.Sprintf("%v outage: max RSS first third %s, last third %s; spool full %.0f, readers blocked %.0fs on memory_limit, %.0f records spooled",
		window, mib(f), mib(l), sum(m, "skiff_spool_full"), sum(m, "skiff_memory_budget_blocked_seconds_total"), sum(m, "skiff_spool_records_total"))
	if len(first) == 0 || len(last) == 0 {
		t.Errorf("no RSS samples: first third %d, last third %d", len(first), len(last))
	}
	if bound := f + max(f/4, 16<<20); l > bound {
		t.Errorf("RSS grew while Elasticsearch was down: max %s in the last third, %s in the first (bound %s)", mib(l), mib(f), mib(bound))
	}
	if sum(m, "skiff_spool_full") != 1 {
		t.Errorf("the 4MiB spool is not full after %v of outage at full write speed: skiff_spool_full %v", window, sum(m, "skiff_spool_full"))
	}
	assertExact(t, res)
}
