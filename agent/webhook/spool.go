package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
)

// errSpoolFull is returned by append when the spool holds its maximum: the request is answered
// 503 and the apiserver retries it later.
var errSpoolFull = errors.New("webhook: spool is full")

// spoolExt ends every spool file's name; the tail input reads <dir>/*.log.
const spoolExt = ".log"

// spool appends batches of lines to the current spool file, one write and one fsync per batch,
// and rotates to a new file by size and age. It is safe for concurrent use; appends are
// serialised.
//
// A file is named after the Unix time in nanoseconds it was created at, so names sort in
// creation order and are never reused. A file is created empty, its directory fsynced, then
// written; the tail reader starts a file only once its first line is complete.
type spool struct {
	dir       string
	fileBytes int64
	fileAge   time.Duration
	maxBytes  int64
	log       *slog.Logger
	now       func() time.Time
	bytesG    *metrics.Gauge
	filesG    *metrics.Gauge
	failures  *metrics.WriteFailures

	mu     sync.Mutex
	f      *os.File
	cur    string // path of the current file; "" when none is open
	size   int64  // bytes written to the current file
	opened time.Time
	last   int64 // the Unix nanoseconds of the newest name used
	total  int64 // bytes in the spool's files
	files  int
}

// openSpool creates dir if needed and repairs what a crash may have left: a file whose last line
// has no '\n' was being written when the process died (that request was never answered 200), so
// the partial line is cut off; a file left empty is removed. No file is current afterwards: the
// first append starts a new one. It must run before the tail reader opens the files.
func openSpool(dir string, fileBytes, maxBytes int64, fileAge time.Duration, log *slog.Logger, bytesG, filesG *metrics.Gauge) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool %s: %w", dir, err)
	}
	s := &spool{
		dir: dir, fileBytes: fileBytes, fileAge: fileAge, maxBytes: maxBytes,
		log: log, now: time.Now, bytesG: bytesG, filesG: filesG,
		failures: metrics.NewWriteFailures("webhook_spool", log),
	}
	names, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		size, err := repair(name, log)
		if err != nil {
			return nil, err
		}
		if size < 0 {
			log.Warn("removed an empty spool file", "path", name)
			continue
		}
		s.total += size
		s.files++
	}
	s.bytesG.Set(float64(s.total))
	s.filesG.Set(float64(s.files))
	return s, nil
}

// list returns the spool files' paths, oldest first.
func (s *spool) list() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list spool %s: %w", s.dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), spoolExt) {
			out = append(out, filepath.Join(s.dir, e.Name()))
		}
	}
	return out, nil // ReadDir sorts by name
}

// repair cuts a partial last line off the file at path and returns its size after that, or -1
// when it removed the file because nothing complete was left.
func repair(path string, log *slog.Logger) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("repair spool file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("repair spool file: %w", err)
	}
	size := fi.Size()
	end := size
	if size > 0 {
		if end, err = completeEnd(f, size); err != nil {
			return 0, fmt.Errorf("repair spool file %s: %w", path, err)
		}
	}
	if end == 0 {
		if err := os.Remove(path); err != nil {
			return 0, fmt.Errorf("repair spool file: %w", err)
		}
		return -1, nil
	}
	if end < size {
		if err := f.Truncate(end); err != nil {
			return 0, fmt.Errorf("repair spool file: cut a partial line: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("repair spool file: %w", err)
		}
		log.Warn("cut a partial line off a spool file: a write was interrupted and never acknowledged",
			"path", path, "bytes", size-end)
	}
	return end, nil
}

// completeEnd returns the offset just after the last '\n' of the file, 0 when it has none.
func completeEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// append writes data, whole lines, to the current file with one write, then fsyncs it; when it
// returns nil the lines are durable. A file that is full (fileBytes) or old (fileAge) is closed
// first and a new one started; a batch larger than fileBytes still goes into one file whole.
//
// The space for data is reserved first (fallocate, keeping the file's size): when the
// filesystem is full that fails before anything is written, the file stays current and
// complete, and the request is answered 500 for the apiserver to retry. When the write or the
// fsync fails after all (an I/O error, or a filesystem without fallocate), the file is closed
// and never written again (the next append starts a new one): it may end in a partial line,
// which its reader waits on and the next start cuts off (openSpool); the janitor leaves it
// alone until then, since its position never reaches its size. Failures are counted in
// metrics.DataDirWriteErrors{component="webhook_spool"} and logged once per episode.
func (s *spool) append(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxBytes > 0 && s.total+int64(len(data)) > s.maxBytes && s.total > 0 {
		return errSpoolFull
	}
	now := s.now()
	if s.f != nil && (s.size+int64(len(data)) > s.fileBytes || now.Sub(s.opened) >= s.fileAge) {
		s.closeCurrent()
	}
	if s.f == nil {
		if err := s.create(now); err != nil {
			return err
		}
	}
	if err := reserve(s.f, s.size, int64(len(data))); err != nil {
		s.failures.Fail("cannot reserve room in the audit webhook spool: nothing was written, "+
			"the request is answered 500 and the apiserver retries it", s.cur, err)
		return fmt.Errorf("write spool %s: %w", s.cur, err)
	}
	n, err := s.f.Write(data)
	s.size += int64(n)
	s.total += int64(n)
	s.bytesG.Add(float64(n))
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		s.failures.Fail("audit webhook spool write failed: the request is answered 500 and the apiserver "+
			"retries it; this file is written no more", s.cur, err)
		s.closeCurrent()
		return fmt.Errorf("write spool: %w", err)
	}
	s.failures.OK(s.cur)
	return nil
}

// reserve allocates n bytes of f from offset off without changing its size, so that a write
// of those bytes cannot fail for want of space. A filesystem without fallocate reserves
// nothing and returns nil: the write then finds out.
func reserve(f *os.File, off, n int64) error {
	const keepSize = 0x01 // FALLOC_FL_KEEP_SIZE
	for {
		err := syscall.Fallocate(int(f.Fd()), keepSize, off, n)
		switch {
		case err == nil:
			return nil
		case err == syscall.EINTR:
			continue
		case err == syscall.EOPNOTSUPP || err == syscall.ENOSYS:
			return nil
		}
		return fmt.Errorf("reserve %d bytes: %w", n, err)
	}
}

// create starts a new current file. Called with s.mu held.
func (s *spool) create(now time.Time) error {
	n := max(now.UnixNano(), s.last+1)
	for {
		name := filepath.Join(s.dir, fmt.Sprintf("%020d", n)+spoolExt)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if errors.Is(err, os.ErrExist) {
			n++
			continue
		}
		if err != nil {
			return fmt.Errorf("create spool file: %w", err)
		}
		if err := syncDir(s.dir); err != nil {
			_ = f.Close()
			_ = os.Remove(name)
			return fmt.Errorf("create spool file: %w", err)
		}
		s.f, s.cur, s.size, s.opened, s.last = f, name, 0, now, n
		s.files++
		s.filesG.Inc()
		return nil
	}
}

// closeCurrent closes the current file; it becomes one the janitor may delete. Called with
// s.mu held.
func (s *spool) closeCurrent() {
	if s.f == nil {
		return
	}
	if err := s.f.Close(); err != nil {
		s.log.Warn("close spool file", "path", s.cur, "err", err)
	}
	s.f, s.cur = nil, ""
}

// rotateIdle closes the current file when it is older than fileAge, so that an input that
// stopped receiving leaves no file behind once its events are delivered.
func (s *spool) rotateIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.now().Sub(s.opened) >= s.fileAge {
		s.closeCurrent()
	}
}

// current returns the path of the current file, "" when none is open.
func (s *spool) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// close closes the current file (at shutdown).
func (s *spool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeCurrent()
}

// removed accounts for a file the janitor deleted.
func (s *spool) removed(size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total -= size
	s.files--
	s.bytesG.Sub(float64(size))
	s.filesG.Dec()
}

// sweep deletes every spool file that is not the current one and whose position in store is
// its size: every line of it was delivered (or deliberately dropped) downstream. A file the
// store does not know, or knows at a smaller offset, is kept. It returns the number of files
// deleted.
func (s *spool) sweep(store *positions.Store) int {
	s.rotateIdle()
	names, err := s.list()
	if err != nil {
		s.log.Warn("spool janitor", "err", err)
		return 0
	}
	cur := s.current()
	deleted := 0
	for _, name := range names {
		if name == cur {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		key, ok := statKey(fi)
		if !ok {
			continue
		}
		size := fi.Size()
		if size > 0 {
			e, known := store.Get(key)
			// The path check guards against an entry of a deleted file whose inode was reused.
			if !known || e.Path != name || e.Offset < size {
				continue
			}
		}
		if err := os.Remove(name); err != nil {
			s.log.Warn("spool janitor: cannot delete a delivered file", "path", name, "err", err)
			continue
		}
		s.removed(size)
		deleted++
	}
	if deleted > 0 {
		if err := syncDir(s.dir); err != nil {
			s.log.Warn("spool janitor", "err", err)
		}
	}
	return deleted
}

// statKey returns the file's identity as the positions store keys it.
func statKey(fi os.FileInfo) (positions.Key, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return positions.Key{}, false
	}
	return positions.Key{Dev: uint64(st.Dev), Ino: st.Ino}, true //nolint:unconvert // Dev's type differs by platform
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
