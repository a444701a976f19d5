package tail

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"syscall"

	"github.com/skiff-logs/skiff/agent/positions"
)

// fingerprintBytes caps the bytes hashed for a file's fingerprint.
const fingerprintBytes = 256

// keyOf returns the (device, inode) identity of a stat result.
func keyOf(fi os.FileInfo) (positions.Key, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return positions.Key{}, false
	}
	return positions.Key{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, true //nolint:unconvert // types differ by platform
}

// statRegular stats name (following symlinks) and returns its identity if it is a regular file.
func statRegular(name string) (positions.Key, os.FileInfo, bool) {
	fi, err := os.Stat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return positions.Key{}, nil, false
	}
	k, ok := keyOf(fi)
	return k, fi, ok
}

// fingerprint hashes the file's bytes from 0 up to and including the first '\n', at most
// fingerprintBytes of them. ok is false while the fingerprint is not yet stable: no newline in
// a file shorter than fingerprintBytes.
func fingerprint(f *os.File) (fp uint64, ok bool, err error) {
	var buf [fingerprintBytes]byte
	n, err := f.ReadAt(buf[:], 0)
	if err != nil && err != io.EOF {
		return 0, false, fmt.Errorf("read fingerprint of %s: %w", f.Name(), err)
	}
	fp, ok = fingerprintOf(buf[:n])
	return fp, ok, nil
}

// fingerprintOf hashes b, the first bytes of a file (at most fingerprintBytes), up to and
// including its first '\n'. ok is false when b has no newline and is shorter than
// fingerprintBytes; fp is then the hash of all of b (the fingerprint of a complete file that
// will not grow, such as a compressed one).
func fingerprintOf(b []byte) (fp uint64, ok bool) {
	ok = true
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else if len(b) < fingerprintBytes {
		ok = false
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64(), ok
}

// idPrefix is the document-id prefix of one file generation: 16 lower-hex digits of FNV-64a
// over device, inode, fingerprint and generation.
func idPrefix(k positions.Key, fp uint64, gen uint32) string {
	var b [28]byte
	binary.LittleEndian.PutUint64(b[0:], k.Dev)
	binary.LittleEndian.PutUint64(b[8:], k.Ino)
	binary.LittleEndian.PutUint64(b[16:], fp)
	binary.LittleEndian.PutUint32(b[24:], gen)
	h := fnv.New64a()
	h.Write(b[:])
	const digits = "0123456789abcdef"
	v := h.Sum64()
	var out [16]byte
	for i := 15; i >= 0; i-- {
		out[i] = digits[v&0xf]
		v >>= 4
	}
	return string(out[:])
}

// firstLine reads the file's first line (without its '\n'), at most max bytes of it.
func firstLine(f *os.File, max int) ([]byte, error) {
	for size := 4096; ; size *= 4 {
		if size > max {
			size = max
		}
		b := make([]byte, size)
		n, err := f.ReadAt(b, 0)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read first line of %s: %w", f.Name(), err)
		}
		if i := bytes.IndexByte(b[:n], '\n'); i >= 0 {
			return b[:i], nil
		}
		if n < size || size == max {
			return b[:n], nil
		}
	}
}

// lastLineEnd returns the offset just after the last '\n' before size, looking back in 64 KiB
// reads until it passed max bytes: 0 when the file has no '\n' at all (its only line is read
// whole), size when none was found that far back (reading starts inside a line longer than
// max, which would be truncated anyway).
func lastLineEnd(f *os.File, size int64, max int) (int64, error) {
	const step = 64 << 10
	buf := make([]byte, step)
	end := size
	for end > 0 && size-end < int64(max) {
		start := end - step
		if start < 0 {
			start = 0
		}
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, fmt.Errorf("find last line of %s: %w", f.Name(), err)
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	if end == 0 {
		return 0, nil
	}
	return size, nil
}
