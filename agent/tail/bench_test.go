package tail

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/positions"
)

// BenchmarkReader reads a ~64 MiB file of 317-byte CRI-like lines through the raw test parser,
// with chunk acks committed to a positions store as a delivering output would.
func BenchmarkReader(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "0.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	const lineLen = 317
	prefix := "2024-01-02T03:04:05.123456789Z stdout F "
	var size int64
	for i := 0; size < 64<<20; i++ {
		head := fmt.Sprintf("%s%08d level=info msg=\"request served\" ", prefix, i)
		line := head + strings.Repeat("abcdefghij", 40)[:lineLen-1-len(head)] + "\n"
		n, _ := w.WriteString(line)
		size += int64(n)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()

	store, err := positions.Open(filepath.Join(dir, positions.FileName), nil)
	if err != nil {
		b.Fatal(err)
	}
	tl, err := New(Config{Input: "bench", Paths: []string{path}, NewParser: newRawParser, Positions: store})
	if err != nil {
		b.Fatal(err)
	}
	benchRead(b, tl, store, path, size, size/lineLen)
}

// benchRead has a reader read path (size bytes, wantRecords records) from 0, b.N times, and
// reports records/s and allocs/record.
func benchRead(b *testing.B, tl *Tailer, store *positions.Store, path string, size, wantRecords int64) {
	var records int64
	handle := func(_ context.Context, c *event.Chunk) error {
		records += int64(len(c.Records))
		return nil
	}

	b.SetBytes(size)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		r := readOnce(b, tl, path, handle)
		if r.off != size {
			b.Fatalf("read %d of %d bytes", r.off, size)
		}
		r.g.tracker.Close()
		// Forget the position, so that the next round reads the file from 0 again.
		store.Put(positions.Entry{Key: r.key, Path: path})
		r.releaseBuf()
		r.f.Close()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if records != int64(b.N)*wantRecords {
		b.Fatalf("%d records, want %d", records, int64(b.N)*wantRecords)
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(records), "allocs/record")
}

// readOnce opens path and has a reader, outside Run, read all it holds now.
func readOnce(tb testing.TB, tl *Tailer, path string, handle handleFunc) *reader {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	k, _ := keyOf(fi)
	r := newReader(tl, f, path, path, path, path, k, startNew, nil)
	if err := r.step(context.Background(), handle); err != nil {
		tb.Fatal(err)
	}
	return r
}

// rawParser makes every line a record, as the simplest real parser would.
type rawParser struct{}

func newRawParser([]byte, int) Parser { return rawParser{} }

func (rawParser) Parse(line []byte, off int64, r *event.Record) bool {
	r.Message, r.Offset = line, off
	return true
}

func (rawParser) PendingFrom() (int64, bool) { return 0, false }

func (rawParser) Flush(*event.Record) bool { return false }

// FuzzReader feeds arbitrary bytes through a reader with tiny buffers and line limits: one
// record per complete line, at the line's offset, valid UTF-8, and the position after the last
// newline once every chunk is delivered.
func FuzzReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\xff\x00\xc3\n\r\n€€€€\nno newline"), uint8(3), uint8(5))
	f.Add([]byte(strings.Repeat("x", 300)+"\n"), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, maxLine, bufSize uint8) {
		dir := t.TempDir()
		path := filepath.Join(dir, "x.log")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		store, err := positions.Open(filepath.Join(dir, positions.FileName), nil)
		if err != nil {
			t.Fatal(err)
		}
		max := int(maxLine) + 1
		tl, err := New(Config{Input: "fuzz", Paths: []string{path}, NewParser: newRawParser, Positions: store,
			MaxLineBytes: max, ReadBufferBytes: int(bufSize) + 1, ChunkRecords: 3})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		var offs []int64
		r := readOnce(t, tl, path, func(_ context.Context, c *event.Chunk) error {
			for _, rec := range c.Records {
				msgs = append(msgs, string(rec.Message))
				offs = append(offs, rec.Offset)
			}
			return nil
		})
		defer r.f.Close()
		if r.g == nil {
			if _, ok, _ := fingerprint(r.f); ok {
				t.Fatal("no generation although the fingerprint is stable")
			}
			return
		}
		var off int64
		lines := strings.SplitAfter(string(data), "\n")
		lines = lines[:len(lines)-1] // the part after the last newline is not a line yet
		if len(msgs) != len(lines) {
			t.Fatalf("%d records for %d lines", len(msgs), len(lines))
		}
		for i, line := range lines {
			if offs[i] != off {
				t.Fatalf("record %d at offset %d, want %d", i, offs[i], off)
			}
			if !utf8.ValidString(msgs[i]) || len(msgs[i]) > 3*max {
				t.Fatalf("record %d: %q (valid %v, limit %d)", i, msgs[i], utf8.ValidString(msgs[i]), max)
			}
			if raw := line[:len(line)-1]; len(raw) <= max && utf8.ValidString(raw) && msgs[i] != raw {
				t.Fatalf("record %d: %q, want %q", i, msgs[i], raw)
			}
			off += int64(len(line))
		}
		if got := r.g.tracker.Committed(); got != off {
			t.Fatalf("committed %d, want %d", got, off)
		}
	})
}
