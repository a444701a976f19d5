package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// metricValue reads a counter or gauge.
func metricValue(c metrics.Valuer) float64 { return c.Value() }

var baseTime = time.Date(2024, 1, 2, 10, 30, 0, 0, time.UTC)

// acks counts how the Acks of test chunks ended.
type acks struct {
	mu        sync.Mutex
	done      map[*event.Ack]int
	failed    int
	delivered int
	onDone    func(*event.Ack)
}

func newAcks() *acks { return &acks{done: map[*event.Ack]int{}} }

func (a *acks) notify(ack *event.Ack) {
	a.mu.Lock()
	a.done[ack]++
	if ack.Failed() {
		a.failed++
	} else {
		a.delivered++
	}
	f := a.onDone
	a.mu.Unlock()
	if f != nil {
		f(ack)
	}
}

func (a *acks) counts() (delivered, failed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ack, n := range a.done {
		if n != 1 {
			panic(fmt.Sprintf("ack %p notified %d times", ack, n))
		}
	}
	return a.delivered, a.failed
}

// batch makes a batch with one chunk (one Ack) per record, so each record's fate is visible.
func (a *acks) batch(recs ...event.Record) *event.Batch {
	b := &event.Batch{}
	for i := range recs {
		r := &recs[i]
		r.Ack = event.NewAck(r.Offset+1, a.notify)
		b.Add(r)
		r.Ack.Release(1, event.Delivered) // the reader's seal
	}
	return b
}

func record(tag string, off int64, t time.Time) event.Record {
	return event.Record{
		Time: t, Stream: "stdout", Tag: tag, Offset: off,
		Message: fmt.Appendf(nil, "line %d of %s", off, tag),
		Source:  &event.Source{Path: "/var/log/containers/" + tag + ".log", Namespace: "ns"},
	}
}

func newOutput(t testing.TB, cfg Config) *Output {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = t.Name()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.retryMin, o.retryMax = 5*time.Millisecond, 40*time.Millisecond
	return o
}

func start(t testing.TB, o *Output) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- o.Run(ctx) }()
	return func() error {
		defer cancel()
		return <-errc
	}
}

func closeOutput(t testing.TB, o *Output) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond; it fails the test only after a generous deadline, so it asserts that
// something happens, not how fast.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// readDocs returns the documents in a gzip file, failing on torn data or invalid JSON.
func readDocs(t testing.TB, path string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	complete, err := gzipfile.ReadAll(path, func(line []byte) error {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("line %q: %w", line, err)
		}
		docs = append(docs, m)
		return nil
	})
	if err != nil || !complete {
		t.Fatalf("read %s: complete=%v err=%v", path, complete, err)
	}
	return docs
}

func TestRecordsGoToTheirFiles(t *testing.T) {
	dir := t.TempDir()
	o := newOutput(t, Config{Path: dir + "/{tag_parts[0]}/{tag}.gz", FlushInterval: time.Hour})
	deliveredBefore := metricValue(metrics.OutputRecords.WithLabelValues(o.cfg.Name, "delivered"))
	okBefore := metricValue(metrics.OutputRequests.WithLabelValues(o.cfg.Name, "ok"))
	stop := start(t, o)
	a := newAcks()
	tags := []string{"kube.a.p.c", "kube.b.p.c", "audit"}
	want := map[string]int{}
	for i := range 30 {
		var recs []event.Record
		for j := range 5 {
			tag := tags[(i+j)%len(tags)] // batches span paths
			recs = append(recs, record(tag, int64(i*5+j), baseTime))
			want[tag]++
		}
		if err := o.Send(context.Background(), a.batch(recs...)); err != nil {
			t.Fatal(err)
		}
	}
	if d, f := a.counts(); d != 0 || f != 0 {
		t.Fatalf("acknowledged before any write: delivered %d failed %d", d, f)
	}
	closeOutput(t, o)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d, f := a.counts(); d != 150 || f != 0 {
		t.Fatalf("delivered %d failed %d, want 150 0", d, f)
	}
	for tag, n := range want {
		path := filepath.Join(dir, strings.Split(tag, ".")[0], tag+".gz")
		docs := readDocs(t, path)
		if len(docs) != n {
			t.Errorf("%s: %d documents, want %d", path, len(docs), n)
		}
		for _, d := range docs {
			if d["tag"] != tag || !strings.HasSuffix(d["message"].(string), " of "+tag) {
				t.Errorf("%s: foreign document %v", path, d)
			}
		}
	}
	if got := metricValue(metrics.OutputRecords.WithLabelValues(o.cfg.Name, "delivered")) - deliveredBefore; got != 150 {
		t.Errorf("delivered metric %v, want 150", got)
	}
	if got := metricValue(metrics.OutputQueued.WithLabelValues(o.cfg.Name)); got != 0 {
		t.Errorf("queued metric %v, want 0", got)
	}
	if got := metricValue(metrics.OutputRequests.WithLabelValues(o.cfg.Name, "ok")) - okBefore; got != 3 {
		t.Errorf("ok requests %v, want 3 (one member per path at close)", got)
	}
}

// TestAckAfterWrite checks, from inside the ack callback, that the record is already readable
// from its file, for flushes by size and by interval.
func TestAckAfterWrite(t *testing.T) {
	for _, cfg := range []Config{
		{FlushBytes: 1, FlushInterval: time.Hour},
		{FlushBytes: 1 << 30, FlushInterval: 20 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("bytes=%d,interval=%v", cfg.FlushBytes, cfg.FlushInterval), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.gz")
			cfg.Path = path
			o := newOutput(t, cfg)
			stop := start(t, o)
			a := newAcks()
			var bad atomic.Value
			a.onDone = func(ack *event.Ack) {
				var found bool
				_, err := gzipfile.ReadAll(path, func(line []byte) error {
					found = found || strings.Contains(string(line), fmt.Sprintf(`"offset":%d}`, ack.End-1))
					return nil
				})
				if err != nil || !found {
					bad.Store(fmt.Sprintf("ack for offset %d before its record was in the file (err %v)", ack.End-1, err))
				}
			}
			for i := range 20 {
				if err := o.Send(context.Background(), a.batch(record("t", int64(i), baseTime))); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "all acks", func() bool { d, _ := a.counts(); return d == 20 })
			if msg := bad.Load(); msg != nil {
				t.Fatal(msg)
			}
			closeOutput(t, o)
			stop()
			if d, f := a.counts(); d != 20 || f != 0 {
				t.Fatalf("delivered %d failed %d", d, f)
			}
		})
	}
}

func TestHourlyRollover(t *testing.T) {
	dir := t.TempDir()
	o := newOutput(t, Config{Path: dir + "/{tag}/%Y%m%d-%H.gz", FlushInterval: 10 * time.Millisecond})
	o.idleAfter = 50 * time.Millisecond
	stop := start(t, o)
	defer stop()
	a := newAcks()
	hour := time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)
	b := a.batch(
		record("t", 1, hour.Add(59*time.Minute+59*time.Second+999*time.Millisecond)),
		record("t", 2, hour.Add(time.Hour)),
		record("t", 3, hour.Add(time.Hour).In(time.FixedZone("CET", 3600))), // same instant
		record("t", 4, hour.Add(30*time.Minute)),
	)
	if err := o.Send(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "acks", func() bool { d, _ := a.counts(); return d == 4 })
	for name, n := range map[string]int{"20240102-10.gz": 2, "20240102-11.gz": 2} {
		if docs := readDocs(t, filepath.Join(dir, "t", name)); len(docs) != n {
			t.Errorf("%s: %d documents, want %d", name, len(docs), n)
		}
	}
	// Both files were open; once idle, they are closed.
	waitFor(t, "idle files closed", func() bool { return len(openFiles(t, dir)) == 0 })
	// A late record for a closed hour reopens and appends.
	if err := o.Send(context.Background(), a.batch(record("t", 5, hour))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "late ack", func() bool { d, _ := a.counts(); return d == 5 })
	if docs := readDocs(t, filepath.Join(dir, "t", "20240102-10.gz")); len(docs) != 3 {
		t.Errorf("after reopening: %d documents, want 3", len(docs))
	}
	closeOutput(t, o)
}

// openFiles lists this process's open files under dir.
func openFiles(t testing.TB, dir string) []string {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(p, dir) {
			open = append(open, p)
		}
	}
	return open
}

// TestWriteErrorRetries blocks one path with a file where its directory should be: that path's
// records stay unacknowledged (also those of a batch whose other records were written) and are
// retried until the obstacle is removed.
func TestWriteErrorRetries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocked"), []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	o := newOutput(t, Config{Path: dir + "/{tag}/out.gz", FlushInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	stop := start(t, o)
	defer stop()
	a := newAcks()
	if err := o.Send(context.Background(), a.batch(record("ok", 1, baseTime), record("blocked", 2, baseTime))); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), a.batch(record("ok", 3, baseTime))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the healthy path's ack", func() bool { d, _ := a.counts(); return d == 1 })
	errs := metrics.OutputRequests.WithLabelValues(o.cfg.Name, "error")
	errsBefore := metricValue(errs)
	writeErrs := metrics.DataDirWriteErrors.WithLabelValues("file_output")
	writeErrsBefore := metricValue(writeErrs)
	waitFor(t, "several retries", func() bool { return metricValue(errs)-errsBefore >= 3 })
	if n := metricValue(writeErrs) - writeErrsBefore; n < 3 {
		t.Errorf("skiff_data_dir_write_errors_total{component=file_output} grew by %v over 3 failed writes", n)
	}
	if d, f := a.counts(); d != 1 || f != 0 {
		t.Fatalf("while blocked: delivered %d failed %d, want 1 0", d, f)
	}
	if docs := readDocs(t, filepath.Join(dir, "ok", "out.gz")); len(docs) != 2 {
		t.Fatalf("healthy path has %d documents, want 2", len(docs))
	}
	for _, want := range []string{"level=ERROR", "file write failed", "path=" + dir + "/blocked/out.gz", "not a directory", "errno=ENOTDIR"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// The failures are one episode: logged once, not once per retry.
	if n := strings.Count(logs.String(), "file write failed"); n != 1 {
		t.Errorf("the failing path was logged %d times, want once per episode:\n%s", n, logs.String())
	}
	if err := os.Remove(filepath.Join(dir, "blocked")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "acks after repair", func() bool { d, _ := a.counts(); return d == 3 })
	if !strings.Contains(logs.String(), "writing works again") {
		t.Errorf("log does not say the writes recovered:\n%s", logs.String())
	}
	if docs := readDocs(t, filepath.Join(dir, "blocked", "out.gz")); len(docs) != 1 {
		t.Fatalf("repaired path has %d documents, want 1", len(docs))
	}
	closeOutput(t, o)
	if d, f := a.counts(); d != 3 || f != 0 {
		t.Fatalf("delivered %d failed %d, want 3 0", d, f)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCloseDeadline: what cannot be written by Close's deadline is failed, not acknowledged.
func TestCloseDeadline(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := newOutput(t, Config{Path: dir + "/{tag}/out.gz", FlushInterval: time.Hour})
	stop := start(t, o)
	a := newAcks()
	for i := range 3 {
		if err := o.Send(context.Background(), a.batch(record("blocked", int64(i), baseTime), record("ok", int64(10+i), baseTime))); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Send(context.Background(), a.batch(record("ok", 20, baseTime))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := o.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "6 records failed") {
		t.Fatalf("Close = %v, want 6 records failed", err)
	}
	if err2 := o.Close(context.Background()); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second Close = %v, want %v", err2, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
	// Each batch with a blocked record fails as a whole: 3 batches × 2 chunks; the last one is
	// delivered.
	if d, f := a.counts(); d != 1 || f != 6 {
		t.Fatalf("delivered %d failed %d, want 1 6", d, f)
	}
	if err := o.Send(context.Background(), a.batch(record("ok", 30, baseTime))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestRunContextEnds(t *testing.T) {
	o := newOutput(t, Config{Path: filepath.Join(t.TempDir(), "x.gz"), FlushInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- o.Run(ctx) }()
	a := newAcks()
	if err := o.Send(context.Background(), a.batch(record("t", 1, baseTime), record("t", 2, baseTime))); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if d, f := a.counts(); d != 0 || f != 2 {
		t.Fatalf("delivered %d failed %d, want 0 2", d, f)
	}
	if err := o.Send(context.Background(), a.batch(record("t", 3, baseTime))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Run ended = %v", err)
	}
	if err := o.Close(context.Background()); err == nil {
		t.Fatal("Close after a failed shutdown reported no error")
	}
}

func TestCloseBeforeRun(t *testing.T) {
	o := newOutput(t, Config{Path: filepath.Join(t.TempDir(), "x.gz")})
	a := newAcks()
	if err := o.Send(context.Background(), a.batch(record("t", 1, baseTime))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := o.Close(ctx); err == nil {
		t.Fatal("Close without Run reported no failed records")
	}
	if err := o.Run(context.Background()); err != nil {
		t.Fatalf("Run after Close = %v", err)
	}
	if d, f := a.counts(); d != 0 || f != 1 {
		t.Fatalf("delivered %d failed %d, want 0 1", d, f)
	}
}

// TestBackpressure: Send blocks once QueueRecords are held, until they are written.
func TestBackpressure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := newOutput(t, Config{Path: dir + "/{tag}/x.gz", FlushInterval: time.Hour, QueueRecords: 4})
	stop := start(t, o)
	defer stop()
	a := newAcks()
	for i := range 2 {
		if err := o.Send(context.Background(), a.batch(record("blocked", int64(2*i), baseTime), record("blocked", int64(2*i+1), baseTime))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := o.Send(ctx, a.batch(record("blocked", 9, baseTime))); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send into a full queue = %v, want DeadlineExceeded", err)
	}
	// The refused batch is the caller's: finish it as a router would.
	if err := os.Remove(filepath.Join(dir, "blocked")); err != nil {
		t.Fatal(err)
	}
	// A waiting Send makes the output write at once (no waiting for the hour-long interval).
	if err := o.Send(context.Background(), a.batch(record("blocked", 10, baseTime))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first 4 acks", func() bool { d, _ := a.counts(); return d >= 4 })
	closeOutput(t, o)
	if docs := readDocs(t, filepath.Join(dir, "blocked", "x.gz")); len(docs) != 5 {
		t.Fatalf("%d documents, want 5", len(docs))
	}
}

// TestOversizedBatch: a batch larger than the queue is taken when the queue is empty.
func TestOversizedBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.gz")
	o := newOutput(t, Config{Path: path, QueueRecords: 2, FlushInterval: time.Hour})
	stop := start(t, o)
	defer stop()
	a := newAcks()
	var recs []event.Record
	for i := range 10 {
		recs = append(recs, record("t", int64(i), baseTime))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Send(ctx, a.batch(recs...)); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, a.batch(record("t", 10, baseTime))); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, &event.Batch{}); err != nil {
		t.Fatal(err)
	}
	closeOutput(t, o)
	if d, _ := a.counts(); d != 11 || len(readDocs(t, path)) != 11 {
		t.Fatalf("delivered %d", d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, `file output "file": path: must be set`},
		{Config{Name: "x", Path: "/a/{tag"}, `file output "x": path: template "/a/{tag": unclosed "{" at 3`},
		{Config{Path: "/a/../{tag}"}, `path: template "/a/../{tag}": paths must not contain a ".." segment`},
		{Config{Path: "/a", FlushBytes: -1}, "flush_bytes: must not be negative"},
		{Config{Path: "/a", FlushInterval: -1}, "flush_interval: must not be negative"},
		{Config{Path: "/a", QueueRecords: -1}, "queue_records: must not be negative"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	o, err := New(Config{Path: "/a/{tag}.gz"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.FlushInterval != DefaultFlushInterval || o.cfg.FlushBytes != DefaultFlushBytes ||
		o.cfg.QueueRecords != DefaultQueueRecords || o.idleAfter != 2*time.Second+time.Minute {
		t.Errorf("defaults not applied: %+v idle %v", o.cfg, o.idleAfter)
	}
}

// TestConcurrentSenders sends from several goroutines into a small queue; every record is
// written exactly once and acknowledged exactly once.
func TestConcurrentSenders(t *testing.T) {
	dir := t.TempDir()
	o := newOutput(t, Config{Path: dir + "/{tag}.gz", QueueRecords: 64, FlushBytes: 4096, FlushInterval: 5 * time.Millisecond})
	stop := start(t, o)
	defer stop()
	a := newAcks()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				off := int64(g*1000 + i)
				if err := o.Send(context.Background(), a.batch(record(fmt.Sprintf("g%d", g%2), off, baseTime))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeOutput(t, o)
	if d, f := a.counts(); d != 400 || f != 0 {
		t.Fatalf("delivered %d failed %d", d, f)
	}
	var offsets []int
	for _, name := range []string{"g0.gz", "g1.gz"} {
		for _, d := range readDocs(t, filepath.Join(dir, name)) {
			offsets = append(offsets, int(d["log"].(map[string]any)["offset"].(float64)))
		}
	}
	sort.Ints(offsets)
	if len(offsets) != 400 {
		t.Fatalf("%d documents, want 400", len(offsets))
	}
	for i := 1; i < len(offsets); i++ {
		if offsets[i] == offsets[i-1] {
			t.Fatalf("offset %d written twice", offsets[i])
		}
	}
}

// BenchmarkFileOutput measures records per second through Send → document → gzip member →
// fsync, with 1 MiB flushes, batches of 512 records of one tag.
func BenchmarkFileOutput(b *testing.B) {
	dir := b.TempDir()
	o := newOutput(b, Config{Name: "bench", Path: dir + "/{tag}.gz", FlushBytes: 1 << 20, FlushInterval: time.Second})
	stop := start(b, o)
	src := &event.Source{Path: "/var/log/containers/web-7d4_shop_nginx-abc123.log", Namespace: "shop", PodName: "web-7d4", Container: "nginx", ContainerID: "abc123"}
	msg := []byte(`10.244.1.17 - - [02/Jan/2024:03:04:05 +0000] "GET /api/v1/products/12345/reviews?page=2&sort=newest HTTP/1.1" 200 5123 "https://shop.example.com/products/12345" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36" rt=0.042`)
	const per = 512
	var acked atomic.Int64
	recs := make([]event.Record, 8*per) // reused: a chunk's records are reused once it is acked
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	sent := 0
	for i := 0; i < b.N; i += per {
		base := (i / per % 8) * per
		for base+per > len(recs) {
			base -= per
		}
		// Wait until the records being reused are finished.
		for int64(sent)-acked.Load() > int64(len(recs)-per) {
			time.Sleep(50 * time.Microsecond)
		}
		bt := &event.Batch{Records: make([]*event.Record, 0, per)}
		ack := event.NewAck(0, func(*event.Ack) { acked.Add(per) })
		for j := range per {
			r := &recs[base+j]
			*r = event.Record{Time: baseTime, Stream: "stdout", Tag: "kube.shop.web.nginx", Source: src, Offset: int64(i + j), Message: msg, Ack: ack}
			bt.Add(r)
		}
		ack.Release(1, event.Delivered)
		if err := o.Send(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
		sent += per
	}
	closeOutput(b, o)
	b.StopTimer()
	stop()
	if acked.Load() != int64(sent) {
		b.Fatalf("acked %d of %d", acked.Load(), sent)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(sent)/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
