// Package e2e tests the skiff binary from the outside: it builds cmd/skiff once, runs it as a
// subprocess on a YAML config, writes kubelet-layout container logs under a temporary root, and
// checks what arrives in a real Elasticsearch (internal/estest) and in the gzip files.
//
// This file holds what the tests share: the binary and its processes, configs, Elasticsearch
// queries, and the workload generator that remembers every message it wrote.
package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-logs/skiff/internal/estest"
	"github.com/skiff-logs/skiff/internal/kubetest"
)

var (
	skiffBin string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	skiffBin = filepath.Join(dir, "skiff")
	// The test's working directory is e2e/, so the command is one level up.
	out, err := exec.Command("go", "build", "-o", skiffBin, "../cmd/skiff").CombinedOutput()
	if err != nil {
		buildErr = fmt.Errorf("go build ./cmd/skiff: %v\n%s", err, out)
	}
	code := m.Run()
	estest.Stop()
	kubetest.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the skiff binary built by TestMain, failing t when it did not build.
func binary(t testing.TB) string {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return skiffBin
}

// Timeouts. None of them asserts speed: they only bound how long a test waits for something that
// must eventually happen, and are generous for a loaded 2-core machine.
const (
	// stallTimeout fails a wait when the awaited number has not moved for this long.
	stallTimeout = 2 * time.Minute
	// waitTimeout bounds any single wait.
	waitTimeout = 8 * time.Minute
	// shutdownTimeout is the shutdown_timeout given to skiff; exitSlack is added for the final
	// positions write and process teardown.
	shutdownTimeout = 20 * time.Second
	exitSlack       = 10 * time.Second
)

// env is one test's world: a temporary node root holding /var/log/pods and /var/log/containers,
// skiff's data_dir, a fixed HTTP port for /metrics, and the test's index prefix.
type env struct {
	t       *testing.T
	dir     string
	root    string
	dataDir string
	listen  string
	es      string
	// index is the test's index name prefix ("e2e-<test>"); pattern() matches all its indices.
	index string

	mu   sync.Mutex
	logs []string // stderr files of every skiff started, for the failure report
}

// newEnv prepares a test's directories and reserves an HTTP port. withES makes it ask estest for
// Elasticsearch (starting one if needed).
func newEnv(t *testing.T, withES bool) *env {
	t.Helper()
	binary(t)
	dir := t.TempDir()
	e := &env{
		t:       t,
		dir:     dir,
		root:    filepath.Join(dir, "node"),
		dataDir: filepath.Join(dir, "data"),
		listen:  "127.0.0.1:" + strconv.Itoa(freePort(t)),
		index:   "e2e-" + strings.ToLower(strings.TrimPrefix(t.Name(), "Test")),
	}
	if withES {
		e.es = estest.URL(t)
		e.deleteIndices()
	}
	for _, d := range []string{e.root, e.dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.dumpLogs)
	return e
}

// deleteIndices deletes the test's indices left by an earlier run against the same
// Elasticsearch, which would count as duplicates. Wildcard deletes are refused by default, so
// the names are listed first.
func (e *env) deleteIndices() {
	e.t.Helper()
	var indices []struct {
		Index string `json:"index"`
	}
	esJSON(e.t, http.MethodGet, "/_cat/indices/"+e.pattern()+"?format=json&h=index&expand_wildcards=all", nil, &indices)
	for _, ix := range indices {
		esJSON(e.t, http.MethodDelete, "/"+ix.Index, nil, nil)
	}
}

// pattern matches every index the test's outputs write to.
func (e *env) pattern() string { return e.index + "-*" }

// containersGlob is the input glob operators use, under the test's node root.
func (e *env) containersGlob() string {
	return filepath.Join(e.root, "var/log/containers/*.log")
}

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// esOutput is an elasticsearch outputs[] entry writing to "<index>-%Y.%m.%d".
func (e *env) esOutput(name string, hosts ...string) map[string]any {
	if len(hosts) == 0 {
		hosts = []string{e.es}
	}
	return map[string]any{
		"name":           name,
		"type":           "elasticsearch",
		"match":          []string{"kube.**"},
		"hosts":          hosts,
		"index":          e.index + "-%Y.%m.%d",
		"flush_bytes":    "1MiB",
		"flush_interval": "200ms",
	}
}

// config is a whole skiff config tailing the env's containers glob into outputs.
func (e *env) config(outputs ...map[string]any) map[string]any {
	return map[string]any{
		"data_dir": e.dataDir,
		"inputs": []map[string]any{{
			"name":          "containers",
			"type":          "containers",
			"paths":         []string{e.containersGlob()},
			"start_at":      "beginning",
			"scan_interval": "500ms",
		}},
		"outputs":            outputs,
		"http":               map[string]any{"listen": e.listen},
		"shutdown_timeout":   shutdownTimeout.String(),
		"positions_interval": "200ms",
		"log_level":          "info",
	}
}

// writeConfig writes cfg as YAML into the test directory and returns its path.
func (e *env) writeConfig(name string, cfg map[string]any) string {
	e.t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// dumpLogs prints the end of every skiff stderr log when the test failed.
func (e *env) dumpLogs() {
	if !e.t.Failed() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.logs {
		b, err := os.ReadFile(p)
		if err != nil {
			e.t.Logf("skiff stderr %s: %v", p, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		const keep = 60
		skipped := 0
		if len(lines) > keep {
			skipped, lines = len(lines)-keep, lines[len(lines)-keep:]
		}
		e.t.Logf("---- skiff stderr %s (%d earlier lines not shown) ----\n%s", filepath.Base(p), skipped, strings.Join(lines, "\n"))
	}
}

// proc is one skiff process this test started.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr string
	done   chan struct{}
	state  *os.ProcessState
}

// start runs `skiff run --config cfgPath`, its stderr captured into the test directory. The
// process is SIGKILLed (by its PID) at the end of the test if it is still running.
func (e *env) start(cfgPath string) *proc {
	e.t.Helper()
	return e.startWrapped(nil, cfgPath)
}

// startWrapped is start with skiff run by the command wrap (e.g. `nsenter … --`, which must
// exec it so that the process is skiff itself) when wrap is not empty.
func (e *env) startWrapped(wrap []string, cfgPath string) *proc {
	e.t.Helper()
	e.mu.Lock()
	logPath := filepath.Join(e.dir, fmt.Sprintf("skiff-%d.stderr", len(e.logs)+1))
	e.logs = append(e.logs, logPath)
	e.mu.Unlock()
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	args := append(append([]string(nil), wrap...), binary(e.t), "run", "--config", cfgPath)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		e.t.Fatalf("start skiff: %v", err)
	}
	p := &proc{t: e.t, cmd: cmd, stderr: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		if p.running() {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// mustRun fails the test when the process is no longer running.
func (p *proc) mustRun() {
	p.t.Helper()
	if !p.running() {
		p.t.Fatalf("skiff (pid %d) exited unexpectedly: %v", p.cmd.Process.Pid, p.state)
	}
}

// term sends SIGTERM and waits for the exit, failing the test unless skiff exits 0 within the
// shutdown timeout it was given (plus slack for the final positions write).
func (p *proc) term() {
	p.t.Helper()
	p.mustRun()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM skiff: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(shutdownTimeout + exitSlack):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("skiff did not exit within %v of SIGTERM (shutdown_timeout %v)", shutdownTimeout+exitSlack, shutdownTimeout)
	}
	if code := p.state.ExitCode(); code != 0 {
		p.t.Fatalf("skiff exited with %v after SIGTERM, want 0", p.state)
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	p.t.Helper()
	if !p.running() {
		p.t.Fatalf("skiff (pid %d) exited before it could be killed: %v", p.cmd.Process.Pid, p.state)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// metrics scrapes skiff's /metrics and returns, for each metric name, the samples as
// "labels" → value (labels in the exposition text's own form, e.g. `output="es",result="ok"`).
func (e *env) metrics() (map[string]map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + e.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], strings.TrimSuffix(name[i+1:], "}")
		}
		if out[name] == nil {
			out[name] = map[string]float64{}
		}
		out[name][labels] = v
	}
	return out, sc.Err()
}

// metricSum sums the samples of name whose labels contain every one of want (`output="es"`).
func metricSum(m map[string]map[string]float64, name string, want ...string) float64 {
	var sum float64
outer:
	for labels, v := range m[name] {
		for _, w := range want {
			if !strings.Contains(labels, w) {
				continue outer
			}
		}
		sum += v
	}
	return sum
}

// progress is a one-line summary of skiff's counters, for failure messages.
func (e *env) progress() string {
	m, err := e.metrics()
	if err != nil {
		return "metrics: " + err.Error()
	}
	var b strings.Builder
	for _, name := range []string{
		"skiff_input_records_total", "skiff_parse_errors_total", "skiff_lost_bytes_total",
		"skiff_files_open", "skiff_output_records_total", "skiff_output_requests_total",
		"skiff_output_retried_records_total", "skiff_output_queued_records",
	} {
		for labels, v := range m[name] {
			fmt.Fprintf(&b, " %s{%s}=%g", name, labels, v)
		}
	}
	return strings.TrimSpace(b.String())
}

// brief summarises the pipeline of output for a log line: read, delivered, queued.
func (e *env) brief(output string) string {
	m, err := e.metrics()
	if err != nil {
		return "metrics: " + err.Error()
	}
	o := `output="` + output + `"`
	return fmt.Sprintf("this skiff read %g records, delivered %g, has %g queued",
		metricSum(m, "skiff_input_records_total"),
		metricSum(m, "skiff_output_records_total", o, `status="delivered"`),
		metricSum(m, "skiff_output_queued_records", o))
}

// healthz reports whether /healthz answers 200.
func (e *env) healthz() bool {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + e.listen + "/healthz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// esJSON sends a request to Elasticsearch and decodes the JSON answer into out, failing t unless
// the status is 2xx. A 503 (a shard not yet allocated right after an index was created, on a busy
// machine) is retried for up to a minute: the tests' queries are reads, safe to repeat.
func esJSON(t testing.TB, method, path string, body any, out any) {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	status, resp := estest.Do(t, method, path, raw)
	for deadline := time.Now().Add(time.Minute); status == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		status, resp = estest.Do(t, method, path, raw)
	}
	if status/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, status, truncate(string(resp), 2000))
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("%s %s: decode answer: %v", method, path, err)
		}
	}
}

// count refreshes the test's indices and counts their documents matching query (nil: all).
func (e *env) count(query map[string]any) int {
	e.t.Helper()
	esJSON(e.t, http.MethodPost, "/"+e.pattern()+"/_refresh?allow_no_indices=true&ignore_unavailable=true", nil, nil)
	var body any
	if query != nil {
		body = map[string]any{"query": query}
	}
	var res struct {
		Count int `json:"count"`
	}
	esJSON(e.t, http.MethodPost, "/"+e.pattern()+"/_count?allow_no_indices=true&ignore_unavailable=true", body, &res)
	return res.Count
}

// tagQuery matches documents with tag exactly tag, whether skiff's template maps tag as a
// keyword or dynamic mapping made it text with a .keyword sub-field.
func tagQuery(tag string) map[string]any {
	return map[string]any{"bool": map[string]any{
		"should": []any{
			map[string]any{"term": map[string]any{"tag": tag}},
			map[string]any{"term": map[string]any{"tag.keyword": tag}},
		},
		"minimum_should_match": 1,
	}}
}

// waitFor polls cur until it reaches want. It fails the test when cur goes above want, when skiff
// (if p is not nil) exits, or when cur stalls for stallTimeout; the failure shows progress.
func (e *env) waitFor(what string, want int, p *proc, cur func() int) {
	e.t.Helper()
	e.wait(what, want, true, p, cur)
}

// waitAtLeast is waitFor for a number that may legitimately pass want.
func (e *env) waitAtLeast(what string, want int, p *proc, cur func() int) {
	e.t.Helper()
	e.wait(what, want, false, p, cur)
}

func (e *env) wait(what string, want int, exact bool, p *proc, cur func() int) {
	e.t.Helper()
	start := time.Now()
	last, lastMove := -1, time.Now()
	for {
		n := cur()
		if n == want || n > want && !exact {
			e.t.Logf("%s: %d after %v", what, n, time.Since(start).Round(time.Millisecond))
			return
		}
		if n > want {
			e.t.Fatalf("%s: %d, more than the %d expected; skiff: %s", what, n, want, e.progress())
		}
		if n != last {
			last, lastMove = n, time.Now()
		}
		if p != nil && !p.running() {
			e.t.Fatalf("%s: %d of %d, and skiff exited: %v", what, n, want, p.state)
		}
		if time.Since(lastMove) > stallTimeout || time.Since(start) > waitTimeout {
			e.t.Fatalf("%s: stuck at %d of %d after %v; skiff: %s", what, n, want, time.Since(start).Round(time.Second), e.progress())
		}
		time.Sleep(time.Second)
	}
}

// checkMapping checks that the indices skiff created carry its index template's mapping rather
// than dynamic mapping: @timestamp a date, the Kubernetes fields and the tag keywords.
func (e *env) checkMapping() {
	e.t.Helper()
	want := map[string]string{
		"@timestamp":                "date",
		"tag":                       "keyword",
		"stream":                    "keyword",
		"kubernetes.namespace":      "keyword",
		"kubernetes.pod.name":       "keyword",
		"kubernetes.container.name": "keyword",
	}
	fields := make([]string, 0, len(want))
	for f := range want {
		fields = append(fields, f)
	}
	var res map[string]struct {
		Mappings map[string]struct {
			Mapping map[string]struct {
				Type string `json:"type"`
			} `json:"mapping"`
		} `json:"mappings"`
	}
	esJSON(e.t, http.MethodGet, "/"+e.pattern()+"/_mapping/field/"+strings.Join(fields, ","), nil, &res)
	if len(res) == 0 {
		e.t.Errorf("no index matches %s", e.pattern())
	}
	for index, m := range res {
		for field, typ := range want {
			got := ""
			for _, leaf := range m.Mappings[field].Mapping {
				got = leaf.Type
			}
			if got != typ {
				e.t.Errorf("index %s: %s is mapped as %q, want %q (was skiff's index template installed?)", index, field, got, typ)
			}
		}
	}
}

// doc is the part of a skiff document the tests check.
type doc struct {
	Timestamp      string `json:"@timestamp"`
	TimestampNanos string `json:"@timestamp_nanos"`
	Message        string `json:"message"`
	Stream         string `json:"stream"`
	Tag            string `json:"tag"`
	Log            struct {
		File struct {
			Path string `json:"path"`
		} `json:"file"`
		Offset *int64 `json:"offset"`
	} `json:"log"`
	Kubernetes struct {
		Namespace string `json:"namespace"`
		Pod       struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
		Container struct {
			Name string `json:"name"`
		} `json:"container"`
	} `json:"kubernetes"`
	Container struct {
		ID string `json:"id"`
	} `json:"container"`
	Skiff struct {
		ParseError  bool `json:"parse_error"`
		Truncated   bool `json:"truncated"`
		InvalidUTF8 bool `json:"invalid_utf8"`
	} `json:"skiff"`

	// Where the document was found, for messages: index/_id or file:line.
	where string
}

// allDocs reads every document of the test's indices with a scroll.
func (e *env) allDocs() []doc {
	e.t.Helper()
	hits := e.rawDocs()
	docs := make([]doc, 0, len(hits))
	for _, h := range hits {
		var d doc
		if err := json.Unmarshal(h.Source, &d); err != nil {
			e.t.Fatalf("document %s/%s: %v: %s", h.Index, h.ID, err, truncate(string(h.Source), 500))
		}
		d.where = h.Index + "/" + h.ID
		docs = append(docs, d)
	}
	return docs
}

// esHit is one document as a search returns it.
type esHit struct {
	Index  string          `json:"_index"`
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
}

// rawDocs reads every document of the test's indices with a scroll, after a refresh.
func (e *env) rawDocs() []esHit {
	e.t.Helper()
	esJSON(e.t, http.MethodPost, "/"+e.pattern()+"/_refresh?allow_no_indices=true&ignore_unavailable=true", nil, nil)
	type page struct {
		ScrollID string `json:"_scroll_id"`
		Hits     struct {
			Hits []esHit `json:"hits"`
		} `json:"hits"`
	}
	var hits []esHit
	var res page
	esJSON(e.t, http.MethodPost, "/"+e.pattern()+"/_search?scroll=2m&allow_no_indices=true&ignore_unavailable=true",
		map[string]any{"size": 2000, "sort": []string{"_doc"}}, &res)
	for len(res.Hits.Hits) > 0 {
		hits = append(hits, res.Hits.Hits...)
		id := res.ScrollID
		res = page{}
		esJSON(e.t, http.MethodPost, "/_search/scroll", map[string]any{"scroll": "2m", "scroll_id": id}, &res)
	}
	if res.ScrollID != "" {
		estest.Do(e.t, http.MethodDelete, "/_search/scroll", []byte(`{"scroll_id":`+strconv.Quote(res.ScrollID)+`}`))
	}
	return hits
}

// readGzipLines reads every line of every gzip member of files, with each line's file:line.
// When strict, every member must be complete and readable; otherwise (while skiff may be
// appending) a file is read up to its first incomplete member and a partial last line is dropped.
func readGzipLines(t testing.TB, files []string, strict bool) (lines []string, where []string) {
	t.Helper()
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var data []byte
		zr, err := gzip.NewReader(f)
		if err == nil {
			data, err = io.ReadAll(zr) // multistream: reads every member
		}
		f.Close()
		if err != nil {
			if strict {
				t.Fatalf("%s: gzip not readable after %d bytes: %v", p, len(data), err)
			}
			if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
				data = data[:i+1]
			} else {
				data = nil
			}
		}
		if strict && len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s: does not end with a newline", p)
		}
		if len(data) == 0 {
			continue
		}
		for i, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			lines = append(lines, string(l))
			where = append(where, fmt.Sprintf("%s:%d", p, i+1))
		}
	}
	return lines, where
}

// findFiles lists the regular files under dir whose names end in suffix.
func findFiles(t testing.TB, dir, suffix string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d bytes)", len(s))
}
