package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/loggen"
)

// cmdBench measures the whole pipeline — tail → CRI parse → route → bulk encoding → HTTP POST —
// on generated CRI files (mean line ~317 B) into a blackhole _bulk endpoint that runs in a child
// process, so that only skiff's own CPU time and memory are counted. It prints one row per run
// and the medians.
//
// With --kube-dir DIR (a kube-apiserver started by `scripts/kube.sh start DIR`) it also enriches
// records with Kubernetes metadata: it fills the apiserver with --namespaces namespaces and --pods
// running pods on one node (kube_bench.go), writes one log file per pod in the kubelet layout,
// and runs the agent with kubernetes.enabled for that node. Each row then also tells how long
// the informers took to sync, the Go heap after the sync and how many files' pods were found.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizeText := fs.String("size", "1GiB", "total size of the generated CRI files")
	runs := fs.Int("runs", 3, "runs; the medians are reported")
	files := fs.Int("files", 1, "number of files the size is spread over (with --kube-dir: one per pod by default, or a multiple of --pods: that many containers per pod)")
	es := fs.String("es", "", "a real Elasticsearch URL instead of the blackhole")
	compression := fs.Bool("gzip", false, "gzip-compress bulk requests")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "skiff-bench"), "where the generated input is kept between runs")
	kubeDir := fs.String("kube-dir", "", "directory of a kube-apiserver started by scripts/kube.sh start DIR: enrich records from it")
	pods := fs.Int("pods", 500, "with --kube-dir: running pods on the node, one log file each")
	namespaces := fs.Int("namespaces", 200, "with --kube-dir: namespaces the pods are spread over")
	idle := fs.Bool("idle", false, "measure skiff's CPU with --files quiet files whose few lines were delivered, over --duration")
	latency := fs.Bool("latency", false, "measure line-to-bulk latency writing --rate lines/s over --files files for --duration")
	duration := fs.Duration("duration", 30*time.Second, "with --idle or --latency: how long to measure")
	rate := fs.Int("rate", 10000, "with --latency: lines per second written, in total")
	cpus := fs.Int("cpus", 0, "confine skiff to CPUs 0..N-1 with GOMAXPROCS=N (the blackhole child gets the other CPUs, if any); 0: all")
	memLimit := fs.String("memory-limit", "", "the agent's memory_limit (default: the configuration's default)")
	flushBytes := fs.String("flush-bytes", "", "the output's flush_bytes (default: the configuration's default)")
	workers := fs.Int("workers", 0, "the output's workers (0: the configuration's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of all runs to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file, taken when the first run has delivered half its records")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *idle || *latency {
		return benchExtraMode(*idle, *latency, *es, *files, *rate, *duration, stdout, stderr)
	}
	size, err := config.ParseByteSize(*sizeText)
	if err != nil {
		fmt.Fprintln(stderr, "skiff bench: --size:", err)
		return 2
	}
	if *kubeDir != "" {
		filesSet := false
		fs.Visit(func(f *flag.Flag) { filesSet = filesSet || f.Name == "files" })
		switch {
		case *pods < 1 || *namespaces < 1 || *namespaces > *pods:
			fmt.Fprintln(stderr, "skiff bench: want 1 <= --namespaces <= --pods")
			return 2
		case filesSet && (*files < *pods || *files%*pods != 0):
			fmt.Fprintln(stderr, "skiff bench: with --kube-dir, --files is a multiple of --pods (one file per container)")
			return 2
		case !filesSet:
			*files = *pods
		}
	}
	if *files < 1 || size < int64(*files) {
		fmt.Fprintln(stderr, "skiff bench: want 1 <= --files <= --size in bytes")
		return 2
	}
	inputDir := filepath.Join(*dir, fmt.Sprintf("cri-%d-%d", size, *files))
	lines, err := benchInput(inputDir, size, *files)
	if err != nil {
		fmt.Fprintln(stderr, "skiff bench:", err)
		return 1
	}
	mode := benchMode{glob: filepath.Join(inputDir, "*.log")}
	extra, err := benchTuning(*memLimit, *flushBytes, *workers)
	if err != nil {
		fmt.Fprintln(stderr, "skiff bench:", err)
		return 2
	}
	if *kubeDir != "" {
		kb, err := setupKubeBench(context.Background(), *kubeDir, inputDir, *dir, *pods, *namespaces, *files / *pods, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "skiff bench:", err)
			return 1
		}
		defer os.RemoveAll(kb.root)
		mode = kb.mode()
	}
	mode.tuning = extra
	url := *es
	childPID := 0
	if url == "" {
		child, u, err := startBlackhole()
		if err != nil {
			fmt.Fprintln(stderr, "skiff bench: blackhole:", err)
			return 1
		}
		defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
		url, childPID = u, child.Process.Pid
	}
	if *cpus != 0 {
		if err := confineBench(*cpus, childPID, stdout); err != nil {
			fmt.Fprintln(stderr, "skiff bench:", err)
			return 2
		}
	}
	prof := &benchProfiles{cpuPath: *cpuProfile, heapPath: *memProfile, out: stdout}
	if err := prof.start(); err != nil {
		fmt.Fprintln(stderr, "skiff bench:", err)
		return 1
	}
	defer prof.stop()
	fmt.Fprintf(stdout, "input: %d lines, %.0f MiB in %d file(s); output: %s (gzip=%v); GOMAXPROCS=%d\n", lines, float64(size)/(1<<20), *files, url, *compression, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "peak RSS before the runs: %.1f MiB\n", maxRSSMiB())
	header := fmt.Sprintf("%-6s %10s %8s %10s %7s %9s %8s %5s %7s", "run", "records/s", "MiB/s", "rec/CPU-s", "cpu-s", "heap0-MiB", "RSS-MiB", "GCs", "bh-cpu")
	if mode.kube {
		header += fmt.Sprintf(" %8s %12s %6s %8s", "sync-ms", "heapsync-MiB", "found", "missing")
	}
	fmt.Fprintln(stdout, header)
	var rps, mibs, rpc, syncs, heaps, rss []float64
	for run := 1; run <= *runs; run++ {
		bh0 := childCPUSeconds(childPID)
		r, err := benchRun(mode, url, lines, size, *compression, run, prof, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "skiff bench:", err)
			return 1
		}
		bh := -1.0
		if childPID != 0 && bh0 >= 0 {
			bh = childCPUSeconds(childPID) - bh0
		}
		row := fmt.Sprintf("%-6d %10.0f %8.1f %10.0f %7.2f %9.1f %8.1f %5d %7.2f", run, r.recPerSec, r.mibPerSec, r.recPerCPU, r.cpu, r.heapStart, r.peakRSS, r.gcs, bh)
		if mode.kube {
			row += fmt.Sprintf(" %8.0f %12.1f %6.0f %8.0f", r.syncMs, r.heapSynced, r.found, r.missing)
		}
		fmt.Fprintln(stdout, row)
		rps, mibs, rpc = append(rps, r.recPerSec), append(mibs, r.mibPerSec), append(rpc, r.recPerCPU)
		syncs, heaps, rss = append(syncs, r.syncMs), append(heaps, r.heapSynced), append(rss, r.peakRSS)
	}
	sum := fmt.Sprintf("%-6s %10.0f %8.1f %10.0f", "median", median(rps), median(mibs), median(rpc))
	if mode.kube {
		sum += fmt.Sprintf("   sync %.0f ms, heap after sync %.1f MiB", median(syncs), median(heaps))
	}
	fmt.Fprintf(stdout, "%s   peak RSS per run: median %.1f MiB, max %.1f MiB (whole process: %.1f MiB, with the input generation)\n",
		sum, median(rss), slices.Max(rss), maxRSSMiB())
	if err := prof.stop(); err != nil {
		fmt.Fprintln(stderr, "skiff bench:", err)
		return 1
	}
	return 0
}

// benchTuning is the configuration that sets memory_limit and the output's flush_bytes and
// workers when given (empty or 0: the defaults). Sizes are checked here so that a typo is a
// usage error.
func benchTuning(memLimit, flushBytes string, workers int) (benchTune, error) {
	var t benchTune
	if memLimit != "" {
		if _, err := config.ParseByteSize(memLimit); err != nil {
			return t, fmt.Errorf("--memory-limit: %w", err)
		}
		t.top = fmt.Sprintf("memory_limit: %s\n", memLimit)
	}
	if flushBytes != "" {
		if _, err := config.ParseByteSize(flushBytes); err != nil {
			return t, fmt.Errorf("--flush-bytes: %w", err)
		}
		t.output = fmt.Sprintf("    flush_bytes: %s\n", flushBytes)
	}
	if workers < 0 {
		return t, fmt.Errorf("--workers: must not be negative")
	}
	if workers > 0 {
		t.output += fmt.Sprintf("    workers: %d\n", workers)
	}
	return t, nil
}

// benchTune is configuration text for the top level and for the output.
type benchTune struct{ top, output string }

// apply inserts t into text, a benchConfigText whose output section ends before "http:".
func (t benchTune) apply(text string) string {
	return strings.Replace(text, "\nhttp:\n", "\n"+t.output+"http:\n", 1) + t.top
}

// confineBench pins this process (skiff) to CPUs 0..n-1 with GOMAXPROCS n, and the blackhole
// child (pid, unless 0) to the other CPUs, or to all when there are none left: on a machine
// with n CPUs the child then shares them, and its cpu-s column says how much it took.
func confineBench(n, child int, stdout io.Writer) error {
	all := runtime.NumCPU()
	if n < 1 || n > all {
		return fmt.Errorf("--cpus: want 1..%d", all)
	}
	if err := pinProcess(0, cpuMask(0, n)); err != nil {
		return err
	}
	runtime.GOMAXPROCS(n)
	where := "shares them"
	if child != 0 && n < all {
		if err := pinProcess(child, cpuMask(n, all)); err != nil {
			return err
		}
		where = fmt.Sprintf("runs on CPUs %d-%d", n, all-1)
	}
	fmt.Fprintf(stdout, "cpus: skiff on CPUs 0-%d (GOMAXPROCS=%d); the blackhole %s\n", n-1, n, where)
	return nil
}

// benchMode is what the runs read and how the agent is configured beyond the defaults.
type benchMode struct {
	// glob names the input files.
	glob string
	// kube is set when the agent enriches records; kubeYAML is then its kubernetes section.
	kube     bool
	kubeYAML string
	// tuning sets memory_limit and flush_bytes (benchTuning).
	tuning benchTune
}

// benchResult is one run's measurements. Heaps are the live Go heap in MiB after a GC:
// heapStart once the agent is built, heapSynced once it logged the Kubernetes cache synced.
// found and missing count the run's metadata lookups (one per file and cache change).
// peakRSS is the run's peak RSS in MiB (whole process, reset before the run when the kernel
// allows it) and gcs the garbage collections during the run.
type benchResult struct {
	recPerSec, mibPerSec, recPerCPU, cpu float64
	heapStart, heapSynced, syncMs        float64
	found, missing                       float64
	peakRSS                              float64
	gcs                                  uint32
}

func benchRun(mode benchMode, url string, lines int, size int64, gz bool, run int, prof *benchProfiles, stderr io.Writer) (benchResult, error) {
	data, err := os.MkdirTemp("", "skiff-bench-data-")
	if err != nil {
		return benchResult{}, err
	}
	defer os.RemoveAll(data)
	name := fmt.Sprintf("bench%d", run)
	text := mode.tuning.apply(benchConfigText(data, mode.glob, name, url, gz, mode.kubeYAML))
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		return benchResult{}, err
	}
	// Counters are read as differences, as cmdBench may run more than once in a process (tests).
	delivered := metrics.OutputRecords.WithLabelValues(name, "delivered")
	found, missing := metrics.KubeLookups.WithLabelValues("found"), metrics.KubeLookups.WithLabelValues("missing")
	delivered0, found0, missing0 := metrics.Value(delivered), metrics.Value(found), metrics.Value(missing)
	var res benchResult
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resetPeakRSS()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gc0 := ms.NumGC
	cpu0 := cpuSeconds()
	start := time.Now()
	watch := &syncWatch{}
	log := slog.New(benchLogHandler{next: newLogger(stderr, "warn").Handler(), watch: watch})
	errc := make(chan error, 1)
	go func() {
		errc <- runAgent(ctx, cfg, log, func(*agent.Agent) { res.heapStart = liveHeapMiB() })
	}()
	for metrics.Value(delivered)-delivered0 < float64(lines) {
		if metrics.Value(delivered)-delivered0 >= float64(lines/2) {
			if err := prof.heap(); err != nil {
				return benchResult{}, err
			}
		}
		select {
		case err := <-errc:
			return benchResult{}, fmt.Errorf("agent stopped early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	res.peakRSS = peakRSSMiB()
	runtime.ReadMemStats(&ms)
	res.gcs = ms.NumGC - gc0
	cancel()
	if err := <-errc; err != nil {
		return benchResult{}, err
	}
	res.recPerSec = float64(lines) / elapsed
	res.mibPerSec = float64(size) / (1 << 20) / elapsed
	res.recPerCPU = float64(lines) / cpu
	res.cpu = cpu
	if mode.kube {
		at, heap, ok := watch.get()
		if !ok {
			return benchResult{}, fmt.Errorf("the agent never logged %q", kubeSyncedMessage)
		}
		res.syncMs = float64(at.Sub(start).Microseconds()) / 1000
		res.heapSynced = heap
		res.found, res.missing = metrics.Value(found)-found0, metrics.Value(missing)-missing0
	}
	return res, nil
}

// benchConfigText is the agent configuration of a benchmark: the files of glob into the
// elasticsearch output name at url, with extra appended and the defaults otherwise.
func benchConfigText(data, glob, name, url string, gz bool, extra string) string {
	return fmt.Sprintf(`data_dir: %q
inputs:
  - name: bench
    paths: [%q]
outputs:
  - name: %s
    type: elasticsearch
    hosts: [%q]
    index: "skiff-bench-%%Y.%%m.%%d"
    compression: %v
http:
  listen: ""
%s`, data, glob, name, url, gz, extra)
}

// benchInput writes (once) CRI files totalling about size bytes with line lengths spread around
// a mean of ~317 bytes, deterministically, and returns the number of lines.
func benchInput(dir string, size int64, files int) (int, error) {
	countFile := filepath.Join(dir, "lines")
	if b, err := os.ReadFile(countFile); err == nil {
		var n int
		if _, err := fmt.Sscan(string(b), &n); err == nil {
			return n, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("GET POST /api/v1/items user=alice user=bob status=200 status=404 latency_ms=12 took=3.2ms error warning info debug payment order cart checkout request_id=5f1c9a trace=7a9b0c")
	total := 0
	t := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := 0; i < files; i++ {
		f, err := os.Create(filepath.Join(dir, benchFileName(i)))
		if err != nil {
			return 0, err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var written int64
		var line, msg []byte
		for written < size/int64(files) {
			msg = msg[:0]
			n := 100 + rng.IntN(330) // ~265 B of message + 36 B of CRI prefix ≈ 300–320 B lines
			for len(msg) < n {
				msg = append(msg, words[rng.IntN(len(words))]...)
				msg = append(msg, ' ')
			}
			stream := "stdout"
			if rng.IntN(10) == 0 {
				stream = "stderr"
			}
			t = t.Add(time.Microsecond * time.Duration(1+rng.IntN(1000)))
			line = loggen.AppendLine(line[:0], loggen.CRI, t, stream, string(msg), nil)
			if _, err := w.Write(line); err != nil {
				f.Close()
				return 0, err
			}
			written += int64(len(line))
			total++
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return total, os.WriteFile(countFile, []byte(fmt.Sprint(total)), 0o644)
}

// benchFileName is the name of benchInput's file i (in the /var/log/containers style).
func benchFileName(i int) string { return fmt.Sprintf("bench-%d_bench_app-%064d.log", i, i) }

// startBlackhole runs `skiff blackhole` (args, if any, instead) as a child process and returns
// its URL.
func startBlackhole(args ...string) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	if len(args) == 0 {
		args = []string{"blackhole"}
	}
	cmd := exec.Command(self, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, "", fmt.Errorf("no address from blackhole: %w", err)
	}
	return cmd, "http://" + strings.TrimSpace(addr), nil
}

// cmdBlackhole serves a _bulk endpoint that reads and discards every request and answers that all
// items were created. For benchmarks only: it is never evidence that shipping works.
func cmdBlackhole(stdout io.Writer) int { return serveBlackhole(stdout, blackholeHandler(nil)) }

// serveBlackhole serves h on a free loopback port whose address it prints first.
func serveBlackhole(stdout io.Writer, h http.Handler) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "blackhole:", err)
		return 1
	}
	fmt.Fprintln(stdout, ln.Addr().String())
	if err := http.Serve(ln, h); err != nil {
		fmt.Fprintln(os.Stderr, "blackhole:", err)
		return 1
	}
	return 0
}

// blackholeHandler is cmdBlackhole's endpoint. It discards request bodies, after passing those
// of _bulk requests to onBulk unless onBulk is nil.
func blackholeHandler(onBulk func(body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if onBulk != nil && strings.HasSuffix(r.URL.Path, "/_bulk") {
			body, _ := io.ReadAll(r.Body)
			onBulk(body)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_bulk"):
			_, _ = w.Write([]byte(`{"errors":false,"took":1,"items":[]}`))
		case r.URL.Path == "/":
			_, _ = w.Write([]byte(`{"version":{"number":"8.19.21","build_flavor":"default"},"tagline":"You Know, for Search"}`))
		default:
			_, _ = w.Write([]byte(`{"acknowledged":true}`))
		}
	})
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// maxRSSMiB is the peak resident set size of the whole process so far (getrusage maxrss).
func maxRSSMiB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// liveHeapMiB is the Go heap in use after a full GC, in MiB. It collects twice, as what
// sync.Pools held survives one collection (in their victim caches).
func liveHeapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
