package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/loggen"
)

// cmdBench measures the whole pipeline — tail → CRI parse → route → bulk encoding → HTTP POST —
// on a generated CRI file (mean line ~317 B) into a blackhole _bulk endpoint that runs in a child
// process, so that only skiff's own CPU time and memory are counted. It prints one row per run
// and the medians.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizeText := fs.String("size", "1GiB", "size of the generated CRI file")
	runs := fs.Int("runs", 3, "runs; the medians are reported")
	files := fs.Int("files", 1, "number of files the size is spread over")
	es := fs.String("es", "", "a real Elasticsearch URL instead of the blackhole")
	compression := fs.Bool("gzip", false, "gzip-compress bulk requests")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "skiff-bench"), "where the generated input is kept between runs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	size, err := config.ParseByteSize(*sizeText)
	if err != nil {
		fmt.Fprintln(stderr, "skiff bench: --size:", err)
		return 2
	}
	inputDir := filepath.Join(*dir, fmt.Sprintf("cri-%d-%d", size, *files))
	lines, err := benchInput(inputDir, size, *files)
	if err != nil {
		fmt.Fprintln(stderr, "skiff bench:", err)
		return 1
	}
	url := *es
	if url == "" {
		child, u, err := startBlackhole()
		if err != nil {
			fmt.Fprintln(stderr, "skiff bench: blackhole:", err)
			return 1
		}
		defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
		url = u
	}
	fmt.Fprintf(stdout, "input: %d lines, %.0f MiB in %d file(s); output: %s (gzip=%v)\n", lines, float64(size)/(1<<20), *files, url, *compression)
	fmt.Fprintf(stdout, "%-4s %12s %10s %14s %12s\n", "run", "records/s", "MiB/s", "rec/CPU-s", "cpu-s")
	var rps, mibs, rpc []float64
	for run := 1; run <= *runs; run++ {
		r, err := benchRun(inputDir, url, lines, size, *compression, run, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "skiff bench:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%-4d %12.0f %10.1f %14.0f %12.2f\n", run, r.recPerSec, r.mibPerSec, r.recPerCPU, r.cpu)
		rps, mibs, rpc = append(rps, r.recPerSec), append(mibs, r.mibPerSec), append(rpc, r.recPerCPU)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Fprintf(stdout, "median %10.0f %10.1f %14.0f   peak RSS %.1f MiB (whole process, all runs)\n",
		median(rps), median(mibs), median(rpc), float64(ru.Maxrss)/1024)
	return 0
}

type benchResult struct{ recPerSec, mibPerSec, recPerCPU, cpu float64 }

func benchRun(inputDir, url string, lines int, size int64, gz bool, run int, stderr io.Writer) (benchResult, error) {
	data, err := os.MkdirTemp("", "skiff-bench-data-")
	if err != nil {
		return benchResult{}, err
	}
	defer os.RemoveAll(data)
	name := fmt.Sprintf("bench%d", run)
	text := fmt.Sprintf(`data_dir: %q
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
`, data, filepath.Join(inputDir, "*.log"), name, url, gz)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		return benchResult{}, err
	}
	delivered := metrics.OutputRecords.WithLabelValues(name, "delivered")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cpu0 := cpuSeconds()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- runAgent(ctx, cfg, newLogger(stderr, "warn"), nil) }()
	for metrics.Value(delivered) < float64(lines) {
		select {
		case err := <-errc:
			return benchResult{}, fmt.Errorf("agent stopped early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	cancel()
	if err := <-errc; err != nil {
		return benchResult{}, err
	}
	return benchResult{
		recPerSec: float64(lines) / elapsed,
		mibPerSec: float64(size) / (1 << 20) / elapsed,
		recPerCPU: float64(lines) / cpu,
		cpu:       cpu,
	}, nil
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
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("bench-%d_bench_app-%064d.log", i, i)))
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

// startBlackhole runs `skiff blackhole` as a child process and returns its URL.
func startBlackhole() (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "blackhole")
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
func cmdBlackhole(stdout io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "blackhole:", err)
		return 1
	}
	fmt.Fprintln(stdout, ln.Addr().String())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	if err := http.Serve(ln, h); err != nil {
		fmt.Fprintln(os.Stderr, "blackhole:", err)
		return 1
	}
	return 0
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
