package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestDataDirFull runs skiff with its data_dir on a real, tiny filesystem (a 4 MiB tmpfs, most
// of it taken by a ballast file) while Elasticsearch is unreachable, so that the fallback spool
// and a file output (archive) on it fill the filesystem; an audit webhook input spools there
// too. While it is full: skiff keeps running, spool writes fail with ENOSPC and are counted and
// logged once, nothing it could not store is acknowledged (positions stay behind the files'
// ends), the positions file stays readable, the webhook answers a non-200 and leaves no
// partial line in its spool. Once the ballast is removed everything is stored by itself (the
// webhook answers 200 to the retried request); once Elasticsearch answers, every line arrives
// exactly once, the spool is emptied, the positions reach the files' ends, every archive gzip
// member is complete and holds each line once, and each audit event is archived once.
//
// The filesystem is mounted in a user and mount namespace of its own (unshare -Urm), which
// works as root (CI) and for an unprivileged user where user namespaces are allowed; skiff
// joins it with nsenter, and the test reads data_dir through /proc/<pid>/root. When that is
// not possible the test fails, saying why.
func TestDataDirFull(t *testing.T) {
	e := newEnv(t, true)
	ns := mountTmpfs(t, e.dataDir, "4m")
	// Leave about 384 KiB: room for the positions file and a few spool members.
	ballast := ns.path(e.dataDir, "ballast")
	fillFile(t, ballast, 4<<20-384<<10)

	g := newGate(t, e.es)
	w := newWorkload(t, e.root, 4, 11)
	defer w.closeAll()
	out := e.esOutput("es-diskfull", g.url())
	out["fallback_after"] = "1s"
	out["spool_max_bytes"] = "64MiB"
	archiveDir := filepath.Join(e.dataDir, "archive")
	auditDir := filepath.Join(e.dir, "audit")
	hook := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := e.config(out, map[string]any{
		"name": "archive", "type": "file", "match": []string{"kube.**"},
		"path": filepath.Join(archiveDir, "{tag}.log.gz"), "flush_interval": "200ms",
	}, map[string]any{
		"name": "audit-archive", "type": "file", "match": []string{"webhook"},
		"path": filepath.Join(auditDir, "audit.log.gz"), "flush_interval": "200ms",
	})
	cfg["inputs"] = append(cfg["inputs"].([]map[string]any), map[string]any{
		"name": "hook", "type": "audit_webhook", "listen": hook, "tag": "webhook",
		"tls_disable": true, "auth_disable": true,
	})
	// Elasticsearch answers at first, so that skiff installs its index template (it sends
	// nothing before), then becomes unreachable.
	g.set(true)
	p := e.startWrapped(ns.wrap, e.writeConfig("diskfull.yaml", cfg))
	waitUntil(t, "the index template installed", p, func() bool {
		return strings.Contains(readText(t, p.stderr), "index template installed")
	})
	g.set(false)

	// Write until the spool cannot take more: the filesystem is full.
	spoolErrs := func() int {
		m, err := e.metrics()
		if err != nil {
			return 0
		}
		return int(metricSum(m, "skiff_data_dir_write_errors_total", `component="elasticsearch_spool"`))
	}
	for round := 0; spoolErrs() == 0; round++ {
		p.mustRun()
		if round == 40 {
			t.Fatalf("40 rounds written and the spool never failed to write; skiff: %s", e.progress())
		}
		w.writeRound(100)
		time.Sleep(time.Second)
	}
	w.writeRound(100) // more than what fits, for sure
	e.waitAtLeast("spool write errors (ENOSPC)", 3, p, spoolErrs)

	p.mustRun()
	if !e.healthz() {
		t.Error("/healthz does not answer 200 while data_dir is full")
	}
	if n := e.count(nil); n != 0 {
		t.Fatalf("%d documents in Elasticsearch, which was unreachable", n)
	}
	read, size := positionsProgress(t, ns.path(e.dataDir, "positions.json"), w)
	if read >= size {
		t.Fatalf("data_dir full: the positions cover %d of %d bytes written, but the spool could not take everything: positions ran ahead of what was stored", read, size)
	}
	t.Logf("data_dir full: positions at %d of %d bytes written", read, size)
	logText := readText(t, p.stderr)
	// Logged once per episode: a failed write after a successful one (a failed member is cut
	// off again, which frees room for a smaller one) starts a new episode.
	failed := strings.Count(logText, `"level":"ERROR","msg":"cannot write to the fallback spool`)
	recovered := strings.Count(logText, `"msg":"writing works again","component":"elasticsearch_spool"`)
	if failed == 0 || failed > recovered+1 {
		t.Errorf("spool write failures logged %d times with %d recoveries between (and %d failures counted), want once per episode",
			failed, recovered, spoolErrs())
	}
	if !strings.Contains(logText, `"errno":"ENOSPC"`) {
		t.Error("the log does not name ENOSPC")
	}
	for _, l := range strings.Split(logText, "\n") {
		if strings.Contains(l, `"component":`) {
			t.Logf("skiff: %s", l)
		}
	}
	// The webhook cannot store the events (more than the filesystem had left before it was
	// full): no 200, and no partial line left in its spool.
	first := auditEventList("full", 1500)
	if code := postEvents(t, hook, first); code == 200 {
		t.Error("the audit webhook answered 200 although data_dir is full")
	} else {
		t.Logf("audit webhook with data_dir full: %d", code)
	}
	for _, f := range findFiles(t, ns.path(e.dataDir, "webhook"), ".log") {
		if b := readText(t, f); len(b) > 0 && !strings.HasSuffix(b, "\n") {
			t.Errorf("webhook spool file %s ends in a partial line", f)
		}
	}

	// Free the space: skiff spools the rest by itself, still without Elasticsearch.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	e.waitFor("bytes covered by positions after space was freed", int(size), p, func() int {
		r, _ := positionsProgress(t, ns.path(e.dataDir, "positions.json"), w)
		return int(r)
	})
	if !strings.Contains(readText(t, p.stderr), "writing works again") {
		t.Error("the log does not say that writing the spool recovered")
	}
	// The apiserver retries the refused request, and sends more.
	for _, body := range [][]byte{first, auditEventList("after", 20)} {
		if code := postEvents(t, hook, body); code != 200 {
			t.Errorf("audit webhook after space was freed: %d, want 200", code)
		}
	}
	if n := e.count(nil); n != 0 {
		t.Fatalf("%d documents in Elasticsearch, which is still unreachable", n)
	}

	// Elasticsearch answers: the spool is replayed, and emptied.
	g.set(true)
	e.waitFor("documents in Elasticsearch", w.expected(), p, func() int { return e.count(nil) })
	waitUntil(t, "the replayed spool files deleted", p, func() bool {
		return len(findFiles(t, ns.path(e.dataDir, "spool"), ".ndjson.gz")) == 0
	})
	e.waitFor("audit events archived", 1520, p, func() int {
		l, _ := readGzipLines(t, findFiles(t, auditDir, ".gz"), false)
		return len(l)
	})
	e.waitFor("lines in the archive on the full filesystem", w.expected(), p, func() int {
		l, _ := readGzipLines(t, findFiles(t, ns.path(archiveDir), ".gz"), false)
		return len(l)
	})
	p.term()
	t.Log("elasticsearch:")
	w.verify(e.allDocs())
	t.Log("archive on the filesystem that was full:")
	lines, where := readGzipLines(t, findFiles(t, ns.path(archiveDir), ".gz"), true)
	archived := make([]doc, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &archived[i]); err != nil {
			t.Fatalf("%s: %v", where[i], err)
		}
		archived[i].where = where[i]
	}
	w.verify(archived)
	lines, _ = readGzipLines(t, findFiles(t, auditDir, ".gz"), true)
	ids := map[string]int{}
	for _, l := range lines {
		var ev struct {
			AuditID string `json:"auditID"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("audit archive: %v: %s", err, truncate(l, 200))
		}
		ids[ev.AuditID]++
	}
	for prefix, n := range map[string]int{"full": 1500, "after": 20} {
		for i := range n {
			if id := fmt.Sprintf("%s-%d", prefix, i); ids[id] != 1 {
				t.Errorf("audit event %s archived %d times, want once", id, ids[id])
			}
		}
	}
	read, size = positionsProgress(t, ns.path(e.dataDir, "positions.json"), w)
	if read != size {
		t.Errorf("after delivery the positions cover %d of %d bytes", read, size)
	}
	for _, bad := range append(findFiles(t, ns.path(e.dataDir, "spool", "corrupt"), ""),
		findFiles(t, ns.path(e.dataDir), ".tmp-")...) {
		t.Errorf("left in data_dir: %s", bad)
	}
	if aside, _ := filepath.Glob(ns.path(e.dataDir, "positions.json.corrupt-*")); len(aside) > 0 {
		t.Errorf("the positions file was found corrupt: %v", aside)
	}
}

// auditEventList is an audit.k8s.io/v1 EventList of n events with auditIDs prefix-0 … as the
// apiserver's webhook backend posts it.
func auditEventList(prefix string, n int) []byte {
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{
			"level": "Metadata", "auditID": fmt.Sprintf("%s-%d", prefix, i), "stage": "ResponseComplete",
			"requestURI": "/api/v1/namespaces/default/configmaps", "verb": "create",
			"user":                     map[string]any{"username": "alice"},
			"objectRef":                map[string]any{"resource": "configmaps", "namespace": "default", "name": "cm"},
			"requestReceivedTimestamp": "2026-11-27T10:00:00.000000Z", "stageTimestamp": "2026-11-27T10:00:00.002000Z",
		}
	}
	b, _ := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
	return b
}

// postEvents posts an EventList to skiff's audit webhook at addr and returns the status code.
func postEvents(t *testing.T, addr string, body []byte) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Post("http://"+addr+"/", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post to the audit webhook: %v", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// tmpfsNS is a tmpfs mounted in a mount namespace held by a sleeping process.
type tmpfsNS struct {
	holder int
	// wrap runs a command inside the namespace.
	wrap []string
}

// path returns where the test sees a path of the namespace.
func (n *tmpfsNS) path(elem ...string) string {
	return filepath.Join(append([]string{"/proc", strconv.Itoa(n.holder), "root"}, elem...)...)
}

// mountTmpfs mounts a tmpfs of size on dir in a new user and mount namespace, held by a process
// that lives until the end of the test. It fails t, saying what is missing, when it cannot.
func mountTmpfs(t *testing.T, dir, size string) *tmpfsNS {
	t.Helper()
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this test mounts a small filesystem in a user namespace with util-linux %s: %v", tool, err)
		}
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size="$2",mode=0755 skiff-e2e "$1" && echo mounted && exec sleep 3600`, "sh", dir, size)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start unshare: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "mounted" {
		<-done
		t.Fatalf("cannot mount a %s tmpfs on data_dir in a new user+mount namespace: %s\n"+
			"this test needs root, or unprivileged user namespaces (kernel.unprivileged_userns_clone=1, "+
			"user.max_user_namespaces > 0, no AppArmor restrict_unprivileged_userns)", size, strings.TrimSpace(stderr.String()))
	}
	pid := cmd.Process.Pid
	ns := &tmpfsNS{holder: pid, wrap: []string{"nsenter", "--target", strconv.Itoa(pid), "--user", "--mount", "--preserve-credentials", "--"}}
	var st syscall.Statfs_t
	if err := syscall.Statfs(ns.path(dir), &st); err != nil || st.Type != 0x01021994 { // TMPFS_MAGIC
		t.Fatalf("data_dir as the namespace sees it (%s) is not the tmpfs: type %#x, %v", ns.path(dir), st.Type, err)
	}
	return ns
}

// fillFile writes n bytes to a new file at path and fsyncs it.
func fillFile(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n)); err != nil {
		t.Fatalf("ballast %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// positionsProgress reads the positions file at path (which must be readable JSON, as any
// version skiff left is) and returns the bytes its entries of w's files cover and the bytes w
// wrote.
func positionsProgress(t *testing.T, path string, w *workload) (covered, written int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, workloadBytes(t, w)
		}
		t.Fatal(err)
	}
	var pos struct {
		Files []positionEntry `json:"files"`
	}
	if err := json.Unmarshal(b, &pos); err != nil {
		t.Fatalf("positions file %s is not readable: %v: %s", path, err, truncate(string(b), 500))
	}
	for _, f := range pos.Files {
		if strings.HasPrefix(f.Path, w.root+"/") { // not the webhook's spool files
			covered += f.Offset
		}
	}
	return covered, workloadBytes(t, w)
}

// workloadBytes is the size of every file w wrote (this test neither rotates nor truncates).
func workloadBytes(t *testing.T, w *workload) int64 {
	t.Helper()
	var n int64
	for _, f := range w.files {
		fi, err := os.Stat(f.c.PodsPath(w.root))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gate is a TCP proxy in front of Elasticsearch: while closed it accepts connections and drops
// them at once (a connection error for skiff), while open it forwards them. Closing it also
// cuts the connections it is forwarding.
type gate struct {
	ln     net.Listener
	target string
	open   atomic.Bool
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// set opens or closes the gate.
func (g *gate) set(open bool) {
	g.open.Store(open)
	if open {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.Close()
	}
}

func newGate(t *testing.T, esURL string) *gate {
	t.Helper()
	u, err := url.Parse(esURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(func() {
		ln.Close()
		g.wg.Wait()
	})
	return g
}

func (g *gate) url() string { return "http://" + g.ln.Addr().String() }

func (g *gate) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		if !g.open.Load() {
			c.Close()
			continue
		}
		go g.forward(c)
	}
}

func (g *gate) forward(c net.Conn) {
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	g.conns[c], g.conns[up] = struct{}{}, struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.conns, c)
		delete(g.conns, up)
		g.mu.Unlock()
		c.Close()
		up.Close()
	}()
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, up)
}

// waitUntil polls cond every 200ms until it holds, failing t when skiff exits or after
// waitTimeout.
func waitUntil(t *testing.T, what string, p *proc, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(200 * time.Millisecond) {
		p.mustRun()
		if time.Since(start) > waitTimeout {
			t.Fatalf("waited %v for %s", waitTimeout, what)
		}
	}
}
