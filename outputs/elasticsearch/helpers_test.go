package elasticsearch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/estest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	estest.Stop()
	os.Exit(code)
}

// testTime is the time of test records: their index is "<prefix>2024.01.02".
var testTime = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)

// sink makes batches whose records each carry their own Ack, so a test sees every record's fate.
type sink struct {
	t       testing.TB
	src     *event.Source
	mu      sync.Mutex
	acks    []*event.Ack
	pending atomic.Int64
	done    chan struct{} // gets a value whenever an Ack completes
}

func newSink(t testing.TB, idPrefix string) *sink {
	return &sink{
		t:    t,
		src:  &event.Source{Path: "/var/log/pods/ns_pod_uid/c/0.log", Tag: "kube.ns.pod.c", IDPrefix: idPrefix, Namespace: "ns", PodName: "pod", PodUID: "uid", Container: "c", ContainerID: "cid"},
		done: make(chan struct{}, 1),
	}
}

// batch makes a batch of n records with offsets from..from+n-1; fields, if not nil, gives the
// Fields of record i.
func (s *sink) batch(from, n int, fields func(i int) map[string]any) *event.Batch {
	recs := make([]event.Record, n)
	b := &event.Batch{}
	for i := range recs {
		off := from + i
		ack := event.NewAck(int64(off+1), func(*event.Ack) {
			s.pending.Add(-1)
			select {
			case s.done <- struct{}{}:
			default:
			}
		})
		s.mu.Lock()
		s.acks = append(s.acks, ack)
		s.mu.Unlock()
		s.pending.Add(1)
		recs[i] = event.Record{
			Time: testTime.Add(time.Duration(off) * time.Millisecond), Stream: event.StreamStdout,
			Message: fmt.Appendf(nil, "line %d", off), Tag: s.src.Tag, Source: s.src, Offset: int64(off), Ack: ack,
		}
		if fields != nil {
			recs[i].Fields = fields(off)
		}
		b.Add(&recs[i])
		ack.Release(1, event.Delivered) // the seal: only the batch's reference is left
	}
	return b
}

// wait waits until every Ack made so far completed.
func (s *sink) wait(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for s.pending.Load() > 0 {
		select {
		case <-s.done:
		case <-deadline:
			s.t.Fatalf("%d records still not finished after %v", s.pending.Load(), d)
		}
	}
}

// failed counts the completed Acks marked failed.
func (s *sink) failed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.acks {
		if a.Pending() == 0 && a.Failed() {
			n++
		}
	}
	return n
}

func (s *sink) id(off int) string { return fmt.Sprintf("%s-%x", s.src.IDPrefix, off) }

// counter reads a counter's value.
func counter(t testing.TB, c *metrics.Counter) float64 {
	t.Helper()
	return c.Value()
}

func gaugeValue(t testing.TB, g *metrics.Gauge) float64 {
	t.Helper()
	return g.Value()
}

// testLogger writes the output's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start makes an output from cfg (Name, DataDir and Logger filled in when empty), lets prep
// adjust it, runs it, and closes it at the end of the test if the test did not.
func start(t testing.TB, cfg Config, prep ...func(*Output)) *Output {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = uniq(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, t.Name()))
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, p := range prep {
		p(o)
	}
	run := make(chan error, 1)
	go func() { run <- o.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = o.Close(ctx)
		if err := <-run; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return o
}

var outputSeq atomic.Int64

// uniq makes an output name unique in the test binary, so that metrics (labelled by output name)
// start from zero for every output, also with -count.
func uniq(name string) string { return fmt.Sprintf("%s-%d", name, outputSeq.Add(1)) }

func send(t testing.TB, o *Output, b *event.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Send(ctx, b); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func closeOutput(t testing.TB, o *Output, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return o.Close(ctx)
}

func boolp(b bool) *bool { return &b }

// closedPort returns an address on which nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// bulkItem is one action of a bulk request as a fake server sees it.
type bulkItem struct {
	Index, ID string
	Doc       []byte
}

// fakeES is an httptest Elasticsearch: bulk requests are parsed and handed to the test's
// function, which returns the per-item statuses (nil for "errors":false) or a whole-request
// status.
type fakeES struct {
	t        testing.TB
	srv      *httptest.Server
	mu       sync.Mutex
	requests []fakeRequest
	bulk     func(n int, items []bulkItem) (status int, itemStatus []int)
	other    func(r *http.Request) int // non-bulk requests; nil answers 200 {}
	html     bool                      // whole-request errors come as HTML, as from a proxy
}

type fakeRequest struct {
	at      time.Time
	path    string
	items   []bulkItem
	gzipped bool
	size    int
}

func newFakeES(t testing.TB, bulk func(n int, items []bulkItem) (int, []int)) *fakeES {
	f := &fakeES{t: t, bulk: bulk}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	var body io.Reader = r.Body
	gz := r.Header.Get("Content-Encoding") == "gzip"
	if gz {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if r.URL.Path != "/_bulk" {
		f.mu.Lock()
		f.requests = append(f.requests, fakeRequest{at: time.Now(), path: r.URL.Path})
		f.mu.Unlock()
		status := 200
		if f.other != nil {
			status = f.other(r)
		}
		w.WriteHeader(status)
		if status == 200 {
			io.WriteString(w, `{"acknowledged":true}`)
		} else {
			fmt.Fprintf(w, `{"error":{"type":"fake","reason":"status %d"},"status":%d}`, status, status)
		}
		return
	}
	if got := r.URL.Query().Get("filter_path"); got != "errors,items.*.status,items.*.error" {
		f.t.Errorf("filter_path = %q", got)
	}
	items := parseBulk(f.t, data)
	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, fakeRequest{at: time.Now(), path: r.URL.Path, items: items, gzipped: gz, size: len(data)})
	f.mu.Unlock()
	status, statuses := f.bulk(n, items)
	if status != 200 {
		if f.html {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			fmt.Fprintf(w, "<html><body>%d from a proxy</body></html>", status)
			return
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"type":"fake_%d","reason":"whole request refused"},"status":%d}`, status, status)
		return
	}
	if statuses == nil {
		// A real server lists every item even then; the output must not need to read them.
		var b bytes.Buffer
		b.WriteString(`{"errors":false,"items":[`)
		for i := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"create":{"status":201}}`)
		}
		b.WriteString("]}")
		w.Write(b.Bytes())
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"errors":true,"items":[`)
	for i, s := range statuses {
		if i > 0 {
			b.WriteByte(',')
		}
		if s/100 == 2 {
			fmt.Fprintf(&b, `{"create":{"status":%d}}`, s)
		} else {
			fmt.Fprintf(&b, `{"create":{"status":%d,"error":{"type":"fake_%d","reason":"item %s refused"}}}`, s, s, items[i].ID)
		}
	}
	b.WriteString("]}")
	w.Write(b.Bytes())
}

func (f *fakeES) snapshot() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func (f *fakeES) bulkRequests() []fakeRequest {
	var out []fakeRequest
	for _, r := range f.snapshot() {
		if r.path == "/_bulk" {
			out = append(out, r)
		}
	}
	return out
}

// parseBulk splits an NDJSON bulk body into its items, checking each line is JSON.
func parseBulk(t testing.TB, data []byte) []bulkItem {
	var items []bulkItem
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var action struct {
			Create struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
			} `json:"create"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil {
			t.Errorf("action line %q: %v", sc.Bytes(), err)
			return items
		}
		if !sc.Scan() {
			t.Errorf("action without document")
			return items
		}
		doc := append([]byte(nil), sc.Bytes()...)
		if !json.Valid(doc) {
			t.Errorf("document %q is not JSON", doc)
		}
		items = append(items, bulkItem{Index: action.Create.Index, ID: action.Create.ID, Doc: doc})
	}
	if !bytes.HasSuffix(data, []byte("\n")) && len(data) > 0 {
		t.Errorf("bulk body does not end with a newline")
	}
	return items
}
