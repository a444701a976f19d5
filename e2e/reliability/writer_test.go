package reliability

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/internal/loggen"
)

// writer writes CRI container logs in the kubelet layout, each line's message starting with a
// unique id "id=<file>-<seq>" (three and eight digits), and remembers what it wrote, rotated and
// deleted. Every line of a writer has the same length, so bytes and lines convert exactly.
type writer struct {
	t      testing.TB
	root   string
	padLen int // bytes of random padding after the id
	base   time.Time
	files  []*wfile
	rng    *rand.Rand // for the padding, under mu

	mu sync.Mutex
	// destroyed are the line ranges the writer deleted (rotated files beyond maxFiles);
	// truncated those it truncated away from a file after copying them (copytruncate).
	destroyed, truncated []seqRange
}

// wfile is one container's log.
type wfile struct {
	n    int
	c    loggen.Container
	path string
	f    *os.File
	next int // next sequence number; also the number of lines written
	// kubelet rotation state: the first sequence number in the current file, the rotations so
	// far, and the rotated files, oldest first.
	curFirst  int
	rotations int
	rotated   []*rotFile
	// copyTruncate: rotate by copying and truncating instead of renaming.
	copyTruncate bool
}

// rotFile is a rotated file: its path (plain, or .gz once compressed) and the lines it holds.
type rotFile struct {
	path string
	gz   bool
	seqRange
}

// seqRange is the lines [first, end) of file n.
type seqRange struct{ n, first, end int }

// newWriter creates n container log files under root whose lines are lineLen bytes long.
func newWriter(t testing.TB, root string, n, lineLen int) *writer {
	t.Helper()
	w := &writer{t: t, root: root, base: time.Now().UTC().Truncate(time.Second), rng: rand.New(rand.NewPCG(uint64(n), uint64(lineLen)))}
	// "<30-byte time> stdout F id=NNN-NNNNNNNN " is 56 bytes, the newline one more.
	w.padLen = max(0, lineLen-57)
	for i := range n {
		c := loggen.Container{
			Namespace: fmt.Sprintf("rel-%d", i%4),
			Pod:       fmt.Sprintf("load-%03d-6b5f9c7d8-q%03d", i, i),
			UID:       fmt.Sprintf("%08x-3c1d-4e2f-8a9b-%012x", i, w.base.Unix()),
			Name:      fmt.Sprintf("c%d", i),
			ID:        fmt.Sprintf("%064x", uint64(i+1)*0x9e3779b97f4a7c15),
		}
		f, err := c.Create(root)
		if err != nil {
			t.Fatal(err)
		}
		w.files = append(w.files, &wfile{n: i, c: c, path: c.PodsPath(root), f: f})
	}
	return w
}

// lineLen is the length of every line, newline included.
func (w *writer) lineLen() int { return 57 + w.padLen }

// appendLines encodes the next k lines of f.
func (w *writer) appendLines(buf []byte, f *wfile, k int) []byte {
	ts := w.base.Add(time.Duration(f.next) * time.Microsecond).Format("2006-01-02T15:04:05.000000000Z")
	for range k {
		buf = append(buf, ts...)
		buf = append(buf, " stdout F id="...)
		buf = appendPadded(buf, f.n, 3)
		buf = append(buf, '-')
		buf = appendPadded(buf, f.next, 8)
		buf = append(buf, ' ')
		buf = w.appendPad(buf)
		buf = append(buf, '\n')
		f.next++
	}
	return buf
}

// padChars are the characters of the padding: random ones, so that gzip (the spool, the
// kubelet's rotated files) compresses lines about as much as real logs and no more.
const padChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_."

// appendPad appends w.padLen random padding characters.
func (w *writer) appendPad(b []byte) []byte {
	for left := w.padLen; left > 0; {
		v := w.rng.Uint64()
		for i := 0; i < 10 && left > 0; i, left = i+1, left-1 {
			b = append(b, padChars[v&63])
			v >>= 6
		}
	}
	return b
}

func appendPadded(b []byte, v, width int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// write appends k lines to f in one write.
func (w *writer) write(f *wfile, k int, buf []byte) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf = w.appendLines(buf[:0], f, k)
	if _, err := f.f.Write(buf); err != nil {
		w.t.Errorf("write %s: %v", f.path, err)
	}
	return buf
}

// written is the number of lines written so far.
func (w *writer) written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, f := range w.files {
		n += f.next
	}
	return n
}

// steady writes rate lines per second in total, spread over the files, until ctx ends.
func (w *writer) steady(ctx context.Context, rate int) {
	const tick = 20 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	done, next := 0, 0
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := int(time.Since(start).Seconds()*float64(rate)) - done
		per := due / len(w.files)
		for due > 0 {
			k := max(per, 1)
			k = min(k, due)
			buf = w.write(w.files[next%len(w.files)], k, buf)
			next++
			due -= k
			done += k
		}
	}
}

// flat writes as fast as it can, every file from its own goroutine, until each file holds
// limit bytes or ctx ends.
func (w *writer) flat(ctx context.Context, limit int64) {
	var wg sync.WaitGroup
	per := int(limit) / w.lineLen()
	for _, f := range w.files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for done := 0; done < per && ctx.Err() == nil; done += 64 {
				buf = w.write(f, min(64, per-done), buf)
			}
		}()
	}
	wg.Wait()
}

// closeAll closes the open files.
func (w *writer) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		f.f.Close()
	}
}

// maxFiles is the kubelet's containerLogMaxFiles: the current file and four rotated ones.
const maxFiles = 5

// rotate rotates f as the kubelet does (or by copytruncate): the current file becomes
// 0.log.<suffix>, a new 0.log starts, every rotated file but the newest is compressed through
// <name>.tmp into <name>.gz and the plain one removed, and the oldest rotated files beyond
// maxFiles-1 are deleted, their lines recorded as destroyed. The suffix is the kubelet's
// timestamp format on a clock that moves one second per rotation, so names are unique and
// ordered however fast rotations come.
func (w *writer) rotate(f *wfile) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f.rotations++
	to := f.path + "." + w.base.Add(time.Duration(f.rotations)*time.Second).Format("20060102-150405")
	if f.copyTruncate {
		if err := copyFile(f.path, to); err != nil {
			return err
		}
		if err := f.f.Truncate(0); err != nil {
			return fmt.Errorf("truncate %s: %w", f.path, err)
		}
		w.truncated = append(w.truncated, seqRange{f.n, f.curFirst, f.next})
	} else {
		if err := f.f.Close(); err != nil {
			return err
		}
		if err := os.Rename(f.path, to); err != nil {
			return err
		}
		nf, err := f.c.Create(w.root)
		if err != nil {
			return err
		}
		f.f = nf
	}
	f.rotated = append(f.rotated, &rotFile{path: to, seqRange: seqRange{f.n, f.curFirst, f.next}})
	f.curFirst = f.next
	for _, r := range f.rotated[:len(f.rotated)-1] {
		if !r.gz {
			if err := compress(r.path); err != nil {
				return err
			}
			r.path, r.gz = r.path+".gz", true
		}
	}
	for len(f.rotated) > maxFiles-1 {
		r := f.rotated[0]
		if err := os.Remove(r.path); err != nil {
			return err
		}
		w.destroyed = append(w.destroyed, r.seqRange)
		f.rotated = f.rotated[1:]
	}
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return dst.Close()
}

// compress does what the kubelet's compressLog does: gzip p into p.tmp, rename that to p.gz,
// remove p.
func compress(p string) error {
	src, err := os.Open(p)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.Create(p + ".tmp")
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(tmp)
	if _, err := io.Copy(zw, src); err != nil {
		tmp.Close()
		return fmt.Errorf("compress %s: %w", p, err)
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(p+".tmp", p+".gz"); err != nil {
		return err
	}
	return os.Remove(p)
}

// tally is what Elasticsearch holds compared with what the writer wrote.
type tally struct {
	written, docs, distinct, unexpected int
	// missing lists the lines not found, by file (at most the first 20 per file are kept);
	// missingDestroyed counts those inside a destroyed range, missingTruncated the others
	// inside a truncated range.
	missing          map[int][]int
	missingCount     int
	missingDestroyed int
	missingTruncated int
}

func (t tally) lost() int { return t.written - t.distinct }
func (t tally) dup() int  { return t.docs - t.unexpected - t.distinct }

// check reads every document of the node's indices and compares them with what was written.
func (w *writer) check(n *node) tally {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := make([][]uint8, len(w.files))
	res := tally{missing: map[int][]int{}}
	for i, f := range w.files {
		seen[i] = make([]uint8, f.next)
		res.written += f.next
	}
	var bad []string
	n.s.scan(n.t, n.pattern(), func(msg string) {
		res.docs++
		fi, seq, ok := parseID(msg)
		if !ok || fi >= len(seen) || seq >= len(seen[fi]) {
			res.unexpected++
			if len(bad) < 5 {
				bad = append(bad, truncate(msg, 120))
			}
			return
		}
		if seen[fi][seq] == 0 {
			res.distinct++
		}
		if seen[fi][seq] < 255 {
			seen[fi][seq]++
		}
	})
	for fi, s := range seen {
		for seq, c := range s {
			if c > 0 {
				continue
			}
			res.missingCount++
			if len(res.missing[fi]) < 20 {
				res.missing[fi] = append(res.missing[fi], seq)
			}
			switch {
			case inRanges(w.destroyed, fi, seq):
				res.missingDestroyed++
			case inRanges(w.truncated, fi, seq):
				res.missingTruncated++
			}
		}
	}
	if len(bad) > 0 {
		w.t.Errorf("%d documents carry no id this writer wrote, e.g. %q", res.unexpected, bad)
	}
	return res
}

func inRanges(rs []seqRange, n, seq int) bool {
	for _, r := range rs {
		if r.n == n && seq >= r.first && seq < r.end {
			return true
		}
	}
	return false
}

// parseID reads "id=NNN-NNNNNNNN" at the start of a message.
func parseID(msg string) (file, seq int, ok bool) {
	if len(msg) < 15 || !strings.HasPrefix(msg, "id=") || msg[6] != '-' {
		return 0, 0, false
	}
	f, err1 := strconv.Atoi(msg[3:6])
	s, err2 := strconv.Atoi(msg[7:15])
	return f, s, err1 == nil && err2 == nil
}

// destroyedLines is the number of lines in the ranges the writer deleted.
func (w *writer) destroyedLines() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.destroyed {
		n += r.end - r.first
	}
	return n
}
