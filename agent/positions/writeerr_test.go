package positions

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-logs/skiff/agent/metrics"
)

// TestStoreWriteErrorKeepsStateAndRecovers: while the positions file cannot be written (its
// directory is gone), Flush fails every time, each failure is counted, the episode is logged
// once, and the changes stay pending; once writing works the next Flush saves the latest
// state and says so.
func TestStoreWriteErrorKeepsStateAndRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var logs strings.Builder
	s, err := Open(filepath.Join(dir, FileName), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	k := Key{Dev: 1, Ino: 2}
	s.Put(Entry{Key: k, Fingerprint: 3, Path: "/var/log/a.log"})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	errs := metrics.DataDirWriteErrors.WithLabelValues("positions")
	before := metrics.Value(errs)
	for off := int64(10); off <= 30; off += 10 {
		s.Commit(k, 3, 0, off)
		if err := s.Flush(); err == nil {
			t.Fatalf("Flush with the directory gone succeeded")
		}
	}
	if got := metrics.Value(errs) - before; got != 3 {
		t.Errorf("skiff_data_dir_write_errors_total{component=positions} grew by %v, want 3", got)
	}
	if n := strings.Count(logs.String(), "cannot write the positions file"); n != 1 {
		t.Errorf("the episode of 3 failures was logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "errno=ENOENT") || !strings.Contains(logs.String(), "path="+filepath.Join(dir, FileName)) {
		t.Errorf("the log names neither errno nor path:\n%s", logs.String())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush after the repair: %v", err)
	}
	if !strings.Contains(logs.String(), "writing works again") {
		t.Errorf("the log does not say writing recovered:\n%s", logs.String())
	}
	r, err := Open(filepath.Join(dir, FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := r.Get(k); !ok || e.Offset != 30 {
		t.Errorf("reopened: entry %+v (found %v), want offset 30", e, ok)
	}
}
