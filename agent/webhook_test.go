package agent_test

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
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/testpki"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// TestWebhookToFiles runs the agent with an audit_webhook input (HTTPS, client certificate and
// token) and a gzip file output, over two lives on one data_dir: the first stops right after its
// last 200, before its reader caught up; the second ships the rest and its own events. Every
// event must be in the output exactly once, and the spool files of the first life, delivered,
// must be deleted.
func TestWebhookToFiles(t *testing.T) {
	root := t.TempDir()
	ca := testpki.NewCA(t, "skiff-ca")
	server, client := ca.Server(t, "webhook"), ca.Client(t, "kube-apiserver")
	tokenFile := filepath.Join(root, "token")
	if err := os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out")
	cfg, err := config.Parse([]byte(`
data_dir: ` + filepath.Join(root, "data") + `
inputs:
  - name: apiserver
    type: audit_webhook
    listen: "127.0.0.1:0"
    tls_cert_file: ` + server.CertFile + `
    tls_key_file: ` + server.KeyFile + `
    client_ca_file: ` + ca.CertFile + `
    token_file: ` + tokenFile + `
    spool_file_bytes: 16KiB
outputs:
  - name: webhook-files
    type: file
    match: ["audit"]
    path: "` + out + `/{tag}.log.gz"
    flush_interval: 50ms
`))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS},
	}}}
	delivered := metrics.OutputRecords.WithLabelValues("webhook-files", "delivered")
	start := metrics.Value(delivered)
	spool := filepath.Join(root, "data", "webhook", "apiserver")

	// life runs one agent, posts posts EventLists of 10 events (each twice: two stages), waits
	// until the output delivered want records in all and the files gone are deleted (unless want
	// is 0), and stops it.
	life := func(name string, posts int, want float64, gone []string) {
		a, err := agent.New(cfg, filePlugins(), log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		waitUntil(t, "the webhook to listen", func() bool { return a.InputAddr("apiserver") != "" })
		url := "https://" + a.InputAddr("apiserver") + "/"
		for p := 0; p < posts; p++ {
			body := auditList(t, fmt.Sprintf("%s-%d", name, p), 10)
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer t0ken")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST: %d %s", resp.StatusCode, msg)
			}
		}
		if want > 0 {
			waitUntil(t, "delivery", func() bool { return metrics.Value(delivered)-start >= want })
			waitUntil(t, "the janitor to delete the delivered spool files", func() bool {
				for _, f := range gone {
					if _, err := os.Stat(f); !os.IsNotExist(err) {
						return false
					}
				}
				return true
			})
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}

	life("first", 10, 0, nil)
	t.Logf("first life delivered %v", metrics.Value(delivered)-start)
	firstFiles, _ := filepath.Glob(filepath.Join(spool, "*.log"))
	if len(firstFiles) < 2 {
		t.Fatalf("the first life left %d spool files; want several (spool_file_bytes 16KiB)", len(firstFiles))
	}
	life("second", 5, 300, firstFiles)

	seen := map[string]int{}
	paths, _ := filepath.Glob(filepath.Join(out, "*.log.gz"))
	for _, p := range paths {
		complete, err := gzipfile.ReadAll(p, func(line []byte) error {
			var doc struct{ AuditID, Stage, Tag string }
			if err := json.Unmarshal(line, &doc); err != nil {
				return err
			}
			if doc.AuditID == "" || doc.Tag != "audit" {
				return fmt.Errorf("not an audit document: %s", line)
			}
			seen[doc.AuditID+"/"+doc.Stage]++
			return nil
		})
		if err != nil || !complete {
			t.Fatalf("read %s: complete=%v err=%v", p, complete, err)
		}
	}
	if len(seen) != 300 {
		t.Errorf("the output holds %d distinct events, want 300", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s is in the output %d times", k, n)
		}
	}
}

// auditList is an EventList as the apiserver's webhook backend sends it: items without kind and
// apiVersion, each request's events at two stages.
func auditList(t *testing.T, prefix string, n int) []byte {
	t.Helper()
	var items []any
	for i := 0; i < n; i++ {
		for _, stage := range []string{"RequestReceived", "ResponseComplete"} {
			items = append(items, map[string]any{
				"level": "Metadata", "auditID": fmt.Sprintf("%s-%d", prefix, i), "stage": stage,
				"requestURI": "/api/v1/namespaces/ns1/configmaps", "verb": "create",
				"user":                     map[string]any{"username": "alice", "groups": []string{"system:authenticated"}},
				"objectRef":                map[string]any{"resource": "configmaps", "namespace": "ns1", "name": "cm", "apiVersion": "v1"},
				"requestReceivedTimestamp": "2026-11-27T10:00:00.000000Z",
				"stageTimestamp":           "2026-11-27T10:00:00.001000Z",
			})
		}
	}
	b, err := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": items})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
