package agent_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/loggen"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
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
	stop := runAgent(t, cfg)

	all := metrics.OutputRecords.WithLabelValues("all", "delivered")
	before := metrics.Value(all)
	deadline := time.Now().Add(time.Minute)
	for metrics.Value(all)-before < float64(records) {
		if time.Now().After(deadline) {
			t.Fatalf("only %v of %d records delivered", metrics.Value(all)-before, records)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()

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

	checkPositionsAtEnd(t, filepath.Join(root, "data"), len(loggen.SampleContainers))
}
