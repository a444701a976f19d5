// Package gzipfile appends crash-safe gzip members to files: the file output, the fallback spool
// and the dead-letter store all write through it.
//
// A file is a sequence of complete gzip members (RFC 1952 allows any number), each written with
// one write and made durable with fsync before WriteMember returns. Any gzip reader reads the
// whole file as one stream. A crash or a failed write can leave a torn member at the end; Scan
// and ReadAll read every complete member, skip torn bytes (also ones a later Open appended
// after) and report that the file was not complete.
package gzipfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// Level is the compression level of new members. On 1 MiB of documents (BenchmarkCompress),
// klauspost/compress at level 1 ran about 2x faster than compress/gzip at level 1 and 10x faster
// than compress/gzip's default, with a ratio between the two; the file output compresses on its
// flushing goroutine, so speed is what matters.
const Level = gzip.BestSpeed

// ErrClosed is returned by WriteMember after Close.
var ErrClosed = errors.New("gzipfile: file closed")

// compressors and buffers are shared by all files: a compressor holds several hundred KiB of
// state, and a node may have hundreds of files open while only a few write at a time.
var (
	compressors = sync.Pool{New: func() any {
		zw, err := gzip.NewWriterLevel(nil, Level)
		if err != nil {
			panic(err) // Level is a valid constant
		}
		return zw
	}}
	buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// File is a gzip file open for appending. Every WriteMember adds one complete gzip member and
// fsyncs, so a crash leaves a file whose complete members all read back (a reader stops cleanly at
// a torn last member). Not safe for concurrent use.
type File struct {
	path string
	f    *os.File
	size int64
	// torn is set when a failed write could not be cut off again: the file's end may hold part
	// of a member, which the next WriteMember tries to remove first.
	torn bool
}

// Open opens (creating it and its directories if needed) path for appending. New directories
// are created with mode 0755 and a new file with 0644; the directory entries of everything it
// creates are fsynced, so a file that WriteMember made durable does not vanish in a crash.
func Open(path string) (*File, error) {
	if err := makeDirs(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open gzip file %s: %w", path, err)
	}
	created := true
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open gzip file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file")
	}
	if err == nil && created {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open gzip file %s: %w", path, err)
	}
	return &File{path: path, f: f, size: st.Size()}, nil
}

// makeDirs creates dir and its missing parents, and fsyncs the parent of each directory it
// created.
func makeDirs(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// WriteMember compresses p as one gzip member, appends it and fsyncs the file. When it returns
// nil, p is durable. When it fails (e.g. the disk is full), the file is cut back to its size
// before the call, so a later WriteMember of the same p neither loses nor duplicates anything;
// the caller keeps p and retries. An empty p writes nothing.
func (f *File) WriteMember(p []byte) error {
	if f.f == nil {
		return ErrClosed
	}
	if len(p) == 0 {
		return nil
	}
	if f.torn {
		if err := f.f.Truncate(f.size); err != nil {
			return fmt.Errorf("write gzip member to %s: cut torn member: %w", f.path, err)
		}
		f.torn = false
	}
	buf := buffers.Get().(*bytes.Buffer)
	defer buffers.Put(buf)
	buf.Reset()
	zw := compressors.Get().(*gzip.Writer)
	zw.Reset(buf)
	_, err := zw.Write(p)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	compressors.Put(zw)
	if err != nil {
		return fmt.Errorf("compress gzip member for %s: %w", f.path, err)
	}
	n, err := f.f.Write(buf.Bytes())
	if err == nil {
		// After a failed fsync the kernel may have dropped the pages, so the member is cut off
		// and written again rather than trusted.
		err = f.f.Sync()
	}
	if err != nil {
		if n > 0 {
			if terr := f.f.Truncate(f.size); terr != nil {
				f.torn = true
			}
		}
		return fmt.Errorf("write gzip member to %s: %w", f.path, err)
	}
	f.size += int64(n)
	return nil
}

// Size is the file's size in bytes after the last successful WriteMember.
func (f *File) Size() int64 { return f.size }

// Close closes the file. Safe to call twice; the second call returns nil.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	if err != nil {
		return fmt.Errorf("close gzip file %s: %w", f.path, err)
	}
	return nil
}
