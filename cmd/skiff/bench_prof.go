package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// benchProfiles are the optional profiles of `skiff bench`: a CPU profile over every run, and
// a heap profile taken once, in the first run, when half of its records were delivered (so
// that it shows the pipeline under load, not the harness).
type benchProfiles struct {
	cpuPath, heapPath string
	// out receives the memory breakdown printed with the heap profile.
	out      io.Writer
	cpuFile  *os.File
	heapDone bool
}

// start begins the CPU profile, if one was asked for, and samples allocations finely when a
// heap profile was (the default rate, one sample per 512 KiB, hides the per-file state).
func (p *benchProfiles) start() error {
	if p.heapPath != "" {
		runtime.MemProfileRate = 16 << 10
	}
	if p.cpuPath == "" {
		return nil
	}
	f, err := os.Create(p.cpuPath)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	p.cpuFile = f
	return nil
}

// stop ends the CPU profile.
func (p *benchProfiles) stop() error {
	if p.cpuFile == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := p.cpuFile.Close()
	p.cpuFile = nil
	return err
}

// heap writes the heap profile, once. It collects first, so that the profile's in-use figures
// are the live heap of this moment.
func (p *benchProfiles) heap() error {
	if p.heapPath == "" || p.heapDone {
		return nil
	}
	p.heapDone = true
	runtime.GC()
	runtime.GC() // what sync.Pools held survives one collection
	f, err := os.Create(p.heapPath)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	if p.out != nil {
		printMemoryBreakdown(p.out)
	}
	return f.Close()
}

// printMemoryBreakdown prints where the process's resident memory is now: the Go runtime's
// classes (runtime.MemStats) and the kernel's split of RSS into anonymous and file-backed
// (the binary's text and data) pages.
func printMemoryBreakdown(w io.Writer) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	mib := func(n uint64) float64 { return float64(n) / (1 << 20) }
	rss, anon := smapsRollup()
	fmt.Fprintf(w, "memory now: RSS %.1f MiB (anonymous %.1f, file-backed %.1f); Go: live heap %.1f, heap in use %.1f, heap free not returned %.1f, stacks %.1f, runtime metadata %.1f, GC goal %.1f MiB\n",
		rss, anon, rss-anon, mib(m.HeapAlloc), mib(m.HeapInuse), mib(m.HeapIdle-m.HeapReleased), mib(m.StackInuse),
		mib(m.MSpanInuse+m.MCacheInuse+m.GCSys+m.OtherSys+m.BuckHashSys), mib(m.NextGC))
}

// smapsRollup returns the process's RSS and its anonymous part in MiB (0, 0 without /proc).
func smapsRollup() (rss, anon float64) {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			rss = v / 1024
		case "Anonymous:":
			anon = v / 1024
		}
	}
	return rss, anon
}

// resetPeakRSS gives freed memory back to the kernel and resets the process's peak RSS
// (VmHWM), so that peakRSSMiB measures one run and not the input generation or earlier runs.
// It reports false where the kernel does not allow it (then peakRSSMiB is the process's).
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSSMiB is the process's peak RSS since the last resetPeakRSS (VmHWM), or getrusage's
// maxrss when /proc is not there.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	return maxRSSMiB()
}

// cpuMask is a CPU affinity mask of CPUs [from, to).
func cpuMask(from, to int) []uint64 {
	m := make([]uint64, (runtime.NumCPU()+63)/64+1)
	for c := from; c < to; c++ {
		m[c/64] |= 1 << (c % 64)
	}
	return m
}

// pinProcess sets the CPU affinity of every thread of process pid (0: this one) to mask.
// Threads created later inherit their creator's affinity, so the whole process stays on mask.
func pinProcess(pid int, mask []uint64) error {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	// Threads may start while we set the others: repeat until a pass finds none new.
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("pin cpus: %w", err)
		}
		fresh := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid),
				uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
			if errno != 0 && errno != syscall.ESRCH {
				return fmt.Errorf("pin cpus: sched_setaffinity %d: %w", tid, errno)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

// childCPUSeconds is the user+system CPU time of process pid so far (/proc/pid/stat, in
// clock ticks of 1/100 s), or -1 when it cannot be read.
func childCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (u + s) / 100
}
