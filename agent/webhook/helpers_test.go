package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/positions"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/internal/testpki"
)

// rawParser stands in for the audit parser: every line is a record whose message is the line.
type rawParser struct{}

func newRawParser([]byte, int) tail.Parser { return rawParser{} }

func (rawParser) Parse(line []byte, off int64, r *event.Record) bool {
	r.Message, r.Offset = line, off
	return true
}
func (rawParser) PendingFrom() (int64, bool) { return 0, false }
func (rawParser) Flush(*event.Record) bool   { return false }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// pki is one test's certificates: a CA, the server's pair, a client pair it issued, and a
// client pair from another CA.
type pki struct {
	ca                    *testpki.CA
	server, client, rogue testpki.Pair
}

func newPKI(t testing.TB) *pki {
	ca := testpki.NewCA(t, "skiff-test-ca")
	other := testpki.NewCA(t, "other-ca")
	return &pki{ca: ca, server: ca.Server(t, "webhook"), client: ca.Client(t, "kube-apiserver"), rogue: other.Client(t, "intruder")}
}

// fixture is an Input running on 127.0.0.1 with TLS, and what its reader delivered.
type fixture struct {
	in    *Input
	store *positions.Store
	pki   *pki
	url   string
	dir   string

	mu   sync.Mutex
	recs []string // messages delivered by the reader, in order of arrival
}

// start runs an Input with TLS (server certificate from a fresh CA) and the given changes to
// its config; the reader's chunks are recorded and acknowledged at once.
func start(t testing.TB, change func(*Config, *pki)) *fixture {
	t.Helper()
	f := &fixture{pki: newPKI(t)}
	data := t.TempDir()
	store, err := positions.Open(filepath.Join(data, "positions.json"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	f.store = store
	f.dir = filepath.Join(data, "webhook", "audit-in")
	cfg := Config{
		Name:            "audit-in",
		Listen:          "127.0.0.1:0",
		TLSCertFile:     f.pki.server.CertFile,
		TLSKeyFile:      f.pki.server.KeyFile,
		AuthDisable:     true,
		SpoolDir:        f.dir,
		NewParser:       newRawParser,
		Positions:       store,
		JanitorInterval: time.Hour,
		Logger:          quiet,
	}
	if change != nil {
		change(&cfg, f.pki)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.in = in
	if err := in.Listen(); err != nil {
		t.Fatal(err)
	}
	scheme := "https"
	if cfg.TLSDisable {
		scheme = "http"
	}
	f.url = scheme + "://" + in.Addr() + in.cfg.URLPath
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- in.Run(ctx, func(_ context.Context, c *event.Chunk) error {
			f.mu.Lock()
			for i := range c.Records {
				f.recs = append(f.recs, string(c.Records[i].Message))
			}
			f.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

// client returns an HTTPS client that trusts the fixture's CA and presents cert, if any.
func (f *fixture) client(cert *testpki.Pair) *http.Client {
	tc := &tls.Config{RootCAs: f.pki.ca.Pool()}
	if cert != nil {
		// Always present it, even when the server's list of acceptable CAs does not name its
		// issuer (crypto/tls would otherwise send none).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
}

// post sends body as JSON with the given headers and returns the status and response text;
// the status is -1 when the request failed (the text is the error).
func post(c *http.Client, url string, body []byte, header ...string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return -1, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(text)
}

// auditEvent is an audit.k8s.io/v1 Event as the webhook backend sends it (no kind, no
// apiVersion), indented so that compaction has work to do.
func auditEvent(id, stage, namespace string) map[string]any {
	return map[string]any{
		"level":      "Metadata",
		"auditID":    id,
		"stage":      stage,
		"requestURI": "/api/v1/namespaces/" + namespace + "/configmaps",
		"verb":       "create",
		"user":       map[string]any{"username": "alice", "groups": []string{"system:authenticated"}},
		"sourceIPs":  []string{"10.0.0.1"},
		"userAgent":  "kubectl/v1.37.2",
		"objectRef":  map[string]any{"resource": "configmaps", "namespace": namespace, "name": "cm-" + id, "apiVersion": "v1"},
		"responseStatus": map[string]any{
			"metadata": map[string]any{}, "code": 201,
		},
		"requestReceivedTimestamp": "2026-11-27T10:00:00.000000Z",
		"stageTimestamp":           "2026-11-27T10:00:00.002000Z",
		"annotations":              map[string]any{"authorization.k8s.io/decision": "allow", "note": "line\nbreak"},
	}
}

// eventList returns an indented EventList of n events whose auditIDs are prefix-0, prefix-1, ….
func eventList(t testing.TB, prefix string, n int) []byte {
	t.Helper()
	items := make([]any, n)
	for i := range items {
		items[i] = auditEvent(fmt.Sprintf("%s-%d", prefix, i), "ResponseComplete", "ns"+fmt.Sprint(i%3))
	}
	b, err := json.MarshalIndent(map[string]any{
		"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": items,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// spoolLines returns every line of every spool file in dir, files in name order.
func spoolLines(t testing.TB, dir string) []string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("%s does not end with a newline", n)
		}
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if l != "" {
				out = append(out, strings.TrimSuffix(l, "\n"))
			}
		}
	}
	return out
}

// auditIDs decodes lines as audit events, checks each is one, and returns their auditIDs.
func auditIDs(t testing.TB, lines []string) []string {
	t.Helper()
	ids := make([]string, 0, len(lines))
	for _, l := range lines {
		var ev struct {
			Kind, APIVersion, AuditID string
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("spooled line is not JSON: %v: %q", err, l)
		}
		if ev.Kind != "Event" || ev.APIVersion != "audit.k8s.io/v1" || ev.AuditID == "" {
			t.Fatalf("spooled line is not an audit event: %q", l)
		}
		ids = append(ids, ev.AuditID)
	}
	return ids
}

// waitFor polls cond until it holds or a minute passed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) delivered() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.recs...)
}
