package gzipfile

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/outputs/document"
)

// memberText returns the content of test member i: a few JSON lines.
func memberText(i int) []byte {
	var b []byte
	for j := range 3 {
		b = fmt.Appendf(b, `{"member":%d,"line":%d,"message":"%s"}`+"\n", i, j, strings.Repeat("x", i*7%50))
	}
	return b
}

func writeMembers(t *testing.T, path string, from, to int) {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if err := f.WriteMember(memberText(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) ([]string, bool) {
	t.Helper()
	var lines []string
	complete, err := ReadAll(path, func(line []byte) error {
		lines = append(lines, string(line))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines, complete
}

func wantLines(members ...int) []string {
	var lines []string
	for _, i := range members {
		for l := range strings.SplitSeq(strings.TrimSuffix(string(memberText(i)), "\n"), "\n") {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "out.gz")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != path || f.Size() != 0 {
		t.Fatalf("Path %q Size %d", f.Path(), f.Size())
	}
	for i := range 5 {
		if err := f.WriteMember(memberText(i)); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != f.Size() {
			t.Fatalf("Size() = %d, file has %d", f.Size(), st.Size())
		}
	}
	if err := f.WriteMember(nil); err != nil || f.Size() == 0 {
		t.Fatalf("empty member: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := f.WriteMember([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteMember after Close = %v, want ErrClosed", err)
	}

	// Reopening appends.
	writeMembers(t, path, 5, 7)
	lines, complete := readLines(t, path)
	if !complete || !slices.Equal(lines, wantLines(0, 1, 2, 3, 4, 5, 6)) {
		t.Fatalf("complete=%v lines=%q", complete, lines)
	}

	// Any gzip reader reads the file as one stream.
	raw, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	zr, err := stdgzip.NewReader(raw)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n"); !slices.Equal(got, lines) {
		t.Fatalf("compress/gzip read %q", got)
	}
}

func TestScanEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.gz")
	writeMembers(t, path, 0, 3)
	var ends []int64
	complete, err := Scan(path, func(data []byte, end int64) error {
		ends = append(ends, end)
		return nil
	})
	st, _ := os.Stat(path)
	if err != nil || !complete || len(ends) != 3 || ends[2] != st.Size() || !(ends[0] < ends[1] && ends[1] < ends[2]) {
		t.Fatalf("complete=%v err=%v ends=%v size=%d", complete, err, ends, st.Size())
	}
	stop := errors.New("stop")
	n := 0
	_, err = ReadAll(path, func([]byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn error: err=%v after %d lines", err, n)
	}
	if _, err := ReadAll(filepath.Join(t.TempDir(), "missing.gz"), func([]byte) error { return nil }); err == nil {
		t.Fatal("ReadAll of a missing file succeeded")
	}
	empty := filepath.Join(t.TempDir(), "empty.gz")
	writeMembers(t, empty, 0, 0)
	if lines, complete := readLines(t, empty); len(lines) != 0 || !complete {
		t.Fatalf("empty file: %q %v", lines, complete)
	}
}

// TestTornTail simulates a crash at every byte of the last member: the earlier members always
// read back, and the tail is reported incomplete unless the cut falls on a member boundary.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "full.gz")
	writeMembers(t, path, 0, 3)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	full := st.Size()
	writeMembers(t, path, 3, 4)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.gz")
	for n := full; n <= int64(len(data)); n++ {
		if err := os.WriteFile(cut, data[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		lines, complete := readLines(t, cut)
		switch n {
		case full:
			if !complete || !slices.Equal(lines, wantLines(0, 1, 2)) {
				t.Fatalf("cut at member boundary %d: complete=%v lines=%d", n, complete, len(lines))
			}
		case int64(len(data)):
			if !complete || !slices.Equal(lines, wantLines(0, 1, 2, 3)) {
				t.Fatalf("uncut: complete=%v lines=%d", complete, len(lines))
			}
		default:
			if complete || !slices.Equal(lines, wantLines(0, 1, 2)) {
				t.Fatalf("cut at %d of %d: complete=%v lines=%d", n, len(data), complete, len(lines))
			}
		}
	}
}

// TestAppendAfterTornTail: a file torn by a crash is opened again and appended to; the members
// on both sides of the torn bytes read back.
func TestAppendAfterTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.gz")
	writeMembers(t, path, 0, 2)
	st, _ := os.Stat(path)
	writeMembers(t, path, 2, 3)
	if err := os.Truncate(path, st.Size()+10); err != nil { // member 2 torn
		t.Fatal(err)
	}
	writeMembers(t, path, 3, 5)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0x1f, 0x8b, 0x1f}) // garbage that looks like a header
	f.Close()
	writeMembers(t, path, 5, 6)
	lines, complete := readLines(t, path)
	if complete || !slices.Equal(lines, wantLines(0, 1, 3, 4, 5)) {
		t.Fatalf("complete=%v lines=%q", complete, lines)
	}
}

func TestOpenPermissions(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "new", "deeper", "f.gz")
	writeMembers(t, path, 0, 1)
	for p, want := range map[string]os.FileMode{
		filepath.Join(dir, "new"):           os.ModeDir | 0o755,
		filepath.Join(dir, "new", "deeper"): os.ModeDir | 0o755,
		path:                                0o644,
	} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		dir,                                // a directory
		filepath.Join(file, "x.gz"),        // a file where a directory should be
		filepath.Join(file, "sub", "x.gz"), // and deeper
	} {
		if f, err := Open(p); err == nil {
			f.Close()
			t.Errorf("Open(%q) succeeded", p)
		} else if !strings.Contains(err.Error(), "open gzip file") {
			t.Errorf("Open(%q) error %q lacks context", p, err)
		}
	}
}

// TestTornFlagRecovers checks the repair path: a file marked torn is cut back to its last good
// size before the next member.
func TestTornFlagRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.gz")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteMember(memberText(0)); err != nil {
		t.Fatal(err)
	}
	// Simulate a failed write whose cut failed too: garbage after the last good size.
	if _, err := f.f.Write([]byte{0x1f, 0x8b, 0x08, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	f.torn = true
	if err := f.WriteMember(memberText(1)); err != nil {
		t.Fatal(err)
	}
	lines, complete := readLines(t, path)
	if !complete || !slices.Equal(lines, wantLines(0, 1)) {
		t.Fatalf("complete=%v lines=%q", complete, lines)
	}
}

// flushData is about 1 MiB of documents as the file output writes them.
func flushData() []byte {
	src := &event.Source{Path: "/var/log/containers/web-7d4_shop_nginx-abc123.log", Namespace: "shop", PodName: "web-7d4", Container: "nginx", ContainerID: "abc123"}
	var b []byte
	for i := 0; len(b) < 1<<20; i++ {
		r := event.Record{
			Time: time.Date(2024, 1, 2, 3, 4, 5, i*1000, time.UTC), Stream: "stdout", Tag: "kube.shop.web-7d4.nginx",
			Source: src, Offset: int64(i * 330),
			Message: fmt.Appendf(nil, `10.244.1.%d - - [02/Jan/2024:03:04:05 +0000] "GET /api/v1/products/%d/reviews?page=%d HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.%03d`, i%250, i*7919%100000, i%9, 200+i%3*100, i*31%9000, i%1000),
		}
		b = document.Append(b, &r)
		b = append(b, '\n')
	}
	return b
}

// BenchmarkCompress compares gzip implementations and levels on 1 MiB of documents: MB/s of
// input and the compression ratio.
func BenchmarkCompress(b *testing.B) {
	data := flushData()
	type compressor interface {
		io.WriteCloser
		Reset(io.Writer)
	}
	newStd := func(level int) compressor { w, _ := stdgzip.NewWriterLevel(nil, level); return w }
	newKP := func(level int) compressor { w, _ := gzip.NewWriterLevel(nil, level); return w }
	for _, c := range []struct {
		name string
		w    compressor
	}{
		{"std-default", newStd(stdgzip.DefaultCompression)},
		{"std-1", newStd(stdgzip.BestSpeed)},
		{"klauspost-default", newKP(gzip.DefaultCompression)},
		{"klauspost-1", newKP(gzip.BestSpeed)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var out bytes.Buffer
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				out.Reset()
				c.w.Reset(&out)
				c.w.Write(data)
				c.w.Close()
			}
			b.ReportMetric(float64(len(data))/float64(out.Len()), "ratio")
		})
	}
}

// BenchmarkWriteMember measures a 1 MiB member: compression, write and fsync.
func BenchmarkWriteMember(b *testing.B) {
	data := flushData()
	f, err := Open(filepath.Join(b.TempDir(), "bench.gz"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := f.WriteMember(data); err != nil {
			b.Fatal(err)
		}
	}
}
