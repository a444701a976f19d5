package tail

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
)

// kubelet imitates the kubelet's container log manager for the 0.log of one container.
type kubelet struct {
	t        *testing.T
	current  string // .../0.log
	maxFiles int    // containerLogMaxFiles, the current file included
}

// rotate renames the current file to <current>.<ts>, has the "runtime" reopen an empty current
// file, compresses every rotated file but the newest (through <name>.tmp) and removes the
// oldest rotated files beyond maxFiles.
func (k *kubelet) rotate(ts string) {
	k.t.Helper()
	must(k.t, os.Rename(k.current, k.current+"."+ts))
	writeFile(k.t, k.current, "")
	rotated := k.rotated()
	for _, name := range rotated[:len(rotated)-1] {
		if !strings.HasSuffix(name, ".gz") {
			compress(k.t, name)
		}
	}
	rotated = k.rotated()
	for len(rotated)+1 > k.maxFiles {
		must(k.t, os.Remove(rotated[0]))
		rotated = rotated[1:]
	}
}

// rotated lists the rotated files, oldest first.
func (k *kubelet) rotated() []string {
	m, err := filepath.Glob(k.current + ".*")
	if err != nil {
		k.t.Fatal(err)
	}
	slices.SortFunc(m, func(a, b string) int {
		return strings.Compare(strings.TrimSuffix(a, ".gz"), strings.TrimSuffix(b, ".gz"))
	})
	return m
}

// compress gzips name the kubelet's way: <name>.tmp, renamed to <name>.gz, then <name> removed.
func compress(t *testing.T, name string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, name+".tmp", string(gzipBytes(t, data)))
	must(t, os.Rename(name+".tmp", name+".gz"))
	must(t, os.Remove(name))
}

func gzipBytes(tb testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// gzEnv is one container directory with its 0.log, and a positions directory whose file can
// be saved and put back (a SIGKILL after delivery but before the positions were written).
type gzEnv struct {
	t         *testing.T
	dir, data string
	current   string
}

func newGzEnv(t *testing.T) *gzEnv {
	dir := t.TempDir()
	return &gzEnv{t: t, dir: dir, data: t.TempDir(), current: filepath.Join(dir, "0.log")}
}

func (e *gzEnv) positionsFile() string { return filepath.Join(e.data, positions.FileName) }

func (e *gzEnv) savePositions() []byte {
	b, err := os.ReadFile(e.positionsFile())
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *gzEnv) restorePositions(b []byte) {
	writeFile(e.t, e.positionsFile(), string(b))
}

// run starts a tailer with a fresh store from the positions file, waits for n records and
// for the rotated files to close, stops it, calls settle (if any: e.g. to deliver some of the
// held chunks), writes the positions and returns the sink.
func (e *gzEnv) run(n int, tune func(*Config), s *sink, settle func(*sink)) *sink {
	e.t.Helper()
	store := newStore(e.t, e.data)
	cfg := testConfig(e.t, e.dir, store)
	if tune != nil {
		tune(&cfg)
	}
	stop := start(e.t, cfg, s)
	if n == 0 {
		time.Sleep(300 * time.Millisecond) // time to read what should not be read
	}
	waitRecords(e.t, s, n)
	waitFor(e.t, "rotated files closed", func() bool {
		return metrics.Value(metrics.FilesOpen.WithLabelValues(cfg.Input)) == 1
	})
	stop()
	if settle != nil {
		settle(s)
	}
	if err := store.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func idsByMessage(recs []got) map[string]string {
	m := make(map[string]string)
	for _, r := range recs {
		m[r.Msg] = r.ID
	}
	return m
}

// TestRestartAfterGzipRotation: skiff delivered the first lines of 0.log and was stopped; the
// file grew, and the kubelet rotated three times, compressing the older files. After a restart
// every line is read once, in rotation order; the rest of the known file is read from its
// compressed copy with the ids reading the uncompressed file gives; a compressed file skiff
// never saw gets the same ids on every restart.
func TestRestartAfterGzipRotation(t *testing.T) {
	e := newGzEnv(t)
	kl := &kubelet{t: t, current: e.current, maxFiles: 4}
	writeFile(t, e.current, lines("z", 0, 5))
	e.run(5, nil, &sink{}, nil)
	kl.rotate("20231231-000000") // removed, read to its end, by the third rotation below
	appendFile(t, e.current, lines("a", 0, 10))
	e.run(10, nil, &sink{}, nil)
	known := e.savePositions()
	input := strings.ReplaceAll(t.Name(), "/", "_")
	lost := metrics.Value(metrics.LostBytes.WithLabelValues(input))

	appendFile(t, e.current, lines("a", 10, 20))
	ref := e.run(10, nil, &sink{}, nil).records() // what reading the uncompressed rest gives
	if got := ref[0].Msg; got != "a10" {
		t.Fatalf("reference run starts at %q", got)
	}
	e.restorePositions(known) // as if skiff was killed before writing its positions

	kl.rotate("20240101-000000")
	appendFile(t, e.current, lines("b", 0, 5))
	kl.rotate("20240101-000100")
	appendFile(t, e.current, lines("c", 0, 5))
	kl.rotate("20240101-000200")
	appendFile(t, e.current, lines("d", 0, 3))
	if got := kl.rotated(); len(got) != 3 || !strings.HasSuffix(got[0], ".gz") || !strings.HasSuffix(got[1], ".gz") {
		t.Fatalf("rotated files %q, want two compressed and one plain", got)
	}

	want := slices.Concat(seq("a", 10, 20), seq("b", 0, 5), seq("c", 0, 5), seq("d", 0, 3))
	first := e.run(len(want), nil, &sink{}, nil).records()
	second := func() []got {
		e.restorePositions(known)
		return e.run(len(want), nil, &sink{}, nil).records()
	}()
	for _, recs := range [][]got{first, second} {
		var msgs []string
		for _, r := range recs {
			msgs = append(msgs, r.Msg)
		}
		if !slices.Equal(msgs, want) {
			t.Fatalf("records %q, want %q", msgs, want)
		}
	}
	if got := metrics.Value(metrics.LostBytes.WithLabelValues(input)) - lost; got != 0 {
		t.Errorf("lost bytes %v: the file removed had been read", got)
	}
	refIDs := idsByMessage(ref)
	for i, r := range first {
		if id, ok := refIDs[r.Msg]; ok && id != r.ID {
			t.Errorf("%q from the compressed file has id %s, reading it uncompressed gave %s", r.Msg, r.ID, id)
		}
		if second[i].ID != r.ID {
			t.Errorf("%q has id %s after one restart and %s after another", r.Msg, r.ID, second[i].ID)
		}
	}
}

// TestRestartInsideGzip: a restart while a compressed file is half delivered resumes at the
// decompressed offset of the last delivered record: nothing is read twice, nothing skipped,
// and the ids are those of the first reading.
func TestRestartInsideGzip(t *testing.T) {
	e := newGzEnv(t)
	kl := &kubelet{t: t, current: e.current, maxFiles: 5}
	writeFile(t, e.current, lines("a", 0, 3))
	e.run(3, nil, &sink{}, nil)
	kl.rotate("20240101-000000")
	appendFile(t, e.current, lines("b", 0, 100))
	kl.rotate("20240101-000100")
	appendFile(t, e.current, lines("c", 0, 3))
	kl.rotate("20240101-000200")
	appendFile(t, e.current, lines("d", 0, 3))

	want := slices.Concat(seq("b", 0, 100), seq("c", 0, 3), seq("d", 0, 3))
	small := func(c *Config) { c.ChunkRecords = 10 }
	held := e.run(len(want), small, &sink{hold: true}, func(s *sink) {
		for i := range 3 { // delivered before the crash
			s.batch(i).Done(event.Delivered)
		}
	})
	first := held.records()
	if got := first[29].Msg; got != "b29" {
		t.Fatalf("the 30th record is %q", got)
	}
	gz := kl.rotated()[1]
	if !strings.HasSuffix(gz, ".gz") {
		t.Fatalf("rotated files %q", kl.rotated())
	}
	store := newStore(t, e.data)
	entry, ok := store.Get(fileKey(t, gz))
	if wantOff := int64(len(lines("b", 0, 30))); !ok || entry.Offset != wantOff {
		t.Fatalf("entry of the compressed file %+v (found %v), want offset %d", entry, ok, wantOff)
	}

	rest := e.run(len(want)-30, nil, &sink{}, nil).records()
	var msgs []string
	ids := idsByMessage(first)
	for _, r := range rest {
		msgs = append(msgs, r.Msg)
		if ids[r.Msg] != r.ID {
			t.Errorf("%q: id %s after the restart, %s before", r.Msg, r.ID, ids[r.Msg])
		}
	}
	if !slices.Equal(msgs, want[30:]) {
		t.Fatalf("after the restart %q, want %q", msgs, want[30:])
	}
}

// TestLostWhenRemovedUnread: skiff delivered the first 3 of 10 lines and stopped; the kubelet
// then rotated the file and removed it, compressed or not. After a restart the 7 unread lines
// are counted lost, exactly; a compressed copy that is still there is read instead.
func TestLostWhenRemovedUnread(t *testing.T) {
	unread := int64(len(lines("a", 3, 10)))
	for _, tc := range []struct {
		name     string
		compress bool
		remove   bool
		want     []string
		lost     int64
	}{
		{"rotated and removed", false, true, seq("n", 0, 2), unread},
		{"compressed and removed", true, true, seq("n", 0, 2), unread},
		{"compressed and kept", true, false, slices.Concat(seq("a", 3, 10), seq("n", 0, 2)), 0},
		{"rotated and kept", false, false, slices.Concat(seq("a", 3, 10), seq("n", 0, 2)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGzEnv(t)
			writeFile(t, e.current, lines("a", 0, 10))
			e.run(10, func(c *Config) { c.ChunkRecords = 3 }, &sink{hold: true}, func(s *sink) {
				s.batch(0).Done(event.Delivered)
			})
			rotated := e.current + ".20240101-000000"
			must(t, os.Rename(e.current, rotated))
			writeFile(t, e.current, lines("n", 0, 2))
			if tc.compress {
				compress(t, rotated)
				rotated += ".gz"
			}
			if tc.remove {
				must(t, os.Remove(rotated))
			}
			input := strings.ReplaceAll(t.Name(), "/", "_")
			before := metrics.Value(metrics.LostBytes.WithLabelValues(input))
			var msgs []string
			for _, r := range e.run(len(tc.want), nil, &sink{}, nil).records() {
				msgs = append(msgs, r.Msg)
			}
			if !slices.Equal(msgs, tc.want) {
				t.Errorf("records %q, want %q", msgs, tc.want)
			}
			if got := metrics.Value(metrics.LostBytes.WithLabelValues(input)) - before; got != float64(tc.lost) {
				t.Errorf("lost bytes %v, want %d", got, tc.lost)
			}
			// Counted once: the entry of the lost file is gone. Nothing is read again.
			if n := len(e.run(0, nil, &sink{}, nil).records()); n != 0 {
				t.Errorf("%d records read again after a second restart", n)
			}
			if got := metrics.Value(metrics.LostBytes.WithLabelValues(input)) - before; got != float64(tc.lost) {
				t.Errorf("lost bytes %v after a second restart, want %d", got, tc.lost)
			}
		})
	}
}

// TestDamagedGzip: a compressed rotated file cut short is read up to the damage, the error is
// logged and counted, and the files after it are read as usual.
func TestDamagedGzip(t *testing.T) {
	e := newGzEnv(t)
	kl := &kubelet{t: t, current: e.current, maxFiles: 5}
	writeFile(t, e.current, lines("a", 0, 3))
	e.run(3, nil, &sink{}, nil)
	appendFile(t, e.current, lines("line-with-some-text-", 0, 5000))
	kl.rotate("20240101-000000")
	appendFile(t, e.current, lines("b", 0, 2))
	kl.rotate("20240101-000100")
	appendFile(t, e.current, lines("c", 0, 2))
	gz := kl.rotated()[0]
	fi, err := os.Stat(gz)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Truncate(gz, fi.Size()/2))

	input := strings.ReplaceAll(t.Name(), "/", "_")
	errsBefore := metrics.Value(metrics.ReadErrors.WithLabelValues(input))
	store := newStore(t, e.data)
	cfg := testConfig(t, e.dir, store)
	s := &sink{}
	stop := start(t, cfg, s)
	tail := slices.Concat(seq("b", 0, 2), seq("c", 0, 2))
	waitFor(t, "the files after the damaged one", func() bool {
		msgs := s.messages()
		return len(msgs) >= len(tail) && slices.Equal(msgs[len(msgs)-len(tail):], tail)
	})
	recs := s.records()
	prefix := recs[:len(recs)-len(tail)]
	if len(prefix) < 100 || len(prefix) >= 5000 {
		t.Fatalf("%d records before the damage, want a part of the 5000", len(prefix))
	}
	want := seq("line-with-some-text-", 0, len(prefix))
	for i, r := range prefix {
		last := i == len(prefix)-1
		switch {
		case r.Msg == want[i]:
		case last && r.Flags&event.FlagTruncated != 0 && strings.HasPrefix(want[i], r.Msg):
			// the line cut by the damage, flagged
		default:
			t.Fatalf("record %d is %q (flags %v), want %q", i, r.Msg, r.Flags, want[i])
		}
	}
	if got := metrics.Value(metrics.ReadErrors.WithLabelValues(input)) - errsBefore; got != 1 {
		t.Errorf("read errors %v, want 1", got)
	}
	// After a restart the damaged file is not tried again: it was read as far as it goes.
	waitFor(t, "rotated files closed", func() bool {
		return metrics.Value(metrics.FilesOpen.WithLabelValues(input)) == 1
	})
	stop()
	must(t, store.Flush())
	if n := len(e.run(0, nil, &sink{}, nil).records()); n != 0 {
		t.Errorf("%d records read again after a restart", n)
	}
	if got := metrics.Value(metrics.ReadErrors.WithLabelValues(input)) - errsBefore; got != 1 {
		t.Errorf("read errors %v after a restart, want 1", got)
	}
}

// TestCompressedUnderOpenReader: a gzip file whose content a reader is still reading from
// its (removed) uncompressed file takes that reader's key, so it joins the chain instead of
// being read a second time.
func TestCompressedUnderOpenReader(t *testing.T) {
	p, _, cfg := fixture(t, "0.log", lines("a", 0, 5))
	tl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rotated := p + ".20240101-000000"
	must(t, os.Rename(p, rotated))
	f, err := os.Open(rotated)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k := fileKey(t, rotated)
	r := newReader(tl, f, p, rotated, rotated, p, k, startNew, nil)
	tl.readers[k] = r
	writeFile(t, p, "")
	compress(t, rotated)
	writeFile(t, p+".20240101-000100", lines("b", 0, 2))

	for _, begun := range []bool{false, true} {
		if begun {
			fp, _, _ := fingerprint(f)
			r.idFP.Store(fp)
		}
		sibs := tl.rotatedSiblings(p)
		if len(sibs) != 2 || !sibs[0].gz || sibs[0].key != k {
			t.Fatalf("begun %v: siblings %+v, want the .gz first with the open reader's key %v", begun, sibs, k)
		}
	}
}

// BenchmarkGzipSibling reads a compressed rotated file of ~32 MiB (decompressed) of 300-byte
// CRI-like lines through the raw parser, as catching up after falling behind does.
func BenchmarkGzipSibling(b *testing.B) {
	dir := b.TempDir()
	var content bytes.Buffer
	var nLines int64
	pad := strings.Repeat("0123456789", 30)
	for content.Len() < 32<<20 {
		start := content.Len()
		content.WriteString("2024-01-02T03:04:05.000000001Z stderr F GET /api/v1/items?page=")
		content.WriteString(strconv.FormatInt(nLines, 10))
		content.WriteString(" status=200 ")
		content.WriteString(pad[:299-(content.Len()-start)])
		content.WriteByte('\n')
		nLines++
	}
	size := int64(content.Len())
	path := filepath.Join(dir, "0.log.20240101-000000.gz")
	if err := os.WriteFile(path, gzipBytes(b, content.Bytes()), 0o644); err != nil {
		b.Fatal(err)
	}
	store, err := positions.Open(filepath.Join(dir, positions.FileName), nil)
	if err != nil {
		b.Fatal(err)
	}
	tl, err := New(Config{Input: "bench-gz", Paths: []string{filepath.Join(dir, "0.log")}, NewParser: newRawParser, Positions: store})
	if err != nil {
		b.Fatal(err)
	}
	benchRead(b, tl, store, path, size, nLines)
}

// TestKubeletRotationWhileBehind: the kubelet rotates, compresses and removes files while
// delivery is stalled (twice in a row once, faster than a scan). Every file was opened when
// it was discovered, so once delivery resumes every line arrives exactly once, in order,
// nothing is lost, and no compressed copy is read besides its open original.
func TestKubeletRotationWhileBehind(t *testing.T) {
	e := newGzEnv(t)
	kl := &kubelet{t: t, current: e.current, maxFiles: 3}
	writeFile(t, e.current, "")
	store := newStore(t, e.data)
	cfg := testConfig(t, e.dir, store)
	cfg.ChunkRecords = 10
	s := &sink{}
	s.pause()
	start(t, cfg, s)
	var want []string
	for i, ts := range []string{"20240101-000000", "20240101-000100", "20240101-000200", "20240101-000300", "20240101-000400"} {
		prefix := "r" + strconv.Itoa(i) + "-"
		appendFile(t, e.current, lines(prefix, 0, 40))
		want = append(want, seq(prefix, 0, 40)...)
		if i != 3 {
			time.Sleep(100 * time.Millisecond) // scans see the file
		}
		kl.rotate(ts)
	}
	time.Sleep(100 * time.Millisecond)
	appendFile(t, e.current, lines("last-", 0, 5))
	want = append(want, seq("last-", 0, 5)...)
	lost := metrics.Value(metrics.LostBytes.WithLabelValues(cfg.Input))
	s.resume()
	waitRecords(t, s, len(want))
	waitFor(t, "rotated files closed", func() bool {
		return metrics.Value(metrics.FilesOpen.WithLabelValues(cfg.Input)) == 1
	})
	if got := s.messages(); !slices.Equal(got, want) {
		t.Fatalf("got %d records, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	if got := metrics.Value(metrics.LostBytes.WithLabelValues(cfg.Input)) - lost; got != 0 {
		t.Errorf("lost bytes %v", got)
	}
}
