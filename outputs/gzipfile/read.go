package gzipfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
)

// magic starts every gzip member written by this package (ID1, ID2, CM=deflate).
var magic = []byte{0x1f, 0x8b, 0x08}

// Scan reads the gzip file at path member by member, in order, and calls fn with the
// decompressed content of each complete member (valid header, deflate data and CRC-32/size
// trailer) and the file offset just after it. data is valid only during the call.
//
// Bytes that are not part of a complete member (a member torn by a crash or a failed write) are
// skipped: Scan looks for the next member start after them, so a torn member never hides the
// members before or after it. complete is false when any bytes were skipped; the offset passed
// to fn lets a caller resume or truncate. err is an I/O error, or the first error fn returns,
// which stops the scan.
func Scan(path string, fn func(data []byte, end int64) error) (complete bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("scan gzip file: %w", err)
	}
	defer f.Close()
	s := scanner{f: f, cr: countingReader{r: f}}
	s.br = bufio.NewReaderSize(&s.cr, 64<<10)
	complete, err = s.run(fn)
	if err != nil {
		return false, fmt.Errorf("scan gzip file %s: %w", path, err)
	}
	return complete, nil
}

// ReadAll calls fn for every line of every complete member of the gzip file at path, without
// the trailing newline (a member's last line may lack one). line is valid only during the call.
// complete and err are as for Scan.
func ReadAll(path string, fn func(line []byte) error) (complete bool, err error) {
	return Scan(path, func(data []byte, _ int64) error {
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				return fn(data)
			}
			if err := fn(data[:i]); err != nil {
				return err
			}
			data = data[i+1:]
		}
		return nil
	})
}

// countingReader counts the bytes read from the file and remembers read errors, so that the
// scanner knows its exact position and can tell a broken file (a format error) from a failing
// disk.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

type scanner struct {
	f   *os.File
	cr  countingReader
	br  *bufio.Reader
	zr  gzip.Reader
	buf []byte
}

// pos is the offset of the next byte the gzip reader will consume. The gzip reader reads
// through br with ReadByte, so it never consumes past the end of a member.
func (s *scanner) pos() int64 { return s.cr.n - int64(s.br.Buffered()) }

func (s *scanner) seek(off int64) error {
	if _, err := s.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	s.cr.n = off
	s.br.Reset(&s.cr)
	return nil
}

func (s *scanner) run(fn func([]byte, int64) error) (bool, error) {
	complete := true
	for {
		start := s.pos()
		if _, err := s.br.Peek(1); err != nil {
			if s.cr.err != nil {
				return false, s.cr.err
			}
			return complete, nil // clean end of file
		}
		data, err := s.member()
		if s.cr.err != nil {
			return false, s.cr.err
		}
		if err == nil {
			if err := fn(data, s.pos()); err != nil {
				return false, err
			}
			continue
		}
		complete = false
		next, found, err := s.findMagic(start + 1)
		if err != nil {
			return false, err
		}
		if !found {
			return false, nil
		}
		if err := s.seek(next); err != nil {
			return false, err
		}
	}
}

// member decompresses one member at the current position into s.buf.
func (s *scanner) member() ([]byte, error) {
	if err := s.zr.Reset(s.br); err != nil {
		return nil, err
	}
	s.zr.Multistream(false)
	s.buf = s.buf[:0]
	for {
		if len(s.buf) == cap(s.buf) {
			s.buf = append(s.buf, 0)[:len(s.buf)]
		}
		n, err := s.zr.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if err == io.EOF {
			return s.buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// findMagic returns the offset of the first member start at or after off.
func (s *scanner) findMagic(off int64) (int64, bool, error) {
	chunk := make([]byte, 64<<10)
	for {
		n, err := s.f.ReadAt(chunk, off)
		if i := bytes.Index(chunk[:n], magic); i >= 0 {
			return off + int64(i), true, nil
		}
		if errors.Is(err, io.EOF) || n < len(magic) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		off += int64(n - len(magic) + 1) // a start may straddle the chunk boundary
	}
}
