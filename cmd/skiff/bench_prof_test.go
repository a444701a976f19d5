package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestBenchProfiles runs `skiff bench` briefly with the profiling and confinement flags: the
// profiles are written, the run reports its own peak RSS, and --cpus confines the process.
func TestBenchProfiles(t *testing.T) {
	procs, memLimit := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		_ = pinProcess(0, cpuMask(0, runtime.NumCPU()))
		runtime.GOMAXPROCS(procs)
		debug.SetMemoryLimit(memLimit) // the agent set it from --memory-limit
	})
	es := httptest.NewServer(blackholeHandler(nil))
	defer es.Close()
	dir := t.TempDir()
	cpu, heap := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "heap.pprof")
	var stdout, stderr bytes.Buffer
	code := cmdBench([]string{"--size", "2MiB", "--files", "3", "--runs", "2", "--es", es.URL, "--dir", dir,
		"--cpus", "1", "--memory-limit", "4MiB", "--flush-bytes", "256KiB", "--cpuprofile", cpu, "--memprofile", heap}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		`(?m)^cpus: skiff on CPUs 0-0 \(GOMAXPROCS=1\)`,
		`(?m)^memory now: RSS [0-9.]+ MiB \(anonymous [0-9.]+, file-backed [0-9.]+\); Go: live heap`,
		`(?m)^2 +\d+ .* [0-9.]+ +\d+ +-?[0-9.]+$`,
		`(?m)^median .* peak RSS per run: median [0-9.]+ MiB, max [0-9.]+ MiB`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %s:\n%s", want, out)
		}
	}
	if runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("GOMAXPROCS %d after --cpus 1", runtime.GOMAXPROCS(0))
	}
	for _, p := range []string{cpu, heap} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v (size %d)", p, err, fi.Size())
		}
	}
}

func TestBenchTuning(t *testing.T) {
	tests := []struct {
		memLimit, flush string
		workers         int
		wantErr         bool
		wantTop, wantIn string
	}{
		{"", "", 0, false, "", ""},
		{"8MiB", "1MiB", 0, false, "memory_limit: 8MiB\n", "    flush_bytes: 1MiB\n"},
		{"", "1MiB", 4, false, "", "    flush_bytes: 1MiB\n    workers: 4\n"},
		{"8 apples", "", 0, true, "", ""},
		{"", "-", 0, true, "", ""},
		{"", "", -1, true, "", ""},
	}
	for _, tt := range tests {
		tune, err := benchTuning(tt.memLimit, tt.flush, tt.workers)
		if (err != nil) != tt.wantErr {
			t.Errorf("benchTuning(%q, %q) error %v", tt.memLimit, tt.flush, err)
			continue
		}
		if tune.top != tt.wantTop || tune.output != tt.wantIn {
			t.Errorf("benchTuning(%q, %q) = %+v", tt.memLimit, tt.flush, tune)
		}
		text := tune.apply(benchConfigText("/d", "/x/*.log", "o", "http://es", false, ""))
		if tt.wantIn != "" && !bytes.Contains([]byte(text), []byte("compression: false\n"+tt.wantIn+"http:\n")) {
			t.Errorf("flush_bytes not in the output section:\n%s", text)
		}
	}
}
