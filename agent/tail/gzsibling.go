package tail

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
)

// gzSuffix marks a rotated file the kubelet compressed (it writes <name>.tmp, renames it to
// <name>.gz and removes <name>).
const gzSuffix = ".gz"

// gzInputBytes is the buffer of compressed input of a gzip stream.
const gzInputBytes = 32 << 10

// gzWorkingSet is what a gzip stream holds besides a plain reader's working set: the
// decompressor (32 KiB window, Huffman tables, output buffering) and its input buffer. A
// reader acquires it from the Budget's readers half together with its own working set.
const gzWorkingSet = 96<<10 + gzInputBytes

// gzState is the reusable part of a gzip stream, pooled across files: creating a flate
// decompressor allocates about 40 KiB.
type gzState struct {
	in  fileCursor
	br  *bufio.Reader
	zr  *gzip.Reader
	err error // the stream's sticky error
}

var gzStates = sync.Pool{New: func() any {
	return &gzState{br: bufio.NewReaderSize(nil, gzInputBytes)}
}}

// fileCursor reads a file sequentially through ReadAt, counting the bytes read, so that the
// file's own offset is never used.
type fileCursor struct {
	f   *os.File
	off int64
}

func (c *fileCursor) Read(p []byte) (int, error) {
	n, err := c.f.ReadAt(p, c.off)
	c.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// gzStream is the decompressed content of one gzip file, read from its start.
type gzStream struct {
	st  *gzState
	pos int64 // decompressed bytes returned so far
}

// openGz starts decompressing f from its beginning with pooled state. Close returns it.
func openGz(f *os.File) (*gzStream, error) {
	st := gzStates.Get().(*gzState)
	st.in = fileCursor{f: f}
	st.br.Reset(&st.in)
	st.err = nil
	var err error
	if st.zr == nil {
		st.zr, err = gzip.NewReader(st.br)
	} else {
		err = st.zr.Reset(st.br)
	}
	if err != nil {
		st.in.f = nil
		gzStates.Put(st)
		return nil, fmt.Errorf("read gzip header of %s: %w", f.Name(), err)
	}
	return &gzStream{st: st}, nil
}

// Read returns decompressed bytes; io.EOF at the end of the last gzip member. Any other
// error means the rest of the file cannot be decompressed.
func (z *gzStream) Read(p []byte) (int, error) {
	if z.st.err != nil {
		return 0, z.st.err
	}
	n, err := z.st.zr.Read(p)
	z.pos += int64(n)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("gzip file ends early: %w", err)
		}
		z.st.err = err
	}
	return n, err
}

// skip discards the next n decompressed bytes, reading them into buf. It returns how many it
// discarded and the error that stopped it short.
func (z *gzStream) skip(n int64, buf []byte) (int64, error) {
	var done int64
	for done < n {
		b := buf
		if rest := n - done; rest < int64(len(b)) {
			b = b[:rest]
		}
		m, err := z.Read(b)
		done += int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// consumed returns the compressed bytes the decompressor took so far.
func (z *gzStream) consumed() int64 {
	return z.st.in.off - int64(z.st.br.Buffered())
}

// Close gives the pooled state back. The stream is unusable afterwards.
func (z *gzStream) Close() {
	if z.st == nil {
		return
	}
	z.st.in.f = nil
	z.st.br.Reset(nil)
	gzStates.Put(z.st)
	z.st = nil
}

// gzFingerprint returns the fingerprint of the decompressed content of a gzip file (see
// fingerprintOf: for a file without a newline in its first fingerprintBytes, the hash of what
// there is).
func gzFingerprint(f *os.File) (uint64, error) {
	z, err := openGz(f)
	if err != nil {
		return 0, err
	}
	defer z.Close()
	var buf [fingerprintBytes]byte
	n, err := io.ReadFull(z, buf[:])
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, fmt.Errorf("read fingerprint of %s: %w", f.Name(), err)
	}
	fp, _ := fingerprintOf(buf[:n])
	return fp, nil
}

// gzFirstLine returns the first line of a gzip file's decompressed content (without its
// '\n'), at most max bytes of it.
func gzFirstLine(f *os.File, max int) ([]byte, error) {
	z, err := openGz(f)
	if err != nil {
		return nil, err
	}
	defer z.Close()
	var out []byte
	buf := make([]byte, min(4096, max))
	for len(out) < max {
		n, err := z.Read(buf[:min(len(buf), max-len(out))])
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return append(out, buf[:i]...), nil
		}
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read first line of %s: %w", f.Name(), err)
		}
	}
	return out, nil
}

// gzSize returns the decompressed size a gzip file's trailer declares (ISIZE: the size modulo
// 2^32, exact for the sizes the kubelet rotates at), or -1 when it has no trailer.
func gzSize(f *os.File, size int64) int64 {
	if size < 18 { // header and trailer
		return -1
	}
	var b [4]byte
	if _, err := f.ReadAt(b[:], size-4); err != nil {
		return -1
	}
	return int64(binary.LittleEndian.Uint32(b[:]))
}

func isGz(name string) bool { return strings.HasSuffix(name, gzSuffix) }

// beginGz starts the only generation of a gzip-compressed rotated file. The content is known
// as a whole, so the fingerprint needs no newline. Its position is, in order: its own entry (a
// restart in the middle of it), the entry of the uncompressed file it was made from (same
// resolved path and fingerprint: it continues where that file was left, with that file's
// identity, so that document ids are the ones reading the uncompressed file gave), or 0 with
// its own identity (rotated and compressed before skiff saw it).
func (r *reader) beginGz() error {
	fp, err := gzFingerprint(r.f)
	if err != nil {
		return err
	}
	cfg := &r.t.cfg
	var seed positions.Entry
	var seeded bool
	if e, ok := cfg.Positions.Get(r.key); ok && e.Fingerprint == fp {
		seed = e
	} else if e, ok := cfg.Positions.Lookup(r.origin, fp, r.key); ok {
		seed, seeded = e, true
		if seed.Origin == (positions.Key{}) {
			seed.Origin = e.Key
		}
	}
	idKey := seed.Origin
	if idKey == (positions.Key{}) {
		idKey = r.key
	}
	src := r.desc
	src.IDPrefix = idPrefix(idKey, fp, seed.Generation)
	off := seed.Offset
	size := seed.Size
	if fi, err := r.f.Stat(); err == nil {
		if n := gzSize(r.f, fi.Size()); n >= 0 {
			size = n // the trailer's: the uncompressed file may have grown after skiff saw it
		}
	}
	g := &generation{num: seed.Generation, fp: fp, src: &src, acked: off}
	entry := positions.Entry{Key: r.key, Fingerprint: fp, Generation: seed.Generation, Path: r.path,
		Offset: off, Size: size, Origin: seed.Origin}
	if r.origin != r.path {
		entry.Target = r.origin
	}
	if off > 0 {
		first, err := gzFirstLine(r.f, cfg.MaxLineBytes)
		if err != nil {
			return err
		}
		g.parser = cfg.NewParser(first, cfg.MaxLineBytes)
	}
	g.tracker = positions.NewTracker(cfg.Positions, entry)
	if cfg.Budget != nil {
		g.tracker.SetUncharge(cfg.Budget.releaseChunk)
	}
	if seeded {
		// The compressed file now stands for the uncompressed one, which is gone.
		cfg.Positions.Remove(seed.Key, fp)
		r.logger().Info("continuing a compressed rotated file where its uncompressed file was left", "offset", off)
	}
	r.g = g
	r.idFP.Store(fp)
	r.resetBuffer(off)
	r.size = 1 << 62 // unknown until the end: more is coming
	return nil
}

// readGz is the reader's read for a gzip file: decompressed bytes from r.off on. The stream is
// opened (and the bytes before r.off skipped) on first use and closed at its end, so that it
// is held only while the reader holds its budget. Damage ends the file: the readable part was
// read, the error is logged and counted (metrics.ReadErrors), and io.EOF is returned.
func (r *reader) readGz(p []byte) (int, error) {
	if r.gzDone {
		return 0, io.EOF
	}
	if r.gz == nil {
		z, err := openGz(r.f)
		if err != nil {
			return 0, r.gzFailed(err, 0)
		}
		r.gz = z
		if n, err := z.skip(r.off, p); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("decompressed content is %d bytes, shorter than the saved position", n)
			}
			return 0, r.gzFailed(err, n)
		}
	}
	n, err := r.gz.Read(p)
	if err == io.EOF {
		r.gzDone = true
		r.size = r.off + int64(n)
		r.t.cfg.Positions.SetSize(r.key, r.g.fp, r.g.num, r.size)
		r.gz.Close()
		r.gz = nil
		return n, io.EOF
	}
	if err != nil {
		return n, r.gzFailed(err, r.off+int64(n))
	}
	return n, nil
}

// gzFailed ends a gzip file that cannot be decompressed past the decompressed offset at.
func (r *reader) gzFailed(err error, at int64) error {
	var consumed int64
	if r.gz != nil {
		consumed = r.gz.consumed()
		r.gz.Close()
		r.gz = nil
	}
	var size int64
	if fi, serr := r.f.Stat(); serr == nil {
		size = fi.Size()
	}
	r.gzDone, r.gzDamaged = true, true
	r.size = at
	if r.g != nil {
		// All there is to read: a restart does not try again, nor counts the rest lost twice.
		r.t.cfg.Positions.SetSize(r.key, r.g.fp, r.g.num, at)
	}
	metrics.ReadErrors.WithLabelValues(r.t.cfg.Input).Inc()
	r.logger().Error("compressed rotated file is damaged: delivering what came before the damage and skipping the rest",
		"decompressed_offset", at, "compressed_bytes_unread", max(size-consumed, 0), "err", err)
	return io.EOF
}

// stepGz is step for a gzip file: it starts its generation, then reads it to its end (or its
// damage) in one go. A file whose header cannot be read is logged, counted and left.
func (r *reader) stepGz(ctx context.Context, handle handleFunc) error {
	r.now = time.Now()
	if r.g == nil {
		if r.gzDone {
			return nil
		}
		if err := r.beginGz(); err != nil {
			_ = r.gzFailed(err, 0)
			return nil
		}
	}
	return r.readToEOF(ctx, handle)
}
