package elasticsearch

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// deadLetter is the store for documents Elasticsearch refused for good: one gzip file per output
// and UTC day, DataDir/deadletter/<name>-YYYYMMDD.json.gz, one JSON line per document. Workers
// share it; each write is one fsynced gzip member, so a written line survives a crash.
type deadLetter struct {
	dir, name string
	failures  *metrics.WriteFailures

	mu   sync.Mutex
	f    *gzipfile.File
	day  string
	path string
}

func deadLetterDir(dataDir string) string { return filepath.Join(dataDir, "deadletter") }

func newDeadLetter(dataDir, name string, log *slog.Logger) deadLetter {
	return deadLetter{dir: deadLetterDir(dataDir), name: name, failures: metrics.NewWriteFailures("elasticsearch_deadletter", log)}
}

// write appends lines (complete JSON lines) to the file of now's day and fsyncs it. It returns
// the file's path. On error (data_dir full, I/O error) nothing of lines is in the file (a failed
// member is cut off again, a file this call created is removed), the failure is counted and
// logged once per episode, and the caller must not acknowledge the documents.
func (d *deadLetter) write(now time.Time, lines []byte) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	day := now.UTC().Format("20060102")
	if d.f != nil && d.day != day {
		if err := d.f.Close(); err != nil {
			return d.path, fmt.Errorf("close dead-letter file %s: %w", d.path, err)
		}
		d.f = nil
	}
	if d.f == nil {
		path := filepath.Join(d.dir, d.name+"-"+day+".json.gz")
		f, err := gzipfile.Open(path)
		if err != nil {
			d.failures.Fail("cannot create the dead-letter file; the rejected documents are kept and retried", path, err)
			return path, fmt.Errorf("open dead-letter file %s: %w", path, err)
		}
		d.f, d.day, d.path = f, day, path
	}
	if err := d.f.WriteMember(lines); err != nil {
		// gzipfile cuts a torn member off again on the next write, or readers skip it.
		d.failures.Fail("cannot write the dead-letter file; the rejected documents are kept and retried", d.path, err)
		if d.f.Size() == 0 {
			// A file with no member yet: remove it rather than leave an empty gzip file.
			_ = d.f.Close()
			_ = os.Remove(d.path)
			d.f = nil
		}
		return d.path, fmt.Errorf("write dead-letter file %s: %w", d.path, err)
	}
	d.failures.OK(d.path)
	return d.path, nil
}

// close closes the open file, if any. Safe to call twice.
func (d *deadLetter) close(log *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return
	}
	if err := d.f.Close(); err != nil {
		log.Error("close dead-letter file", "path", d.path, "error", err)
	}
	d.f = nil
}
