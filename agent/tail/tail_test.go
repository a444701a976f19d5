package tail

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
)

func TestNewValidates(t *testing.T) {
	store := newStore(t, t.TempDir())
	ok := Config{Input: "in", Paths: []string{"/x/*.log"}, NewParser: newTestParser, Positions: store}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no input", func(c *Config) { c.Input = "" }, "input name"},
		{"no paths", func(c *Config) { c.Paths = nil }, "paths"},
		{"bad glob", func(c *Config) { c.Paths = []string{"/x/[.log"} }, "paths[0]"},
		{"bad exclude", func(c *Config) { c.Exclude = []string{"["} }, "exclude[0]"},
		{"no parser", func(c *Config) { c.NewParser = nil }, "parser"},
		{"no store", func(c *Config) { c.Positions = nil }, "positions"},
		{"negative max", func(c *Config) { c.MaxLineBytes = -1 }, "max_line_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
	tl, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if tl.cfg.MaxLineBytes != DefaultMaxLineBytes || tl.cfg.ReadBufferBytes != DefaultReadBufferBytes ||
		tl.cfg.ChunkRecords != DefaultChunkRecords || tl.cfg.ScanInterval != DefaultScanInterval {
		t.Errorf("defaults not applied: %+v", tl.cfg)
	}
	if err := tl.Run(canceled(), (&sink{}).handle); err != nil {
		t.Fatal(err)
	}
	if err := tl.Run(canceled(), (&sink{}).handle); err == nil {
		t.Error("second Run succeeded")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestDiscoveryWithExclude(t *testing.T) {
	dir := t.TempDir()
	store := newStore(t, t.TempDir())
	writeFile(t, filepath.Join(dir, "a.log"), "a1\na2\n")
	writeFile(t, filepath.Join(dir, "b.log"), "b1\n")
	writeFile(t, filepath.Join(dir, "skip-me.log"), "x\n")
	writeFile(t, filepath.Join(dir, "c.txt"), "x\n")
	if err := os.Mkdir(filepath.Join(dir, "dir.log"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, store)
	cfg.Exclude = []string{"skip-*"}
	cfg.ScanInterval = time.Hour // new files must be found through their fsnotify event
	cfg.Describe = func(path string) event.Source {
		return event.Source{Tag: "tag." + strings.TrimSuffix(filepath.Base(path), ".log")}
	}
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 3)
	writeFile(t, filepath.Join(dir, "d.log"), "d1\n")
	writeFile(t, filepath.Join(dir, "skip-too.log"), "x\n")
	recs := waitRecords(t, s, 4)
	time.Sleep(100 * time.Millisecond)
	recs = s.records()
	byMsg := map[string]got{}
	for _, r := range recs {
		byMsg[r.Msg] = r
	}
	if len(recs) != 4 || len(byMsg) != 4 {
		t.Fatalf("records %v, want a1 a2 b1 d1 once each", s.messages())
	}
	for msg, want := range map[string]struct {
		file string
		off  int64
	}{"a1": {"a.log", 0}, "a2": {"a.log", 3}, "b1": {"b.log", 0}, "d1": {"d.log", 0}} {
		r, ok := byMsg[msg]
		if !ok {
			t.Errorf("missing %q", msg)
			continue
		}
		if r.Path != filepath.Join(dir, want.file) || r.Off != want.off {
			t.Errorf("%q: path %s offset %d, want %s %d", msg, r.Path, r.Off, want.file, want.off)
		}
		if wantTag := "tag." + strings.TrimSuffix(want.file, ".log"); r.Tag != wantTag {
			t.Errorf("%q: tag %q, want %q", msg, r.Tag, wantTag)
		}
	}
	if byMsg["a1"].ID[:16] != byMsg["a2"].ID[:16] || byMsg["a1"].ID[:16] == byMsg["b1"].ID[:16] {
		t.Errorf("id prefixes: a1 %s a2 %s b1 %s: want one per file", byMsg["a1"].ID, byMsg["a2"].ID, byMsg["b1"].ID)
	}
}

func TestPartialLineWaitsForNewline(t *testing.T) {
	p, store, cfg := fixture(t, "x.log", "one\ntw")
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	waitFor(t, "position after the first line", func() bool { return offsetOf(store, fileKey(t, p)) == 4 })
	time.Sleep(100 * time.Millisecond) // several scans
	if got := s.messages(); len(got) != 1 {
		t.Fatalf("records %q: the partial line was emitted", got)
	}
	appendFile(t, p, "o\r\nthree\n")
	recs := waitRecords(t, s, 3)
	if recs[1].Msg != "two\r" || recs[1].Off != 4 || recs[2].Msg != "three" || recs[2].Off != 9 {
		t.Errorf("records %+v", recs)
	}
	waitFor(t, "position at the end", func() bool { return offsetOf(store, fileKey(t, p)) == 15 })
}

func TestFragmentsHoldThePosition(t *testing.T) {
	p, store, cfg := fixture(t, "x.log", "a\nP:b\nP:c\n")
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	time.Sleep(100 * time.Millisecond)
	if got := offsetOf(store, fileKey(t, p)); got != 2 {
		t.Fatalf("position %d while a record is pending from offset 2", got)
	}
	appendFile(t, p, "F:d\n")
	recs := waitRecords(t, s, 2)
	if recs[1].Msg != "bcd" || recs[1].Off != 2 {
		t.Errorf("joined record %+v", recs[1])
	}
	waitFor(t, "position at the end", func() bool { return offsetOf(store, fileKey(t, p)) == 14 })
}

// TestFragmentsFlushedWhenFileEnds: fragments still held when a file is rotated away or deleted
// reach the output as a truncated record once the file is drained, and the position reaches
// the file's end.
func TestFragmentsFlushedWhenFileEnds(t *testing.T) {
	tests := []struct {
		name    string
		content string
		end     func(t *testing.T, path string)
		want    []got // Msg, Off and Flags compared
	}{
		{
			name:    "rotated away",
			content: "a\nP:b\nP:c\n",
			end:     func(t *testing.T, p string) { must(t, os.Rename(p, p+".1")) },
			want:    []got{{Msg: "a"}, {Msg: "bc", Off: 2, Flags: event.FlagTruncated}},
		},
		{
			name:    "rotated away with the fragment's last line unterminated",
			content: "a\nP:b\nP:c",
			end:     func(t *testing.T, p string) { must(t, os.Rename(p, p+".1")) },
			want:    []got{{Msg: "a"}, {Msg: "bc", Off: 2, Flags: event.FlagTruncated}},
		},
		{
			name:    "deleted",
			content: "P:a\nb\nP:c\n",
			end:     func(t *testing.T, p string) { must(t, os.Remove(p)) },
			want:    []got{{Msg: "b", Off: 4}, {Msg: "ac", Flags: event.FlagTruncated}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, store, cfg := fixture(t, "x.log", tt.content)
			k := fileKey(t, p)
			s := &sink{}
			start(t, cfg, s)
			waitRecords(t, s, 1)
			time.Sleep(2 * cfg.ScanInterval) // the held fragment is not emitted while the file is in place
			if n := len(s.records()); n != 1 {
				t.Fatalf("%d records before the file ended", n)
			}
			tt.end(t, p)
			recs := waitRecords(t, s, len(tt.want))
			for i, w := range tt.want {
				if r := recs[i]; r.Msg != w.Msg || r.Off != w.Off || r.Flags != w.Flags {
					t.Errorf("record %d: %q at %d flags %b; want %q at %d flags %b", i, r.Msg, r.Off, r.Flags, w.Msg, w.Off, w.Flags)
				}
			}
			waitFor(t, "position at the file's end", func() bool { return offsetOf(store, k) == int64(len(tt.content)) })
			waitFor(t, "file closed", func() bool {
				return metrics.Value(metrics.FilesOpen.WithLabelValues(cfg.Input)) == 0
			})
			if n := len(s.records()); n != len(tt.want) {
				t.Errorf("%d records, want %d", n, len(tt.want))
			}
		})
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("x", 1000)
	euro := strings.Repeat("y", 99) + "€" // the rune straddles the limit
	content := "short\n" + long + "\n" + strings.Repeat("z", 100) + "\n" + strings.Repeat("w", 101) + "\n" + euro + "\nend\n"
	p, store, cfg := fixture(t, "x.log", content)
	cfg.MaxLineBytes = 100
	cfg.ReadBufferBytes = 64 // lines span many reads
	before := metrics.Value(metrics.TruncatedLines.WithLabelValues(cfg.Input))
	beforeB := metrics.Value(metrics.TruncatedBytes.WithLabelValues(cfg.Input))
	s := &sink{}
	start(t, cfg, s)
	recs := waitRecords(t, s, 6)
	want := []struct {
		msg   string
		trunc bool
	}{
		{"short", false},
		{long[:100], true},
		{strings.Repeat("z", 100), false},
		{strings.Repeat("w", 100), true},
		{strings.Repeat("y", 99), true},
		{"end", false},
	}
	var off int64
	for i, w := range want {
		r := recs[i]
		if r.Msg != w.msg || (r.Flags&event.FlagTruncated != 0) != w.trunc || r.Flags&event.FlagInvalidUTF8 != 0 || r.Off != off {
			t.Errorf("record %d: %q (len %d) flags %b offset %d; want len %d truncated=%v offset %d",
				i, abbrev(r.Msg), len(r.Msg), r.Flags, r.Off, len(w.msg), w.trunc, off)
		}
		off += int64(len(strings.SplitAfter(content[off:], "\n")[0]))
	}
	if got := metrics.Value(metrics.TruncatedLines.WithLabelValues(cfg.Input)) - before; got != 3 {
		t.Errorf("truncated lines %v, want 3", got)
	}
	if got := metrics.Value(metrics.TruncatedBytes.WithLabelValues(cfg.Input)) - beforeB; got != 900+1+2 {
		t.Errorf("truncated bytes %v, want 903", got)
	}

	// A long line whose newline comes many reads later.
	appendFile(t, p, strings.Repeat("v", 150))
	time.Sleep(60 * time.Millisecond)
	appendFile(t, p, strings.Repeat("v", 500))
	time.Sleep(60 * time.Millisecond)
	if n := len(s.records()); n != 6 {
		t.Fatalf("%d records before the long line's newline", n)
	}
	appendFile(t, p, "\nafter\n") // the newline alone, after the reader already cut the line
	recs = waitRecords(t, s, 8)
	if recs[6].Msg != strings.Repeat("v", 100) || recs[6].Flags&event.FlagTruncated == 0 || recs[6].Off != int64(len(content)) {
		t.Errorf("long line record %q flags %b offset %d", abbrev(recs[6].Msg), recs[6].Flags, recs[6].Off)
	}
	if recs[7].Msg != "after" || recs[7].Off != int64(len(content)+651) {
		t.Errorf("record after the long line: %+v", recs[7])
	}
	waitFor(t, "position at the end", func() bool { return offsetOf(store, fileKey(t, p)) == int64(len(content)+657) })
}

func abbrev(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

func TestInvalidUTF8AndParseErrors(t *testing.T) {
	_, _, cfg := fixture(t, "x.log", "ok\n\xff\xfe mid \xc3\n!unparsable\n")
	inv := metrics.Value(metrics.InvalidUTF8.WithLabelValues(cfg.Input))
	pe := metrics.Value(metrics.ParseErrors.WithLabelValues(cfg.Input))
	s := &sink{}
	before := time.Now()
	start(t, cfg, s)
	recs := waitRecords(t, s, 3)
	if recs[1].Msg != "\uFFFD\uFFFD mid \uFFFD" || recs[1].Flags != event.FlagInvalidUTF8 {
		t.Errorf("invalid UTF-8 record %q flags %b", recs[1].Msg, recs[1].Flags)
	}
	if recs[0].Flags != 0 || !recs[0].Time.IsZero() {
		t.Errorf("valid record %+v", recs[0])
	}
	if recs[2].Flags != event.FlagParseError || recs[2].Time.Before(before) {
		t.Errorf("parse error record %+v: want the flag and the read time", recs[2])
	}
	if got := metrics.Value(metrics.InvalidUTF8.WithLabelValues(cfg.Input)) - inv; got != 1 {
		t.Errorf("invalid UTF-8 count %v", got)
	}
	if got := metrics.Value(metrics.ParseErrors.WithLabelValues(cfg.Input)) - pe; got != 1 {
		t.Errorf("parse error count %v", got)
	}
}

func TestBinaryGarbage(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	data := make([]byte, 200000)
	rng.Read(data)
	for i := 0; i < len(data); i += 500 {
		data[i] = 0 // plenty of NULs
	}
	data = append(data, '\n')
	_, _, cfg := fixture(t, "bin.log", string(data))
	cfg.MaxLineBytes = 4096
	cfg.ReadBufferBytes = 1000
	cfg.ChunkRecords = 7
	s := &sink{}
	start(t, cfg, s)
	want := strings.Count(string(data), "\n")
	recs := waitRecords(t, s, want)
	time.Sleep(50 * time.Millisecond)
	if n := len(s.records()); n != want {
		t.Fatalf("%d records, want %d", n, want)
	}
	var off int64
	for i, line := range strings.SplitAfter(string(data), "\n")[:want] {
		r := recs[i]
		if r.Off != off || !utf8.ValidString(r.Msg) {
			t.Fatalf("record %d: offset %d (want %d), valid UTF-8 %v", i, r.Off, off, utf8.ValidString(r.Msg))
		}
		if raw := strings.TrimSuffix(line, "\n"); utf8.ValidString(raw) && len(raw) <= 4096 && r.Msg != raw {
			t.Fatalf("record %d changed a valid line", i)
		}
		off += int64(len(line))
	}
}

// TestRenameRotation rotates the file the way the kubelet does while a writer keeps writing:
// every line arrives exactly once, in order.
func TestRenameRotation(t *testing.T) {
	p, store, cfg := fixture(t, "0.log", "")
	cfg.ReadBufferBytes = 4096
	cfg.ChunkRecords = 50
	s := &sink{}
	start(t, cfg, s)
	const total, per = 3000, 700
	var want []string
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		if i > 0 && i%per == 0 {
			// kubelet: rename, the runtime reopens (creating 0.log); a few late writes to the
			// old file would be lost by the runtime too, so the writer switches at once.
			if err := os.Rename(p, fmt.Sprintf("%s.2024010%d", p, i/per)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if f, err = os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		line := fmt.Sprintf("line %05d %s", i, strings.Repeat("x", i%97))
		want = append(want, line)
		if _, err := f.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	f.Close()
	waitRecords(t, s, total)
	time.Sleep(200 * time.Millisecond) // rotated files close; nothing more may come
	got := s.messages()
	if !slices.Equal(got, want) {
		t.Fatalf("got %d records, want %d in order; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	waitFor(t, "rotated files closed", func() bool {
		return metrics.Value(metrics.FilesOpen.WithLabelValues(cfg.Input)) == 1
	})
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the current file's position at its end", func() bool { return offsetOf(store, fileKey(t, p)) == fi.Size() })
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestCopytruncate(t *testing.T) {
	p, store, cfg := fixture(t, "app.log", "first line\nsecond line\n")
	lost := metrics.Value(metrics.LostBytes.WithLabelValues(cfg.Input))
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 2)
	k := fileKey(t, p)
	waitFor(t, "position at the end", func() bool { return offsetOf(store, k) == 23 })
	// logrotate copytruncate: copy away, truncate in place, the writer goes on (O_APPEND).
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, "first line\nthird\n")
	recs := waitRecords(t, s, 4)
	if recs[2].Msg != "first line" || recs[2].Off != 0 || recs[3].Msg != "third" || recs[3].Off != 11 {
		t.Fatalf("after truncation: %+v", recs[2:])
	}
	if recs[2].ID == recs[0].ID {
		t.Errorf("same document id %s for different lines at offset 0 of two generations", recs[0].ID)
	}
	waitFor(t, "new generation committed", func() bool {
		e, _ := store.Get(k)
		return e.Generation == 1 && e.Offset == 17
	})
	if got := metrics.Value(metrics.LostBytes.WithLabelValues(cfg.Input)) - lost; got != 0 {
		t.Errorf("lost bytes %v, want 0: everything was read before the truncation", got)
	}
}

// TestCopytruncateReadsTheCopy: lines written after skiff's last read and before copytruncate
// truncated the file are read from the copy, in the old generation (same ids), and nothing is
// counted lost.
func TestCopytruncateReadsTheCopy(t *testing.T) {
	p, _, cfg := fixture(t, "app.log", "aaaa\n")
	lost := metrics.Value(metrics.LostBytes.WithLabelValues(cfg.Input))
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	s.pause()
	appendFile(t, p, "bbbb\n") // the reader reads it and blocks in handle
	time.Sleep(100 * time.Millisecond)
	appendFile(t, p, "cccc\n") // not read before the truncation
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p+".1", string(data)) // the copy
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, "new\n")
	s.resume()
	recs := waitRecords(t, s, 4)
	if got := s.messages(); !slices.Equal(got, []string{"aaaa", "bbbb", "cccc", "new"}) {
		t.Fatalf("records %q", got)
	}
	if prefix := func(id string) string { return id[:strings.LastIndexByte(id, '-')] }; recs[2].Off != 10 || prefix(recs[2].ID) != prefix(recs[0].ID) {
		t.Errorf("the copy's line has offset %d and id %s, want offset 10 in the id space of %s", recs[2].Off, recs[2].ID, recs[0].ID)
	}
	if recs[3].Off != 0 || recs[3].ID == recs[0].ID {
		t.Errorf("after the truncation: offset %d id %s", recs[3].Off, recs[3].ID)
	}
	if got := metrics.Value(metrics.LostBytes.WithLabelValues(cfg.Input)) - lost; got != 0 {
		t.Errorf("lost bytes %v, want 0: the copy held what was not read", got)
	}
}

// TestTruncatedAndRegrown covers a copytruncate noticed only after the file grew past the read
// offset again: the changed first line gives it away.
func TestTruncatedAndRegrown(t *testing.T) {
	p, store, cfg := fixture(t, "app.log", "aaaa\n")
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	s.pause()
	appendFile(t, p, "bbbb\n") // the reader reads it and blocks in handle
	time.Sleep(100 * time.Millisecond)
	writeFile(t, p, "new first line\nnew second line\n") // O_TRUNC, then longer than before
	s.resume()
	recs := waitRecords(t, s, 4)
	if got := s.messages(); !slices.Equal(got, []string{"aaaa", "bbbb", "new first line", "new second line"}) {
		t.Fatalf("records %q", got)
	}
	if recs[2].Off != 0 {
		t.Errorf("new generation starts at %d", recs[2].Off)
	}
	waitFor(t, "generation 1 committed at its end", func() bool {
		e, _ := store.Get(fileKey(t, p))
		return e.Generation == 1 && e.Offset == 31
	})
}

func TestDeleteWhileOpen(t *testing.T) {
	p, store, cfg := fixture(t, "x.log", "a\n")
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	k := fileKey(t, p)
	s.pause()
	appendFile(t, p, "b\n")
	time.Sleep(50 * time.Millisecond) // the reader holds "b" and waits in handle
	appendFile(t, p, "c\nd\n")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	s.resume()
	waitRecords(t, s, 4)
	if got := s.messages(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("records %q", got)
	}
	waitFor(t, "deleted file closed", func() bool {
		return metrics.Value(metrics.FilesOpen.WithLabelValues(cfg.Input)) == 0
	})
	if _, ok := store.Get(k); !ok {
		t.Error("position of the deleted file dropped at once; it is kept for the retention")
	}
}

// TestRestartFromPositions: positions move only after delivery, in order; a failed chunk
// blocks progress; a restart resumes at the committed position.
func TestRestartFromPositions(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	p := filepath.Join(dir, "x.log")
	writeFile(t, p, lines("l", 0, 10)) // "l0\n" … "l9\n": 3 bytes each
	k := fileKey(t, p)
	store := newStore(t, data)
	cfg := testConfig(t, dir, store)
	cfg.ChunkRecords = 3 // chunks [l0 l1 l2] [l3 l4 l5] [l6 l7 l8] [l9]
	s := &sink{hold: true}
	stop := start(t, cfg, s)
	waitRecords(t, s, 10)
	waitFor(t, "4 chunks", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.batches) == 4 })
	check := func(want int64) {
		t.Helper()
		if got := offsetOf(store, k); got != want {
			t.Fatalf("position %d, want %d", got, want)
		}
	}
	check(0)
	s.batch(1).Done(event.Delivered)
	check(0) // chunk 0 not delivered yet
	s.batch(0).Done(event.Delivered)
	check(18)
	s.batch(2).Done(event.Failed)
	s.batch(3).Done(event.Delivered)
	check(18)
	stop()
	if err := store.Flush(); err != nil {
		t.Fatal(err)
	}

	store2 := newStore(t, data)
	cfg2 := testConfig(t, dir, store2)
	s2 := &sink{}
	start(t, cfg2, s2)
	recs := waitRecords(t, s2, 4)
	time.Sleep(50 * time.Millisecond)
	if got := s2.messages(); !slices.Equal(got, seq("l", 6, 10)) {
		t.Fatalf("after restart: %q, want l6..l9", got)
	}
	if recs[0].Off != 18 {
		t.Errorf("first record after restart at %d", recs[0].Off)
	}
	s.mu.Lock()
	firstRun := s.recs[6]
	s.mu.Unlock()
	if recs[0].ID != firstRun.ID {
		t.Errorf("re-read record got id %s, first time %s: ids must be stable", recs[0].ID, firstRun.ID)
	}
	waitFor(t, "position at the end", func() bool { return offsetOf(store2, k) == 30 })
}

func TestInodeReuseDetectedByFingerprint(t *testing.T) {
	p, store, cfg := fixture(t, "x.log", "new file\nline\n")
	k := fileKey(t, p)
	// The entry of a deleted file whose inode the new one got.
	store.Put(positions.Entry{Key: k, Fingerprint: 12345, Path: p, Offset: 9})
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 2)
	if got := s.messages(); !slices.Equal(got, []string{"new file", "line"}) {
		t.Fatalf("records %q: the new file must be read from 0", got)
	}
	e, _ := store.Get(k)
	if e.Fingerprint == 12345 {
		t.Error("entry not replaced")
	}
}

func TestShorterThanSavedPosition(t *testing.T) {
	p, store, cfg := fixture(t, "x.log", "head\n")
	k := fileKey(t, p)
	f, _ := os.Open(p)
	fp, _, _ := fingerprint(f)
	f.Close()
	store.Put(positions.Entry{Key: k, Fingerprint: fp, Generation: 4, Path: p, Offset: 100})
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	waitFor(t, "generation 5 at the end", func() bool {
		e, _ := store.Get(k)
		return e.Generation == 5 && e.Offset == 5
	})
}

func TestSymlinkedFiles(t *testing.T) {
	root := t.TempDir()
	store := newStore(t, t.TempDir())
	pods := filepath.Join(root, "pods", "ns_pod_uid", "app")
	containers := filepath.Join(root, "containers")
	mkdirs(t, pods, containers)
	real := filepath.Join(pods, "0.log")
	link := filepath.Join(containers, "pod_ns_app-123.log")
	writeFile(t, real, "one\n")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, containers, store)
	cfg.ScanInterval = time.Hour // only fsnotify can wake the reader
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, 1)
	appendFile(t, real, "two\n") // the event comes from the pods directory only
	recs := waitRecords(t, s, 2)
	if recs[1].Msg != "two" || recs[1].Path != link {
		t.Errorf("record %+v: want two from the symlink's path", recs[1])
	}
	e, _ := store.Get(fileKey(t, real))
	if e.Path != link {
		t.Errorf("positions path %q, want the symlink %q", e.Path, link)
	}
	// A new container: its symlink's creation is seen in the containers directory.
	real2 := filepath.Join(pods, "1.log")
	writeFile(t, real2, "restarted\n")
	if err := os.Symlink(real2, filepath.Join(containers, "pod_ns_app-456.log")); err != nil {
		t.Fatal(err)
	}
	waitRecords(t, s, 3)
}

func TestStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	store := newStore(t, t.TempDir())
	old := filepath.Join(dir, "old.log")
	writeFile(t, old, "a\nb\nc\nparti")
	cfg := testConfig(t, dir, store)
	cfg.StartAtEnd = true
	s := &sink{}
	start(t, cfg, s)
	waitFor(t, "an entry for the old file", func() bool { _, ok := store.Get(fileKey(t, old)); return ok })
	if got := offsetOf(store, fileKey(t, old)); got != 6 {
		t.Errorf("start offset %d, want 6 (after the last complete line)", got)
	}
	appendFile(t, old, "al\nd\n")
	writeFile(t, filepath.Join(dir, "new.log"), "n1\nn2\n")
	waitRecords(t, s, 4)
	time.Sleep(50 * time.Millisecond)
	got := s.messages()
	slices.Sort(got)
	if !slices.Equal(got, []string{"d", "n1", "n2", "partial"}) {
		t.Errorf("records %q: old file from its end, a new file from its start", got)
	}
}

// TestRestartAfterRotation: while skiff was stopped, the kubelet rotated the file twice. The
// unread rest of the known file and the whole rotated file after it are read, in order, before
// the current file.
func TestRestartAfterRotation(t *testing.T) {
	root, data := t.TempDir(), t.TempDir()
	pods := filepath.Join(root, "pods")
	containers := filepath.Join(root, "containers")
	mkdirs(t, pods, containers)
	real := filepath.Join(pods, "0.log")
	link := filepath.Join(containers, "c.log")
	writeFile(t, real, lines("a", 0, 3))
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	store := newStore(t, data)
	cfg := testConfig(t, containers, store)
	s := &sink{}
	stop := start(t, cfg, s)
	waitRecords(t, s, 3)
	waitFor(t, "position at the end", func() bool { return offsetOf(store, fileKey(t, real)) == 9 })
	stop()
	if err := store.Flush(); err != nil {
		t.Fatal(err)
	}

	appendFile(t, real, lines("a", 3, 5))
	must(t, os.Rename(real, real+".20240101-000000"))
	writeFile(t, real, lines("b", 0, 4))
	must(t, os.Rename(real, real+".20240101-000100"))
	writeFile(t, real+".20231231-000000.gz", "not read\n")
	writeFile(t, real+".20240101-000200.tmp", "not read\n")
	writeFile(t, real, lines("c", 0, 2))

	store2 := newStore(t, data)
	// The oldest file's chunks are slow to deliver: the later files must wait for them.
	s2 := &sink{slow: func(c *event.Chunk) bool { return strings.HasPrefix(string(c.Records[0].Message), "a") }}
	start(t, testConfig(t, containers, store2), s2)
	waitRecords(t, s2, 8)
	time.Sleep(100 * time.Millisecond)
	want := append(append(seq("a", 3, 5), seq("b", 0, 4)...), seq("c", 0, 2)...)
	if got := s2.messages(); !slices.Equal(got, want) {
		t.Fatalf("records %q, want %q", got, want)
	}
	for _, r := range s2.records() {
		if r.Path != link {
			t.Errorf("record %q has path %q, want %q", r.Msg, r.Path, link)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptPositionsStartsOver(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(data, positions.FileName), "{garbage")
	writeFile(t, filepath.Join(dir, "x.log"), "a\nb\n")
	store := newStore(t, data)
	if store.MovedAside() == "" {
		t.Fatal("corrupt positions file not moved aside")
	}
	s := &sink{}
	start(t, testConfig(t, dir, store), s)
	waitRecords(t, s, 2)
}

func TestHandleErrorStopsWithoutCommitting(t *testing.T) {
	p, store, cfg := fixture(t, "x.log", "a\nb\n")
	tl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- tl.Run(ctx, func(ctx context.Context, c *event.Chunk) error {
			close(called)
			<-ctx.Done() // an output that never takes the chunk
			return ctx.Err()
		})
	}()
	<-called
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if got := offsetOf(store, fileKey(t, p)); got != 0 {
		t.Errorf("position %d after a chunk that was never taken", got)
	}
}
