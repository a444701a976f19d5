package elasticsearch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/estest"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// downFake is a fake Elasticsearch answering 503 to everything while down is set, and
// accepting everything otherwise.
func downFake(t *testing.T, down *atomic.Bool) *fakeES {
	f := newFakeES(t, func(n int, items []bulkItem) (int, []int) {
		if down.Load() {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	f.other = func(*http.Request) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	return f
}

// spoolConfig spools after 30ms of failures.
func spoolConfig(url, dataDir, name string) Config {
	cfg := fastConfig(url)
	cfg.Name, cfg.DataDir = name, dataDir
	cfg.FallbackAfter = 30 * time.Millisecond
	return cfg
}

func fastReplay(o *Output) {
	o.base = 5 * time.Millisecond
	o.replayEvery = 20 * time.Millisecond
}

func spoolPathsOf(t *testing.T, dataDir, name string) []string {
	t.Helper()
	paths, err := spoolFiles(filepath.Join(dataDir, "spool", name))
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// spoolOutage sends n records in batches of 10, one at a time, to an output whose Elasticsearch
// answers 503, waiting until each batch is finished (spooled), and closes it. It returns the spool files; their
// items name the index <prefix>-2024.01.02, deleted from the real Elasticsearch now and after the
// test.
func spoolOutage(t *testing.T, dataDir, name, prefix string, n int) []string {
	t.Helper()
	var down atomic.Bool
	down.Store(true)
	f := downFake(t, &down)
	s := newSink(t, prefix)
	cfg := spoolConfig(f.srv.URL, dataDir, name)
	cfg.Index = prefix + "-%Y.%m.%d"
	esDelete(t, prefix+"-2024.01.02")
	t.Cleanup(func() { esDelete(t, prefix+"-2024.01.02") })
	o := start(t, cfg, fastReplay)
	for i := 0; i < n; i += 10 {
		send(t, o, s.batch(i, 10, nil))
		s.wait(10 * time.Second) // one spool member per batch
	}
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed, want all spooled", got)
	}
	if got := counter(t, o.m.spooled); got != float64(n) {
		t.Fatalf("spooled counter %v, want %d", got, n)
	}
	if err := closeOutput(t, o, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	paths := spoolPathsOf(t, dataDir, name)
	if len(paths) == 0 {
		t.Fatal("no spool file written")
	}
	return paths
}

// spoolItems counts the items of the complete members of a spool file.
func spoolItems(t *testing.T, path string) (items, lastMember int) {
	t.Helper()
	_, err := gzipfile.Scan(path, func(data []byte, _ int64) error {
		lastMember = strings.Count(string(data), "\n") / 2
		items += lastMember
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return items, lastMember
}

func TestSpoolThenReplayToFake(t *testing.T) {
	const n = 200
	var down atomic.Bool
	down.Store(true)
	f := downFake(t, &down)
	dataDir, name := t.TempDir(), uniq("spoolfake")
	s := newSink(t, "spool")
	o := start(t, spoolConfig(f.srv.URL, dataDir, name), fastReplay)
	for i := 0; i < n; i += 10 {
		send(t, o, s.batch(i, 10, nil))
	}
	s.wait(10 * time.Second)
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed, want all spooled", got)
	}
	paths := spoolPathsOf(t, dataDir, name)
	if len(paths) == 0 {
		t.Fatal("no spool file")
	}
	if got, _ := spoolItems(t, paths[0]); got == 0 {
		t.Fatal("spool file holds no item")
	}
	down.Store(false)
	// The spool's own count, not the directory: a file is unlinked before its bytes leave the
	// gauge, and the gauge is what this test reads last.
	waitFor(t, o.spool.empty)
	if left := spoolPathsOf(t, dataDir, name); len(left) != 0 {
		t.Fatalf("spool empty by count but files remain: %v", left)
	}
	seen := map[string]int{}
	for _, r := range f.bulkRequests() {
		for _, it := range r.items {
			seen[it.ID]++
		}
	}
	for i := range n {
		if seen[s.id(i)] == 0 {
			t.Fatalf("record %d (%s) never sent", i, s.id(i))
		}
	}
	if got := counter(t, o.spool.replayed); got != n {
		t.Fatalf("replayed counter %v, want %d", got, n)
	}
	if got := gaugeValue(t, o.spool.bytesG); got != 0 {
		t.Fatalf("spool bytes gauge %v after replay, want 0", got)
	}
}

func TestSpoolReplayToElasticsearch(t *testing.T) {
	const n = 300
	dataDir, name := t.TempDir(), uniq("spooles")
	paths := spoolOutage(t, dataDir, name, "skiff-spool", n)
	keep := filepath.Join(t.TempDir(), "copy.ndjson.gz")
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := esConfig(t, "skiff-spool")
	cfg.Name, cfg.DataDir = name, dataDir
	o := start(t, cfg, fastReplay)
	waitFor(t, func() bool { return len(spoolPathsOf(t, dataDir, name)) == 0 })
	index := "skiff-spool-2024.01.02"
	if got := esCount(t, index); got != n {
		t.Fatalf("%s has %d documents, want %d", index, got, n)
	}
	// Replaying the same file by hand (skiff replay) duplicates nothing: every item is a 409.
	if err := o.ReplayFiles(context.Background(), []string{keep}); err != nil {
		t.Fatal(err)
	}
	if got := esCount(t, index); got != n {
		t.Fatalf("after a second replay %s has %d documents, want %d", index, got, n)
	}
}

func TestSpoolTornFileMovedToCorrupt(t *testing.T) {
	const n = 300
	dataDir, name := t.TempDir(), uniq("spooltorn")
	paths := spoolOutage(t, dataDir, name, "skiff-torn", n)
	total := 0
	var lastPath string
	var last int
	for _, p := range paths {
		items, lm := spoolItems(t, p)
		total += items
		lastPath, last = p, lm
	}
	if total != n || last == 0 {
		t.Fatalf("spool holds %d items (last member %d), want %d", total, last, n)
	}
	fi, err := os.Stat(lastPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(lastPath, fi.Size()-5); err != nil {
		t.Fatal(err)
	}
	cfg := esConfig(t, "skiff-torn")
	cfg.Name, cfg.DataDir = name, dataDir
	start(t, cfg, fastReplay)
	waitFor(t, func() bool { return len(spoolPathsOf(t, dataDir, name)) == 0 })
	index := "skiff-torn-2024.01.02"
	if got := esCount(t, index); got != n-last {
		t.Fatalf("%s has %d documents, want the %d of the complete members", index, got, n-last)
	}
	moved := filepath.Join(dataDir, "spool", "corrupt", name+"-"+filepath.Base(lastPath))
	if _, err := os.Stat(moved); err != nil {
		t.Fatalf("torn file not moved to corrupt/: %v", err)
	}
}

func TestSpoolFullBlocks(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := downFake(t, &down)
	cfg := spoolConfig(f.srv.URL, t.TempDir(), uniq("spoolfull"))
	cfg.SpoolMaxBytes = 1 // the first member fills it
	cfg.QueueRecords = 10
	s := newSink(t, "full")
	o := start(t, cfg, fastReplay)
	send(t, o, s.batch(0, 10, nil))
	s.wait(10 * time.Second)         // the first batch is spooled
	send(t, o, s.batch(10, 10, nil)) // held by the worker, retrying
	waitFor(t, func() bool { return gaugeValue(t, o.spool.fullG) == 1 })
	send(t, o, s.batch(20, 10, nil)) // queued
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := o.Send(ctx, s.batch(30, 10, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with a full spool returned %v, want it to block until the deadline", err)
	}
	if got := counter(t, o.m.spooled); got != 10 {
		t.Fatalf("spooled %v records, want only the first 10", got)
	}
	// Elasticsearch answers again: the replay empties the spool and the held batches go through.
	down.Store(false)
	waitFor(t, func() bool { return gaugeValue(t, o.spool.fullG) == 0 && o.spool.empty() })
	if err := closeOutput(t, o, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func esDelete(t *testing.T, index string) {
	estest.Do(t, "DELETE", "/"+index, nil)
}

// An index write block refuses every item with 403 cluster_block_exception: retried, then
// spooled (not dead-lettered), and replayed once the block is lifted.
func TestSpoolOnWriteBlock(t *testing.T) {
	const n = 50
	cfg := esConfig(t, "skiff-block")
	index := "skiff-block-2024.01.02"
	if status, body := estest.Do(t, "PUT", "/"+index, []byte(`{"settings":{"index.blocks.write":true}}`)); status != 200 {
		t.Fatalf("create blocked index: %d %s", status, body)
	}
	t.Cleanup(func() { esDelete(t, index) })
	cfg.FallbackAfter = 30 * time.Millisecond
	cfg.MaxBackoff = 200 * time.Millisecond
	s := newSink(t, "block")
	o := start(t, cfg, fastReplay)
	send(t, o, s.batch(0, n, nil))
	s.wait(10 * time.Second)
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed, want all spooled", got)
	}
	if got := counter(t, o.m.spooled); got != n {
		t.Fatalf("spooled %v records, want %d", got, n)
	}
	if got := counter(t, o.m.rejected); got != 0 {
		t.Fatalf("%v records rejected to the dead-letter file, want none", got)
	}
	if status, body := estest.Do(t, "PUT", "/"+index+"/_settings", []byte(`{"index.blocks.write":false}`)); status != 200 {
		t.Fatalf("lift block: %d %s", status, body)
	}
	waitFor(t, func() bool { return o.spool.empty() })
	if got := esCount(t, index); got != n {
		t.Fatalf("%s has %d documents, want %d", index, got, n)
	}
}

// Connection errors (nothing listens) spool like 503s do, also when Elasticsearch has been
// unreachable since the start, so that the index template could never be installed and bulk
// requests never went out.
func TestSpoolOnConnectionRefused(t *testing.T) {
	for _, install := range []bool{false, true} {
		t.Run(fmt.Sprintf("install_templates=%v", install), func(t *testing.T) {
			cfg := spoolConfig(closedPort(t), t.TempDir(), uniq("spoolrefused"))
			cfg.InstallTemplates = boolp(install)
			s := newSink(t, "refused")
			o := start(t, cfg, fastReplay)
			send(t, o, s.batch(0, 20, nil))
			s.wait(10 * time.Second)
			if got := s.failed(); got != 0 {
				t.Fatalf("%d records failed, want all spooled", got)
			}
			paths := spoolPathsOf(t, cfg.DataDir, cfg.Name)
			if len(paths) != 1 {
				t.Fatalf("spool files %v, want one", paths)
			}
			if got, _ := spoolItems(t, paths[0]); got != 20 {
				t.Fatalf("spool file holds %d items, want 20", got)
			}
			if got := gaugeValue(t, o.spool.filesG); got != 1 {
				t.Fatalf("spool files gauge %v, want 1", got)
			}
		})
	}
}

// TestSpoolWriteError: while the spool directory cannot be created (a file stands where it
// should be), write reports false so the items stay unacknowledged, leaves no file, counts every
// failure and logs the episode once; once the obstacle is gone the same data is written.
func TestSpoolWriteError(t *testing.T) {
	dataDir := t.TempDir()
	blocker := filepath.Join(dataDir, "spool")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	s := newSpool(dataDir, "es-write-error", 1<<20, slog.New(slog.NewTextHandler(&logs, nil)))
	errs := metrics.DataDirWriteErrors.WithLabelValues("elasticsearch_spool")
	before := metrics.Value(errs)
	data := []byte("{\"create\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{\"message\":\"m\"}\n")
	for range 3 {
		if ok, err := s.write(data, 1); ok || err != nil {
			t.Fatalf("write with the spool directory blocked = %v, %v; want false, nil", ok, err)
		}
	}
	if got := metrics.Value(errs) - before; got != 3 {
		t.Errorf("skiff_data_dir_write_errors_total{component=elasticsearch_spool} grew by %v, want 3", got)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one episode of 3 failures, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "errno=ENOTDIR") {
		t.Errorf("the log does not name the errno:\n%s", logs.String())
	}
	if !s.empty() {
		t.Error("the spool counts a file although no write succeeded")
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.write(data, 1); !ok || err != nil {
		t.Fatalf("write after the repair = %v, %v; want true, nil", ok, err)
	}
	paths, err := s.seal()
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 {
		t.Fatalf("spool files %v, want one", paths)
	}
	var got []string
	complete, err := gzipfile.ReadAll(paths[0], func(line []byte) error {
		got = append(got, string(line))
		return nil
	})
	if err != nil || !complete || len(got) != 2 {
		t.Fatalf("spool file: lines %q complete %v err %v; want the 2 lines written once", got, complete, err)
	}
	if !strings.Contains(logs.String(), "writing works again") {
		t.Errorf("the log does not say the spool recovered:\n%s", logs.String())
	}
}

// TestDeadLetterWriteError: a dead-letter write that fails (the directory cannot be created)
// returns an error, so the caller retries the documents instead of acknowledging them, leaves
// no file, and is counted and logged once per episode; the next write after the repair lands.
func TestDeadLetterWriteError(t *testing.T) {
	dataDir := t.TempDir()
	blocker := deadLetterDir(dataDir)
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	d := newDeadLetter(dataDir, "es-dl-error", slog.New(slog.NewTextHandler(&logs, nil)))
	errs := metrics.DataDirWriteErrors.WithLabelValues("elasticsearch_deadletter")
	before := metrics.Value(errs)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	line := []byte(`{"error":"mapper_parsing_exception","document":{"message":"m"}}` + "\n")
	for range 2 {
		if _, err := d.write(now, line); err == nil {
			t.Fatal("dead-letter write with its directory blocked succeeded")
		}
	}
	if got := metrics.Value(errs) - before; got != 2 {
		t.Errorf("skiff_data_dir_write_errors_total{component=elasticsearch_deadletter} grew by %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one episode, want 1:\n%s", n, logs.String())
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	path, err := d.write(now, line)
	if err != nil {
		t.Fatalf("write after the repair: %v", err)
	}
	d.close(slog.Default())
	var got []string
	complete, err := gzipfile.ReadAll(path, func(l []byte) error {
		got = append(got, string(l))
		return nil
	})
	if err != nil || !complete || len(got) != 1 {
		t.Fatalf("dead-letter file: lines %q complete %v err %v; want the line once", got, complete, err)
	}
}
