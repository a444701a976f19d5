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
	k := func() positions.Key {
		fi, _ := os.Stat(path)
		k, _ := keyOf(fi)
		return k
	}()
	var records int64
	handle := func(_ context.Context, c *event.Chunk) error {
		records += int64(len(c.Records))
		return nil
	}
	ctx := context.Background()

	b.SetBytes(size)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		store.Put(positions.Entry{Key: k, Path: path}) // read from 0 again; the fingerprint is fixed below
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r := newReader(tl, f, path, path, path, path, k, startNew, nil)
		if fp, ok, _ := fingerprint(f); ok {
			e, _ := store.Get(k)
			e.Fingerprint = fp
			store.Put(e)
		}
		if err := r.step(ctx, handle); err != nil {
			b.Fatal(err)
		}
		if r.off != size {
			b.Fatalf("read %d of %d bytes", r.off, size)
		}
		r.g.tracker.Close()
		r.releaseBuf()
		f.Close()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if records != int64(b.N)*(size/lineLen) {
		b.Fatalf("%d records, want %d", records, int64(b.N)*(size/lineLen))
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(records), "allocs/record")
	if e, _ := store.Get(k); e.Offset != size {
		b.Fatalf("committed %d of %d", e.Offset, size)
	}
}

// rawParser makes every line a record, as the simplest real parser would.
type rawParser struct{}

func newRawParser([]byte, int) Parser { return rawParser{} }

func (rawParser) Parse(line []byte, off int64, r *event.Record) bool {
	r.Message, r.Offset = line, off
	return true
}

func (rawParser) PendingFrom() (int64, bool) { return 0, false }
