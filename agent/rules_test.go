package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// writeAuditLog writes n audit events, as the kube-apiserver's log backend does, spread over
// two hours and the namespaces given ("" for cluster-scoped objects, "-" for non-resource
// requests), and returns the "<auditID>-<stage>" of each event by the namespace its file must
// hold ("none" for both kinds without a namespace).
func writeAuditLog(t *testing.T, path string, n int, namespaces []string) map[string][]string {
	t.Helper()
	start := time.Date(2024, 6, 11, 9, 30, 0, 0, time.UTC)
	want := map[string][]string{}
	var b strings.Builder
	for i := range n {
		ns := namespaces[i%len(namespaces)]
		id := fmt.Sprintf("%08x-1b1a-4c3c-9d0e-%012x", i, i*7919)
		stage, code := "ResponseComplete", `,"responseStatus":{"metadata":{},"code":200}`
		if i%3 == 0 {
			stage, code = "RequestReceived", ""
		}
		ts := start.Add(time.Duration(i) * 2 * time.Hour / time.Duration(n)).Format("2006-01-02T15:04:05.000000Z")
		var obj string
		switch ns {
		case "-":
			obj = `"requestURI":"/livez","verb":"get"`
		case "":
			obj = fmt.Sprintf(`"requestURI":"/api/v1/namespaces/ns-%d","verb":"delete","objectRef":{"resource":"namespaces","name":"ns-%d","apiVersion":"v1"}`, i, i)
		default:
			obj = fmt.Sprintf(`"requestURI":"/api/v1/namespaces/%s/configmaps/cm-%d","verb":"get","objectRef":{"resource":"configmaps","namespace":"%s","name":"cm-%d","apiVersion":"v1"}`, ns, i, ns, i)
		}
		fmt.Fprintf(&b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s","stage":"%s",%s,"user":{"username":"user-%d","groups":["system:authenticated"]},"sourceIPs":["10.0.0.%d"],"userAgent":"kubectl/v1.30.2"%s,"requestReceivedTimestamp":"%s","stageTimestamp":"%s","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`+"\n",
			id, stage, obj, i%5, i%250, code, ts, ts)
		file := ns
		if ns == "" || ns == "-" {
			file = "none"
		}
		want[file] = append(want[file], id+"-"+stage)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return want
}

// TestAuditToFilesPerNamespace is the fluentd job of the Kubernetes auditing documentation
// (in_tail of the apiserver's JSON audit log, record_transformer + rewrite_tag_filter to
// audit.<objectRef.namespace> or audit.none, forest + file with gzip and an hourly
// time_slice_format, remove_prefix audit) as skiff config: each namespace's hourly gzip files
// must hold exactly that namespace's events, once each.
func TestAuditToFilesPerNamespace(t *testing.T) {
	root := t.TempDir()
	logPath := filepath.Join(root, "kube-audit")
	want := writeAuditLog(t, logPath, 600, []string{"shop", "payments", "kube-system", "", "shop", "-"})
	total := 0
	for _, ids := range want {
		total += len(ids)
	}
	out := filepath.Join(root, "out")
	cfg, err := config.Parse([]byte(`
data_dir: ` + filepath.Join(root, "data") + `
inputs:
  - name: kube-audit
    type: audit
    paths: ["` + logPath + `"]
rewrite_tag:
  - match: ["audit"]
    key: objectRef.namespace
    pattern: "^(.+)$"
    tag: "audit.$1"
    default: "audit.none"
records:
  - match: ["audit.**"]
    set: {cluster: test, routed_as: "${tag}"}
    remove: [annotations]
outputs:
  - name: audit-per-namespace
    type: file
    match: ["audit.**"]
    path: "` + out + `/audit-{tag_parts[1]}.%Y%m%d%H.log.gz"
    flush_interval: 50ms
  - name: audit-per-tag
    type: file
    match: ["audit.*"]
    path: "` + out + `/by-tag/audit-{tag}.%Y%m%d%H.log.gz"
    flush_interval: 50ms
`))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg, filePlugins(), log)
	if err != nil {
		t.Fatal(err)
	}
	perNS := metrics.OutputRecords.WithLabelValues("audit-per-namespace", "delivered")
	perTag := metrics.OutputRecords.WithLabelValues("audit-per-tag", "delivered")
	before, beforeTag := metrics.Value(perNS), metrics.Value(perTag)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for metrics.Value(perNS)-before < float64(total) || metrics.Value(perTag)-beforeTag < float64(total) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v and %v of %d records", metrics.Value(perNS)-before, metrics.Value(perTag)-beforeTag, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// read returns the "<auditID>-<stage>" of the documents in each file's namespace, checking
	// each document against the file it is in.
	read := func(glob string, name *regexp.Regexp) map[string][]string {
		got := map[string][]string{}
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			m := name.FindStringSubmatch(filepath.Base(p))
			if m == nil {
				t.Fatalf("unexpected file %s", p)
			}
			ns, hour := m[1], m[2]
			complete, err := gzipfile.ReadAll(p, func(line []byte) error {
				var doc struct {
					Timestamp   string `json:"@timestamp"`
					Tag         string
					AuditID     string
					Stage       string
					Cluster     string
					RoutedAs    string `json:"routed_as"`
					ObjectRef   struct{ Namespace string }
					Annotations map[string]string
				}
				if err := json.Unmarshal(line, &doc); err != nil {
					return err
				}
				docNS := doc.ObjectRef.Namespace
				if docNS == "" {
					docNS = "none"
				}
				ts, _ := time.Parse(time.RFC3339, doc.Timestamp)
				if docNS != ns || doc.Tag != "audit."+ns || doc.RoutedAs != doc.Tag || doc.Cluster != "test" ||
					doc.Annotations != nil || ts.Format("2006010215") != hour {
					return fmt.Errorf("document in the wrong file, or not rewritten as configured: %s", line)
				}
				got[ns] = append(got[ns], doc.AuditID+"-"+doc.Stage)
				return nil
			})
			if err != nil || !complete {
				t.Fatalf("read %s: complete=%v err=%v", p, complete, err)
			}
		}
		return got
	}
	check := func(what string, got map[string][]string) {
		t.Helper()
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
			t.Fatalf("%s: files for %v, want %v", what, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
		for ns, ids := range want {
			g := slices.Sorted(slices.Values(got[ns]))
			if w := slices.Sorted(slices.Values(ids)); !slices.Equal(g, w) {
				t.Errorf("%s: namespace %s holds %d events, want exactly its %d", what, ns, len(g), len(w))
			}
		}
	}
	check("per namespace", read(filepath.Join(out, "audit-*.log.gz"), regexp.MustCompile(`^audit-([a-z0-9-]+)\.(\d{10})\.log\.gz$`)))
	check("per tag", read(filepath.Join(out, "by-tag", "audit-*.log.gz"), regexp.MustCompile(`^audit-audit\.([a-z0-9-]+)\.(\d{10})\.log\.gz$`)))
	if hours, _ := filepath.Glob(filepath.Join(out, "audit-shop.*.log.gz")); len(hours) != 3 { // 09:30 to 11:30
		t.Errorf("shop has %d hourly files, want 3: %v", len(hours), hours)
	}

	store, err := positions.Open(filepath.Join(root, "data", "positions.json"), log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if e := store.Entries(); len(e) != 1 || e[0].Offset != fi.Size() {
		t.Fatalf("positions %+v, want the audit log at its end (%d)", e, fi.Size())
	}
}
