package elasticsearch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// Error paths a real server will not produce on demand, against an httptest fake.

// fastConfig is a config for fakes: one worker (so request order is deterministic), no template.
func fastConfig(url string) Config {
	return Config{
		Hosts:            []string{url},
		Index:            "fake-%Y.%m.%d",
		Workers:          1,
		FlushInterval:    10 * time.Millisecond,
		MaxBackoff:       time.Second,
		InstallTemplates: boolp(false),
	}
}

// withFastBackoff shortens the first retry delay and records every delay chosen.
func withFastBackoff(o *Output, base time.Duration) func() []time.Duration {
	var mu sync.Mutex
	var delays []time.Duration
	o.base = base
	o.onBackoff = func(d time.Duration) {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), delays...)
	}
}

func TestItem429Storm(t *testing.T) {
	const rounds, n = 4, 20
	// Items with an even offset are accepted at once; the odd ones get 429 for `rounds`
	// requests, then 201.
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) {
		st := make([]int, len(items))
		for i, it := range items {
			st[i] = 201
			if req < rounds && oddID(it.ID) {
				st[i] = 429
			}
		}
		return 200, st
	})
	s := newSink(t, "storm")
	cfg := fastConfig(f.srv.URL)
	cfg.Name = uniq("storm")
	var delays func() []time.Duration
	o := start(t, cfg, func(o *Output) { delays = withFastBackoff(o, 20*time.Millisecond) })
	send(t, o, s.batch(0, n, nil))
	s.wait(10 * time.Second)
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed", got)
	}

	reqs := f.bulkRequests()
	if len(reqs) != rounds+1 {
		t.Fatalf("%d bulk requests, want %d (one per round, no hot loop)", len(reqs), rounds+1)
	}
	if got := len(reqs[0].items); got != n {
		t.Fatalf("first request has %d items, want %d", got, n)
	}
	for i, r := range reqs[1:] {
		if len(r.items) != n/2 {
			t.Errorf("retry %d resent %d items, want only the %d rejected ones", i+1, len(r.items), n/2)
		}
		for _, it := range r.items {
			if !oddID(it.ID) {
				t.Errorf("retry %d resent accepted item %s", i+1, it.ID)
			}
		}
	}
	d := delays()
	if len(d) != rounds {
		t.Fatalf("backoff delays %v, want %d of them", d, rounds)
	}
	for i := 1; i < len(d); i++ {
		if d[i] < d[i-1] {
			t.Errorf("backoff shrank: %v", d)
		}
	}
	if d[len(d)-1] < 4*d[0]/2 {
		t.Errorf("backoff did not grow exponentially: %v", d)
	}
	// The delays were really waited: no request followed the previous one sooner.
	for i := 1; i < len(reqs); i++ {
		if gap := reqs[i].at.Sub(reqs[i-1].at); gap < d[i-1] {
			t.Errorf("request %d came %v after the previous one, before its backoff %v", i, gap, d[i-1])
		}
	}
	if got := counter(t, o.m.retries); got != float64(rounds*n/2) {
		t.Errorf("retried records = %v, want %d", got, rounds*n/2)
	}
	if got := counter(t, o.m.delivered); got != n {
		t.Errorf("delivered = %v, want %d", got, n)
	}
}

// oddID reports whether a test id ("<prefix>-<hex offset>") has an odd offset.
func oddID(id string) bool {
	c := id[len(id)-1]
	return strings.IndexByte("13579bdf", c) >= 0
}

func TestWholeRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		html   bool
	}{{503, false}, {429, false}, {502, true}, {401, false}, {400, true}} {
		status := tc.status
		t.Run(http.StatusText(status), func(t *testing.T) {
			const fails, n = 3, 5
			f := newFakeES(t, func(req int, items []bulkItem) (int, []int) {
				if req < fails {
					return status, nil
				}
				return 200, nil
			})
			f.html = tc.html
			s := newSink(t, "whole")
			var delays func() []time.Duration
			o := start(t, fastConfig(f.srv.URL), func(o *Output) { delays = withFastBackoff(o, 10*time.Millisecond) })
			send(t, o, s.batch(0, n, nil))
			s.wait(10 * time.Second)
			if got := s.failed(); got != 0 {
				t.Fatalf("%d records failed", got)
			}
			reqs := f.bulkRequests()
			if len(reqs) != fails+1 {
				t.Fatalf("%d requests, want %d", len(reqs), fails+1)
			}
			for _, r := range reqs {
				if len(r.items) != n {
					t.Errorf("request with %d items, want all %d", len(r.items), n)
				}
			}
			if got := len(delays()); got != fails {
				t.Errorf("%d backoff delays, want %d", got, fails)
			}
			if got := counter(t, o.m.reqErr); got != fails {
				t.Errorf("failed requests = %v, want %d", got, fails)
			}
			// The worker acknowledges the items while it reads the response, and resets the
			// streak after it: wait for that rather than read it right after the last ack.
			waitFor(t, func() bool { return o.failingSince.Load() == 0 })
		})
	}
}

func TestTooLargeSplits(t *testing.T) {
	const n = 8
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) {
		if len(items) > 2 {
			return http.StatusRequestEntityTooLarge, nil
		}
		for _, it := range items {
			if strings.HasSuffix(it.ID, "-5") {
				// One document is too large even alone.
				return http.StatusRequestEntityTooLarge, nil
			}
		}
		return 200, nil
	})
	s := newSink(t, "split")
	cfg := fastConfig(f.srv.URL)
	cfg.Name = uniq("split")
	o := start(t, cfg)
	send(t, o, s.batch(0, n, nil))
	s.wait(10 * time.Second)
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed", got)
	}
	accepted := map[string]int{}
	var sizes []int
	for _, r := range f.bulkRequests() {
		sizes = append(sizes, len(r.items))
		if len(r.items) <= 2 && !hasID(r.items, s.id(5)) {
			for _, it := range r.items {
				accepted[it.ID]++
			}
		}
	}
	// 8 → 4+4 → 2+2+2+2, and the pair holding offset 5 → 1+1.
	want := []int{8, 4, 2, 2, 4, 2, 1, 1, 2}
	if !equalInts(sizes, want) {
		t.Errorf("request sizes %v, want %v", sizes, want)
	}
	for i := 0; i < n; i++ {
		if i == 5 {
			continue
		}
		if accepted[s.id(i)] != 1 {
			t.Errorf("%s accepted %d times, want 1", s.id(i), accepted[s.id(i)])
		}
	}
	lines := readDeadLetters(t, o)
	if len(lines) != 1 {
		t.Fatalf("dead letters %v, want the one oversized document", lines)
	}
	if lines[0].ID != s.id(5) || lines[0].Status != 413 {
		t.Errorf("dead letter %+v, want _id %s status 413", lines[0], s.id(5))
	}
	if got := counter(t, o.m.rejected); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
}

func hasID(items []bulkItem, id string) bool {
	for _, it := range items {
		if it.ID == id {
			return true
		}
	}
	return false
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// deadLetterLine is a line of the dead-letter file.
type deadLetterLine struct {
	Timestamp time.Time       `json:"@timestamp"`
	Output    string          `json:"output"`
	Index     string          `json:"index"`
	ID        string          `json:"_id"`
	Status    int             `json:"status"`
	Error     json.RawMessage `json:"error"`
	Document  json.RawMessage `json:"document"`
}

func readDeadLetters(t testing.TB, o *Output) []deadLetterLine {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(o.cfg.DataDir, "deadletter", o.cfg.Name+"-*.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []deadLetterLine
	for _, p := range paths {
		if want := o.cfg.Name + "-" + time.Now().UTC().Format("20060102") + ".json.gz"; filepath.Base(p) != want {
			t.Errorf("dead-letter file %s, want %s", filepath.Base(p), want)
		}
		complete, err := gzipfile.ReadAll(p, func(line []byte) error {
			var l deadLetterLine
			if err := json.Unmarshal(line, &l); err != nil {
				t.Errorf("dead-letter line %q: %v", line, err)
			}
			lines = append(lines, l)
			return nil
		})
		if err != nil || !complete {
			t.Fatalf("read %s: complete=%v err=%v", p, complete, err)
		}
	}
	return lines
}

func TestItemRejectsGoToDeadLetter(t *testing.T) {
	// Mixed statuses in one response: 201, 409 (a replay), 400 (mapping) and 404, 500 once.
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) {
		st := make([]int, len(items))
		for i := range items {
			switch {
			case req > 0:
				st[i] = 201
			case i%5 == 0:
				st[i] = 201
			case i%5 == 1:
				st[i] = 409
			case i%5 == 2:
				st[i] = 400
			case i%5 == 3:
				st[i] = 404
			default:
				st[i] = 500
			}
		}
		return 200, st
	})
	s := newSink(t, "mixed")
	cfg := fastConfig(f.srv.URL)
	cfg.Name = uniq("mixed")
	o := start(t, cfg, func(o *Output) { withFastBackoff(o, time.Millisecond) })
	send(t, o, s.batch(0, 10, nil))
	s.wait(10 * time.Second)
	reqs := f.bulkRequests()
	if len(reqs) != 2 || len(reqs[1].items) != 2 {
		t.Fatalf("requests %d (second with %d items), want 2, the second with the 2 items that got 500", len(reqs), len(reqs[len(reqs)-1].items))
	}
	lines := readDeadLetters(t, o)
	if len(lines) != 4 {
		t.Fatalf("%d dead letters, want 4", len(lines))
	}
	want := map[string]int{s.id(2): 400, s.id(3): 404, s.id(7): 400, s.id(8): 404}
	for _, l := range lines {
		if want[l.ID] != l.Status {
			t.Errorf("dead letter %s status %d, want %d", l.ID, l.Status, want[l.ID])
		}
		var e struct{ Type, Reason string }
		if err := json.Unmarshal(l.Error, &e); err != nil || !strings.HasPrefix(e.Type, "fake_4") || !strings.Contains(e.Reason, l.ID) {
			t.Errorf("dead letter error %s (%v)", l.Error, err)
		}
		var doc struct {
			Message string `json:"message"`
			Log     struct {
				Offset int `json:"offset"`
			} `json:"log"`
		}
		if err := json.Unmarshal(l.Document, &doc); err != nil || s.id(doc.Log.Offset) != l.ID {
			t.Errorf("dead letter document %s (%v)", l.Document, err)
		}
		if l.Output != o.cfg.Name || l.Index != "fake-2024.01.02" || time.Since(l.Timestamp) > time.Minute {
			t.Errorf("dead letter %+v", l)
		}
	}
	if got := counter(t, o.m.rejected); got != 4 {
		t.Errorf("rejected = %v, want 4", got)
	}
	if got := counter(t, o.m.delivered); got != 6 {
		t.Errorf("delivered = %v, want 6", got)
	}
}

func TestTemplateGatesBulk(t *testing.T) {
	// The template install fails twice with 503; no bulk request may go out before it worked.
	var mu sync.Mutex
	var puts int
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) { return 200, nil })
	f.other = func(r *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		puts++
		if puts <= 2 {
			return 503
		}
		return 200
	}
	s := newSink(t, "gate")
	cfg := fastConfig(f.srv.URL)
	cfg.Name = uniq("Gate")
	cfg.Index = "gate-%Y"
	cfg.InstallTemplates = nil // default: on
	o := start(t, cfg, func(o *Output) { o.base = 5 * time.Millisecond })
	send(t, o, s.batch(0, 3, nil))
	s.wait(10 * time.Second)
	if err := closeOutput(t, o, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := f.snapshot()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 3 template PUTs and 1 bulk", len(reqs))
	}
	for i, r := range reqs[:3] {
		if r.path != "/_index_template/skiff-"+strings.ToLower(o.cfg.Name) {
			t.Errorf("request %d: %s, want the template", i, r.path)
		}
	}
	if reqs[3].path != "/_bulk" {
		t.Errorf("last request %s, want the bulk", reqs[3].path)
	}
}

func TestCompression(t *testing.T) {
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) { return 200, nil })
	s := newSink(t, "gz")
	cfg := fastConfig(f.srv.URL)
	cfg.Compression = true
	o := start(t, cfg)
	send(t, o, s.batch(0, 100, nil))
	s.wait(10 * time.Second)
	if err := closeOutput(t, o, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var items int
	for _, r := range f.bulkRequests() {
		if !r.gzipped {
			t.Errorf("request not gzipped")
		}
		items += len(r.items)
	}
	if items != 100 {
		t.Errorf("%d items arrived, want 100", items)
	}
}

func TestFlushBytesAndBatchesAcrossRequests(t *testing.T) {
	// Bodies are cut at FlushBytes, also inside a batch, and several batches share a request.
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) { return 200, nil })
	s := newSink(t, "flush")
	cfg := fastConfig(f.srv.URL)
	cfg.FlushBytes = 4096
	cfg.FlushInterval = time.Hour // only size (and Close) may flush
	o := start(t, cfg)
	for i := 0; i < 10; i++ {
		send(t, o, s.batch(i*7, 7, nil))
	}
	if err := closeOutput(t, o, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s.wait(time.Second)
	seen := map[string]int{}
	reqs := f.bulkRequests()
	for i, r := range reqs {
		if i < len(reqs)-1 && (r.size < cfg.FlushBytes || r.size > cfg.FlushBytes+1024) {
			t.Errorf("request %d has %d bytes, want FlushBytes plus at most one item", i, r.size)
		}
		for _, it := range r.items {
			seen[it.ID]++
		}
	}
	if len(reqs) < 3 {
		t.Errorf("%d requests: bodies not cut at FlushBytes", len(reqs))
	}
	for i := 0; i < 70; i++ {
		if seen[s.id(i)] != 1 {
			t.Errorf("%s sent %d times", s.id(i), seen[s.id(i)])
		}
	}
	if got := gaugeValue(t, o.m.queued); got != 0 {
		t.Errorf("queued gauge = %v after Close, want 0", got)
	}
}

func TestQueueBlocksAndCloseFails(t *testing.T) {
	// Elasticsearch refuses everything: Send blocks once QueueRecords wait, Close with a short
	// deadline finishes every batch Failed, and later Sends get ErrClosed.
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) { return 503, nil })
	s := newSink(t, "block")
	cfg := fastConfig(f.srv.URL)
	cfg.QueueRecords = 10
	o := start(t, cfg)
	send(t, o, s.batch(0, 5, nil)) // taken by the worker
	waitFor(t, func() bool { return len(f.bulkRequests()) > 0 })
	send(t, o, s.batch(5, 5, nil))
	send(t, o, s.batch(10, 5, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := o.Send(ctx, s.batch(15, 1, nil))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a full queue: %v, want it to block until its context ended", err)
	}
	s.pending.Add(-1) // that batch stays ours

	// A sender blocked on the full queue is released by Close.
	blocked := make(chan error, 1)
	go func() { blocked <- o.Send(context.Background(), s.batch(16, 1, nil)) }()
	if err := closeOutput(t, o, 300*time.Millisecond); err == nil {
		t.Fatal("Close reported success with undelivered records")
	}
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Send: %v, want ErrClosed", err)
	}
	s.pending.Add(-1)
	s.wait(time.Second)
	if got := s.failed(); got != 15 {
		t.Errorf("%d records failed, want 15", got)
	}
	if err := o.Send(context.Background(), s.batch(20, 1, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	s.pending.Add(-1)
	if err := closeOutput(t, o, time.Second); err == nil {
		t.Errorf("second Close forgot the failure")
	}
	if got := counter(t, o.m.failed); got != 15 {
		t.Errorf("failed = %v, want 15", got)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunContextEnds(t *testing.T) {
	// Run's context ending fails what is held, without Close.
	f := newFakeES(t, func(req int, items []bulkItem) (int, []int) { return 503, nil })
	s := newSink(t, "ctx")
	cfg := fastConfig(f.srv.URL)
	cfg.Name = "ctx"
	cfg.DataDir = t.TempDir()
	cfg.Logger = testLogger(t)
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := make(chan error, 1)
	go func() { run <- o.Run(ctx) }()
	send(t, o, s.batch(0, 3, nil))
	send(t, o, s.batch(3, 3, nil))
	waitFor(t, func() bool { return len(f.bulkRequests()) > 0 })
	cancel()
	if err := <-run; err != nil {
		t.Fatalf("Run: %v", err)
	}
	s.wait(time.Second)
	if got := s.failed(); got != 6 {
		t.Errorf("%d failed, want 6", got)
	}
	if err := o.Close(context.Background()); err == nil {
		t.Errorf("Close after Run ended: no error for the failed records")
	}
}

func TestCloseWithoutRun(t *testing.T) {
	s := newSink(t, "norun")
	cfg := fastConfig(closedPort(t))
	cfg.Name = "norun"
	cfg.DataDir = t.TempDir()
	cfg.Logger = testLogger(t)
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	send(t, o, s.batch(0, 2, nil))
	if err := closeOutput(t, o, 50*time.Millisecond); err == nil {
		t.Errorf("Close without Run: want an error for the queued records")
	}
	s.wait(time.Second)
	if s.failed() != 2 {
		t.Errorf("queued records not failed")
	}
	if err := o.Run(context.Background()); err != nil {
		t.Errorf("Run after Close: %v", err)
	}
}
