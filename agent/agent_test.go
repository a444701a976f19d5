package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/internal/loggen"
	"github.com/skiff-logs/skiff/outputs/file"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
	"github.com/skiff-logs/skiff/parsers"
)

// TestPipelineToFiles runs the whole agent — tail, parsers, routing, the gzip file output and the
// positions store — on sample kubelet logs, and checks that every record arrives once, in the
// output its tag routes to, and that after shutdown the positions stand at the files' ends.
func TestPipelineToFiles(t *testing.T) {
	root := t.TempDir()
	records, err := loggen.WriteSamples(root, 500, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out")
	cfg, err := config.Parse([]byte(`
data_dir: ` + filepath.Join(root, "data") + `
inputs:
  - name: containers
    paths: ["` + filepath.Join(root, "var/log/containers/*.log") + `"]
outputs:
  - name: shop
    type: file
    match: ["kube.shop.**"]
    path: "` + out + `/shop/{kubernetes.namespace}/{tag_parts[3]}-%Y%m%d%H.log.gz"
    flush_interval: 50ms
  - name: all
    type: file
    path: "` + out + `/all/{tag}.log.gz"
    flush_interval: 50ms
http:
  listen: "127.0.0.1:0"
`))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg, agent.Plugins{
		NewParser: func(first []byte, max int) tail.Parser { return parsers.Detect(first, max) },
		NewOutput: func(o config.Output, _ string, log *slog.Logger) (agent.Output, error) {
			return file.New(file.Config{Name: o.Name, Path: o.Path, FlushInterval: o.FlushInterval.D(), FlushBytes: int(o.FlushBytes), Logger: log})
		},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	all := metrics.OutputRecords.WithLabelValues("all", "delivered")
	before := metrics.Value(all)
	deadline := time.Now().Add(time.Minute)
	for metrics.Value(all)-before < float64(records) {
		if time.Now().After(deadline) {
			t.Fatalf("only %v of %d records delivered", metrics.Value(all)-before, records)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	count := func(glob string) (n int, namespaces map[string]int) {
		namespaces = map[string]int{}
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			complete, err := gzipfile.ReadAll(p, func(line []byte) error {
				var doc struct {
					Kubernetes struct{ Namespace string } `json:"kubernetes"`
				}
				if err := json.Unmarshal(line, &doc); err != nil {
					return err
				}
				n++
				namespaces[doc.Kubernetes.Namespace]++
				return nil
			})
			if err != nil || !complete {
				t.Fatalf("read %s: complete=%v err=%v", p, complete, err)
			}
		}
		return n, namespaces
	}
	if n, _ := count(filepath.Join(out, "all", "*.log.gz")); n != records {
		t.Errorf("output all holds %d documents, want %d", n, records)
	}
	n, ns := count(filepath.Join(out, "shop", "*", "*.log.gz"))
	if n != 2*501 || len(ns) != 1 || ns["shop"] != n {
		t.Errorf("output shop holds %d documents by namespace %v, want 1002 all in shop", n, ns)
	}

	store, err := positions.Open(filepath.Join(root, "data", "positions.json"), log)
	if err != nil {
		t.Fatal(err)
	}
	entries := store.Entries()
	if len(entries) != len(loggen.SampleContainers) {
		t.Fatalf("positions hold %d files, want %d", len(entries), len(loggen.SampleContainers))
	}
	for _, e := range entries {
		target := e.Target
		if target == "" {
			target = e.Path
		}
		fi, err := os.Stat(target)
		if err != nil {
			t.Fatal(err)
		}
		if e.Offset != fi.Size() {
			t.Errorf("%s: position %d, file size %d", e.Path, e.Offset, fi.Size())
		}
	}
}
