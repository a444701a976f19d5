package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/loggen"
)

// latencyMarker precedes the write time (Unix nanoseconds) in the messages of `skiff bench
// --latency`; the blackhole started with --latency looks for it in every _bulk body.
const latencyMarker = "skiff-latency-probe t="

// latencyPath is where a latency blackhole serves its latencyReport as JSON.
const latencyPath = "/_skiff/latency"

// benchAgent is an agent run by the idle and latency modes: its output's delivered counter and
// how it ended.
type benchAgent struct {
	cancel    context.CancelFunc
	errc      chan error
	delivered func() float64
}

// startBenchAgent runs the agent on the files of glob into url with the defaults otherwise.
func startBenchAgent(glob, url, name string, stderr io.Writer) (*benchAgent, func(), error) {
	data, err := os.MkdirTemp("", "skiff-bench-data-")
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Parse([]byte(benchConfigText(data, glob, name, url, false, "")))
	if err != nil {
		os.RemoveAll(data)
		return nil, nil, err
	}
	c := metrics.OutputRecords.WithLabelValues(name, "delivered")
	base := metrics.Value(c)
	ctx, cancel := context.WithCancel(context.Background())
	a := &benchAgent{cancel: cancel, errc: make(chan error, 1), delivered: func() float64 { return metrics.Value(c) - base }}
	go func() { a.errc <- runAgent(ctx, cfg, newLogger(stderr, "warn"), nil) }()
	return a, func() { os.RemoveAll(data) }, nil
}

// waitDelivered waits until n records were delivered, the agent stopped or timeout passed.
func (a *benchAgent) waitDelivered(n float64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for a.delivered() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%.0f of %.0f records delivered after %v", a.delivered(), n, timeout)
		}
		select {
		case err := <-a.errc:
			a.errc <- err
			return fmt.Errorf("agent stopped early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// stop cancels the agent and waits for it to drain.
func (a *benchAgent) stop() error {
	a.cancel()
	return <-a.errc
}

// writeQuietFiles creates files CRI files of lines short lines each in dir and returns their
// paths' glob.
func writeQuietFiles(dir string, files, lines int) (string, error) {
	t := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	var line []byte
	for i := range files {
		line = line[:0]
		for j := range lines {
			line = loggen.AppendLine(line, loggen.CRI, t.Add(time.Duration(j)*time.Millisecond), "stdout", fmt.Sprintf("starting worker %d of file %d", j, i), nil)
		}
		if err := os.WriteFile(filepath.Join(dir, benchFileName(i)), line, 0o644); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "*.log"), nil
}

// benchIdle measures skiff's CPU over duration with files quiet files whose few lines were
// all delivered already.
func benchIdle(url string, files int, duration time.Duration, stdout, stderr io.Writer) error {
	const linesPerFile = 3
	dir, err := os.MkdirTemp("", "skiff-bench-idle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	glob, err := writeQuietFiles(dir, files, linesPerFile)
	if err != nil {
		return err
	}
	start := time.Now()
	a, cleanup, err := startBenchAgent(glob, url, "benchidle", stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	total := float64(files * linesPerFile)
	if err := a.waitDelivered(total, time.Minute); err != nil {
		_ = a.stop()
		return err
	}
	fmt.Fprintf(stdout, "idle: %d files, %.0f lines delivered in %.2fs; now no writes for %v\n", files, total, time.Since(start).Seconds(), duration)
	cpu0, t0 := cpuSeconds(), time.Now()
	time.Sleep(duration)
	cpu, wall := cpuSeconds()-cpu0, time.Since(t0).Seconds()
	if err := a.stop(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "idle CPU: %.3f cpu-s over %.1f s = %.3f %% of one core   peak RSS %.1f MiB\n", cpu, wall, 100*cpu/wall, maxRSSMiB())
	return nil
}

// latencyReport is the delays a latency blackhole saw, in nanoseconds.
type latencyReport struct {
	Count int   `json:"count"`
	P50   int64 `json:"p50_ns"`
	P99   int64 `json:"p99_ns"`
	Max   int64 `json:"max_ns"`
}

// latencyRecorder collects, for every latencyMarker in _bulk bodies, the delay from the write
// time it carries to the body's arrival.
type latencyRecorder struct {
	mu     sync.Mutex
	delays []int64
}

func (r *latencyRecorder) add(body []byte) {
	now := time.Now().UnixNano()
	marker := []byte(latencyMarker)
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		i := bytes.Index(body, marker)
		if i < 0 {
			return
		}
		body = body[i+len(marker):]
		n := 0
		for n < len(body) && body[n] >= '0' && body[n] <= '9' {
			n++
		}
		if t, err := strconv.ParseInt(string(body[:n]), 10, 64); err == nil {
			r.delays = append(r.delays, now-t)
		}
		body = body[n:]
	}
}

func (r *latencyRecorder) report() latencyReport {
	r.mu.Lock()
	d := slices.Clone(r.delays)
	r.mu.Unlock()
	if len(d) == 0 {
		return latencyReport{}
	}
	slices.Sort(d)
	q := func(p float64) int64 { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return latencyReport{Count: len(d), P50: q(0.50), P99: q(0.99), Max: d[len(d)-1]}
}

// handler is a blackhole that records latencies and serves them at latencyPath.
func (r *latencyRecorder) handler() http.Handler {
	bh := blackholeHandler(r.add)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == latencyPath {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(r.report())
			return
		}
		bh.ServeHTTP(w, req)
	})
}

// cmdBlackholeLatency is `skiff blackhole --latency`: cmdBlackhole's endpoint that also records
// line-to-arrival delays (latencyRecorder) and serves them at latencyPath.
func cmdBlackholeLatency(stdout io.Writer) int {
	return serveBlackhole(stdout, (&latencyRecorder{}).handler())
}

// benchLatency appends lines carrying their write time round-robin to files files at rate lines
// per second in total for duration, waits for all to be delivered and prints the delays the
// blackhole at url saw (it must serve latencyPath).
func benchLatency(url string, files, rate int, duration time.Duration, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "skiff-bench-latency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// One line per file before the start, so that every file is being tailed when writing starts.
	glob, err := writeQuietFiles(dir, files, 1)
	if err != nil {
		return err
	}
	a, cleanup, err := startBenchAgent(glob, url, "benchlatency", stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := a.waitDelivered(float64(files), time.Minute); err != nil {
		_ = a.stop()
		return err
	}
	out := make([]*os.File, files)
	for i := range out {
		if out[i], err = os.OpenFile(filepath.Join(dir, benchFileName(i)), os.O_WRONLY|os.O_APPEND, 0); err != nil {
			_ = a.stop()
			return err
		}
		defer out[i].Close()
	}
	cpu0 := cpuSeconds()
	written, err := writeTimedLines(out, rate, duration)
	if err != nil {
		_ = a.stop()
		return err
	}
	if err := a.waitDelivered(float64(files+written), time.Minute); err != nil {
		_ = a.stop()
		return err
	}
	cpu := cpuSeconds() - cpu0
	if err := a.stop(); err != nil {
		return err
	}
	rep, err := fetchLatency(url)
	if err != nil {
		return err
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	fmt.Fprintf(stdout, "latency: %d lines written at %d lines/s over %d files for %v\n", written, rate, files, duration)
	fmt.Fprintf(stdout, "latency: count %d  p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", rep.Count, ms(rep.P50), ms(rep.P99), ms(rep.Max))
	fmt.Fprintf(stdout, "CPU while writing and draining: %.2f cpu-s (includes the writer goroutine, in this mode only)   peak RSS %.1f MiB\n", cpu, maxRSSMiB())
	return nil
}

// writeTimedLines appends CRI lines carrying latencyMarker and their write time round-robin to
// files, at rate lines per second in total for duration, one write per line, and returns how
// many it wrote.
func writeTimedLines(files []*os.File, rate int, duration time.Duration) (int, error) {
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var line, msg []byte
	n := 0
	for {
		now := <-tick.C
		el := now.Sub(start)
		if el >= duration {
			return n, nil
		}
		for due := int(el.Seconds() * float64(rate)); n < due; n++ {
			t := time.Now()
			msg = append(msg[:0], latencyMarker...)
			msg = strconv.AppendInt(msg, t.UnixNano(), 10)
			msg = append(msg, " seq="...)
			msg = strconv.AppendInt(msg, int64(n), 10)
			msg = append(msg, " GET /api/v1/items status=200 latency_ms=12"...)
			line = loggen.AppendLine(line[:0], loggen.CRI, t, "stdout", string(msg), nil)
			if _, err := files[n%len(files)].Write(line); err != nil {
				return n, err
			}
		}
	}
}

func fetchLatency(url string) (latencyReport, error) {
	var rep latencyReport
	resp, err := http.Get(url + latencyPath)
	if err != nil {
		return rep, fmt.Errorf("latency report: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&rep); err != nil {
		return rep, fmt.Errorf("latency report from %s: %w", url, err)
	}
	return rep, nil
}

// benchExtraMode runs `skiff bench --idle` or `--latency` and returns the exit code.
func benchExtraMode(idle, latency bool, es string, files, rate int, duration time.Duration, stdout, stderr io.Writer) int {
	if idle == latency || files < 1 || rate < 1 || duration <= 0 {
		fmt.Fprintln(stderr, "skiff bench: want one of --idle and --latency, --files >= 1, --rate >= 1, --duration > 0")
		return 2
	}
	url := es
	if url == "" {
		args := []string{"blackhole"}
		if latency {
			args = append(args, "--latency")
		}
		child, u, err := startBlackhole(args...)
		if err != nil {
			fmt.Fprintln(stderr, "skiff bench: blackhole:", err)
			return 1
		}
		defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
		url = u
	}
	var err error
	if idle {
		err = benchIdle(url, files, duration, stdout, stderr)
	} else {
		err = benchLatency(url, files, rate, duration, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "skiff bench:", err)
		return 1
	}
	return 0
}
