package elasticsearch

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// spoolSuffix ends every spool file name: <unix-nanos>.ndjson.gz.
const spoolSuffix = ".ndjson.gz"

// spool is an output's fallback spool: DataDir/spool/<name>/<unix-nanos>.ndjson.gz, each file a
// sequence of gzip members, each member the bulk lines (action and document) of the items one
// worker gave up sending. Workers append to the current file; the replayer seals it (later writes
// open a new file) before reading the files in name order, which is creation order.
type spool struct {
	dir, corrupt, name string
	max                int64
	log                *slog.Logger

	mu       sync.Mutex
	f        *gzipfile.File
	last     int64 // unix nanos of the newest file name, so that names keep increasing
	bytes    int64 // total size of the spool files
	files    int
	full     bool
	bytesG   *metrics.Gauge
	filesG   *metrics.Gauge
	fullG    *metrics.Gauge
	records  *metrics.Counter
	replayed *metrics.Counter
	failures *metrics.WriteFailures
}

func newSpool(dataDir, name string, max int64, log *slog.Logger) *spool {
	root := filepath.Join(dataDir, "spool")
	return &spool{
		dir: filepath.Join(root, name), corrupt: filepath.Join(root, "corrupt"), name: name, max: max, log: log,
		bytesG:   metrics.SpoolBytes.WithLabelValues(name),
		filesG:   metrics.SpoolFiles.WithLabelValues(name),
		fullG:    metrics.SpoolFull.WithLabelValues(name),
		records:  metrics.SpoolRecords.WithLabelValues(name),
		replayed: metrics.ReplayedRecords.WithLabelValues(name),
		failures: metrics.NewWriteFailures("elasticsearch_spool", log),
	}
}

// load counts the spool files left by an earlier run.
func (s *spool) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths, err := spoolFiles(s.dir)
	if err != nil {
		return err
	}
	s.bytes, s.files = 0, 0
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			s.bytes += fi.Size()
			s.files++
		}
	}
	s.updateLocked()
	return nil
}

// spoolFiles lists the spool files of dir, oldest first. A missing dir has none.
func spoolFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list spool %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), spoolSuffix) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	// Names are decimal nanoseconds of the same width for centuries: name order is age order.
	slices.Sort(out)
	return out, nil
}

// write appends data (complete bulk lines of n items) as one fsynced gzip member. It returns false
// without writing when the spool is full, and false when the write failed (data_dir full, I/O
// error): then nothing of data is in the spool (gzipfile cuts a failed member off again, and a
// file this call created is removed), the failure is counted and logged once per episode
// (metrics.WriteFailures), and the caller keeps the items and retries Elasticsearch, so they are
// not acknowledged. The error result is always nil; it is kept for callers that log it.
func (s *spool) write(data []byte, n int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes >= s.max {
		if !s.full {
			s.full = true
			s.log.Error("fallback spool is full: no longer acknowledging; sending blocks until Elasticsearch takes the spool back",
				"output", s.name, "bytes", s.bytes, "spool_max_bytes", s.max, "dir", s.dir)
			s.updateLocked()
		}
		return false, nil
	}
	created := false
	if s.f == nil {
		now := max(time.Now().UnixNano(), s.last+1)
		path := filepath.Join(s.dir, strconv.FormatInt(now, 10)+spoolSuffix)
		f, err := gzipfile.Open(path)
		if err != nil {
			s.failures.Fail("cannot create a fallback spool file; the items stay unacknowledged and Elasticsearch is retried", path, err)
			return false, nil
		}
		s.f, s.last, created = f, now, true
		s.files++
	}
	before := s.f.Size()
	if err := s.f.WriteMember(data); err != nil {
		path := s.f.Path()
		s.failures.Fail("cannot write to the fallback spool; the items stay unacknowledged and Elasticsearch is retried", path, err)
		// The next write starts a new file: this one may end in bytes that could not be cut off.
		s.closeLocked()
		if created && before == 0 {
			// Nothing complete in it: do not leave an empty file for the replayer.
			if rerr := os.Remove(path); rerr == nil {
				s.files--
			}
		}
		s.updateLocked()
		return false, nil
	}
	s.failures.OK(s.f.Path())
	s.bytes += s.f.Size() - before
	s.records.Add(float64(n))
	s.updateLocked()
	return true, nil
}

// seal closes the current file, so that later writes go to a new one, and returns the files to
// replay, oldest first: all of them, none still open for writing.
func (s *spool) seal() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	return spoolFiles(s.dir)
}

// empty reports whether the spool holds no file.
func (s *spool) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files == 0
}

// remove deletes a replayed file; to is where it goes instead when it is not empty ("" deletes).
func (s *spool) remove(path, to string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat spool file %s: %w", path, err)
	}
	if to == "" {
		err = os.Remove(path)
	} else if err = os.MkdirAll(filepath.Dir(to), 0o755); err == nil {
		err = os.Rename(path, to)
	}
	if err != nil {
		return fmt.Errorf("remove spool file %s: %w", path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes -= fi.Size()
	s.files--
	if s.full && s.bytes < s.max {
		s.full = false
		s.log.Info("fallback spool has room again", "output", s.name, "bytes", s.bytes)
	}
	s.updateLocked()
	return nil
}

func (s *spool) updateLocked() {
	s.bytesG.Set(float64(s.bytes))
	s.filesG.Set(float64(s.files))
	full := 0.0
	if s.full {
		full = 1
	}
	s.fullG.Set(full)
}

func (s *spool) closeLocked() {
	if s.f == nil {
		return
	}
	if err := s.f.Close(); err != nil {
		s.log.Error("close spool file", "output", s.name, "path", s.f.Path(), "error", err)
	}
	s.f = nil
}

// close closes the current file.
func (s *spool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}
