package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestErrno(t *testing.T) {
	// /dev/full answers every write with a real ENOSPC.
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	_, enospc := full.Write([]byte("x"))
	_, enoent := os.Open("/nonexistent/skiff-metrics-test")
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"write to /dev/full", enospc, "ENOSPC"},
		{"wrapped twice", fmt.Errorf("write spool: %w", fmt.Errorf("x: %w", enospc)), "ENOSPC"},
		{"quota", syscall.EDQUOT, "EDQUOT"},
		{"missing file", enoent, "ENOENT"},
		{"unnamed errno", syscall.Errno(250), "errno 250"},
		{"no errno", errors.New("plain"), ""},
		{"nil", nil, ""},
	} {
		if got := Errno(c.err); got != c.want {
			t.Errorf("%s: Errno(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
}

// TestWriteFailuresEpisode: a run of failures is counted each time and logged once (then once
// per WriteFailureLogEvery), with path and errno; the first success logs the recovery once,
// and the next failure starts a new episode.
func TestWriteFailuresEpisode(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriteFailures("test_component", slog.New(slog.NewTextHandler(&buf, nil)))
	c := DataDirWriteErrors.WithLabelValues("test_component")
	before := Value(c)
	err := fmt.Errorf("write x: %w", syscall.ENOSPC)

	w.OK("/d/x") // nothing failed: silent
	for range 5 {
		w.Fail("cannot write x", "/d/x", err)
	}
	if !w.Failing() {
		t.Error("Failing() = false after failures")
	}
	w.OK("/d/x")
	w.OK("/d/x")
	if w.Failing() {
		t.Error("Failing() = true after a success")
	}
	w.Fail("cannot write x", "/d/x", err)

	if got := Value(c) - before; got != 6 {
		t.Errorf("skiff_data_dir_write_errors_total{component=test_component} grew by %v, want 6", got)
	}
	log := buf.String()
	for _, c := range []struct {
		what string
		want int
	}{
		{"msg=\"cannot write x\"", 2},
		{"errno=ENOSPC", 2},
		{"path=/d/x", 3},
		{"msg=\"writing works again\"", 1},
		{"failures=5", 1},
	} {
		if n := strings.Count(log, c.what); n != c.want {
			t.Errorf("%q appears %d times in the log, want %d:\n%s", c.what, n, c.want, log)
		}
	}
}
