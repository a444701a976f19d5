package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/skiff-logs/skiff/internal/faultproxy"
)

// suite is what the scenarios share: the suite's own Elasticsearch and the proxy in front of it.
type suite struct {
	root   string // repository root
	esDir  string
	esURL  string // Elasticsearch itself (changes when restarted); the checks use it
	proxy  *faultproxy.Proxy
	server *http.Server
	// proxyURL is what skiff is configured with; it stays the same across restarts.
	proxyURL string
}

var (
	suiteMu  sync.Mutex
	theSuite *suite
)

// getSuite starts the suite's Elasticsearch and proxy on first use.
func getSuite(t *testing.T) *suite {
	t.Helper()
	binary(t)
	suiteMu.Lock()
	defer suiteMu.Unlock()
	if theSuite != nil {
		return theSuite
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{root: filepath.Join(wd, "..", "..")}
	if s.esDir, err = os.MkdirTemp("", "skiff-reliability-es-"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.esDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// From here on stopSuite cleans up whatever was started.
	theSuite = s
	if err := s.startES(); err != nil {
		t.Fatal(err)
	}
	if s.proxy, err = faultproxy.New(s.esURL, 42); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.proxyURL = "http://" + ln.Addr().String()
	s.server = &http.Server{Handler: s.proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.server.Serve(ln) }()
	return s
}

// stopSuite stops the proxy and the suite's Elasticsearch (by the PID its script recorded).
func stopSuite() {
	suiteMu.Lock()
	defer suiteMu.Unlock()
	s := theSuite
	if s == nil {
		return
	}
	if s.server != nil {
		_ = s.server.Close()
	}
	_ = s.stopES()
	_ = os.RemoveAll(s.esDir)
	theSuite = nil
}

// startES starts Elasticsearch on s.esDir (its data kept from an earlier start) and points the
// proxy at it.
func (s *suite) startES() error {
	cmd := exec.Command(filepath.Join(s.root, "scripts", "elasticsearch.sh"), "start", s.esDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("start elasticsearch in %s: %w", s.esDir, err)
	}
	s.esURL = strings.TrimSpace(string(out))
	if s.proxy != nil {
		return s.proxy.SetUpstream(s.esURL)
	}
	return nil
}

// stopES stops Elasticsearch; the proxy's upstream then refuses connections.
func (s *suite) stopES() error {
	cmd := exec.Command(filepath.Join(s.root, "scripts", "elasticsearch.sh"), "stop", s.esDir)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("stop elasticsearch in %s: %w", s.esDir, err)
	}
	return nil
}

// es sends a request to the suite's Elasticsearch (not through the proxy) and decodes a 2xx
// JSON answer into out. A 503 (shards still recovering after a restart) is retried for a minute.
func (s *suite) es(t testing.TB, method, path string, body any, out any) {
	t.Helper()
	if err := s.esErr(method, path, body, out); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) esErr(method, path string, body any, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequest(method, s.esURL+path, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if res.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if res.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, truncate(string(b), 2000))
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
			}
		}
		return nil
	}
}

// count refreshes the indices matching pattern and counts their documents.
func (s *suite) count(pattern string) (int, error) {
	const opts = "?allow_no_indices=true&ignore_unavailable=true"
	if err := s.esErr(http.MethodPost, "/"+pattern+"/_refresh"+opts, nil, nil); err != nil {
		return 0, err
	}
	var res struct {
		Count int `json:"count"`
	}
	err := s.esErr(http.MethodPost, "/"+pattern+"/_count"+opts, nil, &res)
	return res.Count, err
}

// scan calls fn with the message of every document of the indices matching pattern (a scroll
// over _doc order, so the 10k result window does not apply).
func (s *suite) scan(t testing.TB, pattern string, fn func(msg string)) {
	t.Helper()
	s.es(t, http.MethodPost, "/"+pattern+"/_refresh?allow_no_indices=true&ignore_unavailable=true", nil, nil)
	type page struct {
		ScrollID string `json:"_scroll_id"`
		Hits     struct {
			Hits []struct {
				Source struct {
					Message string `json:"message"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	var res page
	s.es(t, http.MethodPost, "/"+pattern+"/_search?scroll=5m&allow_no_indices=true&ignore_unavailable=true",
		map[string]any{"size": 10000, "sort": []string{"_doc"}, "_source": []string{"message"}}, &res)
	for len(res.Hits.Hits) > 0 {
		for _, h := range res.Hits.Hits {
			fn(h.Source.Message)
		}
		id := res.ScrollID
		res = page{}
		s.es(t, http.MethodPost, "/_search/scroll", map[string]any{"scroll": "5m", "scroll_id": id}, &res)
	}
	if res.ScrollID != "" {
		_ = s.esErr(http.MethodDelete, "/_search/scroll", map[string]any{"scroll_id": res.ScrollID}, nil)
	}
}

// node is one scenario's world: a node root with the kubelet's log directories, skiff's
// data_dir, its /metrics port, its index prefix, and the skiff processes it started.
type node struct {
	t       *testing.T
	s       *suite
	dir     string
	root    string
	dataDir string
	listen  string
	index   string

	mu    sync.Mutex
	logs  []string
	procs []*proc
}

func newNode(t *testing.T, s *suite, name string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{
		t: t, s: s, dir: dir,
		root:    filepath.Join(dir, "node"),
		dataDir: filepath.Join(dir, "data"),
		listen:  "127.0.0.1:" + strconv.Itoa(freePort(t)),
		index:   "rel-" + name,
	}
	for _, d := range []string{n.root, n.dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.dumpLogs)
	return n
}

// pattern matches the node's indices.
func (n *node) pattern() string { return n.index + "-*" }

// waitTemplate waits until skiff's index template (output "es") covers the node's indices.
func (n *node) waitTemplate() {
	n.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var res struct {
			IndexTemplates []struct {
				IndexTemplate struct {
					Patterns []string `json:"index_patterns"`
				} `json:"index_template"`
			} `json:"index_templates"`
		}
		if n.s.esErr(http.MethodGet, "/_index_template/skiff-es", nil, &res) == nil {
			for _, it := range res.IndexTemplates {
				if slices.Contains(it.IndexTemplate.Patterns, n.index+"-*") {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("skiff did not install its index template for %s within a minute", n.pattern())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// count is the number of documents in the node's indices.
func (n *node) count() int {
	n.t.Helper()
	c, err := n.s.count(n.pattern())
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	// Bind port 0, note what the kernel chose, let it go: skiff binds it a moment later.
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// config is a skiff config tailing the node's containers into the node's index through the
// proxy; es holds extra keys of the elasticsearch output, top extra top-level keys.
func (n *node) config(es, top map[string]any) string {
	n.t.Helper()
	out := map[string]any{
		"name":           "es",
		"type":           "elasticsearch",
		"match":          []string{"kube.**"},
		"hosts":          []string{n.s.proxyURL},
		"index":          n.index + "-%Y.%m.%d",
		"flush_bytes":    "1MiB",
		"flush_interval": "200ms",
	}
	for k, v := range es {
		out[k] = v
	}
	cfg := map[string]any{
		"data_dir": n.dataDir,
		"inputs": []map[string]any{{
			"name":          "containers",
			"type":          "containers",
			"paths":         []string{filepath.Join(n.root, "var/log/containers/*.log")},
			"start_at":      "beginning",
			"scan_interval": "500ms",
		}},
		"outputs":            []map[string]any{out},
		"http":               map[string]any{"listen": n.listen},
		"shutdown_timeout":   "20s",
		"positions_interval": "200ms",
		"log_level":          "info",
	}
	for k, v := range top {
		cfg[k] = v
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	p := filepath.Join(n.dir, "skiff.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// proc is one skiff process, with its RSS sampled every rssEvery.
type proc struct {
	t   *testing.T
	cmd *exec.Cmd
	// exited is closed once the process has been reaped; err is what Wait said.
	exited chan struct{}
	err    error

	mu      sync.Mutex
	peakRSS uint64
	samples []rssSample
}

type rssSample struct {
	at  time.Time
	rss uint64
}

const rssEvery = 200 * time.Millisecond

// start runs `skiff run --config cfg` with its output in a log of the node's; the process is
// SIGKILLed (by PID) at the end of the test if still running.
func (n *node) start(cfg string) *proc {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	out, err := os.Create(filepath.Join(n.dir, fmt.Sprintf("skiff-%d.log", len(n.procs)+1)))
	if err != nil {
		n.t.Fatal(err)
	}
	p := &proc{t: n.t, cmd: exec.Command(binary(n.t), "run", "--config", cfg), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		out.Close()
		n.t.Fatalf("start skiff: %v", err)
	}
	n.logs = append(n.logs, out.Name())
	n.procs = append(n.procs, p)
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.exited)
	}()
	go p.sampleRSS()
	n.t.Cleanup(func() {
		if p.signal(syscall.SIGKILL, time.Minute) {
			<-p.exited
		}
	})
	return p
}

// signal sends sig unless the process has exited, and waits up to wait for it to exit. It
// reports whether the signal was sent.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) bool {
	select {
	case <-p.exited:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(wait):
	}
	return true
}

// sampleRSS reads VmRSS from /proc/<pid>/status every rssEvery until the process ends.
func (p *proc) sampleRSS() {
	path := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	tick := time.NewTicker(rssEvery)
	defer tick.Stop()
	for {
		if rss, ok := readRSS(path); ok {
			p.mu.Lock()
			p.peakRSS = max(p.peakRSS, rss)
			p.samples = append(p.samples, rssSample{time.Now(), rss})
			p.mu.Unlock()
		}
		select {
		case <-p.exited:
			return
		case <-tick.C:
		}
	}
}

// readRSS returns VmRSS in bytes from a /proc/<pid>/status file.
func readRSS(path string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// peak is the highest RSS seen of any skiff the node started.
func (n *node) peak() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var m uint64
	for _, p := range n.procs {
		p.mu.Lock()
		m = max(m, p.peakRSS)
		p.mu.Unlock()
	}
	return m
}

// rssBetween returns p's RSS samples taken in [from, to).
func (p *proc) rssBetween(from, to time.Time) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for _, s := range p.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s.rss)
		}
	}
	return out
}

// kill SIGKILLs skiff, failing the test if it had already exited.
func (p *proc) kill() {
	p.t.Helper()
	if !p.signal(syscall.SIGKILL, time.Minute) {
		p.t.Fatalf("skiff (pid %d) exited before it could be killed: %v", p.cmd.Process.Pid, p.err)
	}
	<-p.exited
}

// term SIGTERMs skiff and fails the test unless it exits 0 within 30s (its shutdown_timeout
// is 20s).
func (p *proc) term() {
	p.t.Helper()
	if !p.signal(syscall.SIGTERM, 30*time.Second) {
		p.t.Fatalf("skiff (pid %d) exited before SIGTERM: %v", p.cmd.Process.Pid, p.err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			p.t.Fatalf("skiff ended with %v after SIGTERM, want exit status 0", p.err)
		}
	default:
		p.kill()
		p.t.Fatal("skiff did not exit within 30s of SIGTERM")
	}
}

// dumpLogs shows the last 8 KiB of every skiff log of the node when the test failed.
func (n *node) dumpLogs() {
	if !n.t.Failed() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	const tail = 8 << 10
	for _, path := range n.logs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		head := ""
		if len(b) > tail {
			head = fmt.Sprintf("[%d bytes before] ", len(b)-tail)
			b = b[len(b)-tail:]
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:]
			}
		}
		n.t.Logf("==== %s %s\n%s", path, head, b)
	}
}

// metrics scrapes skiff's /metrics with the Prometheus text parser.
func (n *node) metrics() (metricSet, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + n.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return metricSet(fams), nil
}

// metricSet is one scrape, by metric family name.
type metricSet map[string]*dto.MetricFamily

// sum adds every sample (counter or gauge) of a metric; a missing metric or a failed scrape
// (nil) sums to 0.
func sum(m metricSet, name string) float64 {
	var s float64
	for _, x := range m[name].GetMetric() {
		s += x.GetCounter().GetValue() + x.GetGauge().GetValue()
	}
	return s
}

// progress is a one-line summary of skiff's counters for failure messages.
func (n *node) progress() string {
	m, err := n.metrics()
	if err != nil {
		return "metrics: " + err.Error()
	}
	parts := make([]string, 0, 8)
	for _, name := range []string{
		"skiff_input_records_total", "skiff_lost_bytes_total", "skiff_files_open",
		"skiff_output_records_total", "skiff_output_queued_records", "skiff_spool_files",
		"skiff_spool_full", "skiff_memory_budget_used_bytes",
	} {
		parts = append(parts, fmt.Sprintf("%s=%g", name, sum(m, name)))
	}
	return strings.Join(parts, " ")
}

// drain waits until the node's indices hold at least want documents, failing the test when the
// count has not moved for stall. It returns how long it waited.
func (n *node) drain(want int, stall time.Duration) time.Duration {
	n.t.Helper()
	start := time.Now()
	last, lastMove := -1, time.Now()
	for {
		c := n.count()
		if c >= want {
			return time.Since(start)
		}
		if c != last {
			last, lastMove = c, time.Now()
		}
		if time.Since(lastMove) > stall {
			n.t.Fatalf("documents: stuck at %d of %d for %v; skiff: %s", c, want, stall, n.progress())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// settle waits until the node's document count has not changed for quiet and returns the time
// from start to its last change (for scenarios that may legitimately end below the lines
// written).
func (n *node) settle(start time.Time, quiet time.Duration) time.Duration {
	n.t.Helper()
	last, lastMove := -1, time.Now()
	for time.Since(lastMove) < quiet {
		if c := n.count(); c != last {
			last, lastMove = c, time.Now()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return max(0, lastMove.Sub(start))
}

// truncate shortens s to at most n bytes for a message, saying how long it was.
func truncate(s string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%s… [%d bytes]", s[:n], len(s))
	}
	return s
}
