package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/loggen"
)

//go:embed demo.yaml
var demoConfig string

// cmdDemo runs skiff's main job on an embedded default: it writes sample container logs in the
// kubelet layout, ships them to gzip files (and to Elasticsearch when --es is given), waits until
// every record is acknowledged, shuts down cleanly and prints where the output is.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	es := fs.String("es", "", "Elasticsearch URL (e.g. http://127.0.0.1:9200); empty: gzip files only")
	out := fs.String("out", "skiff-demo-out", "directory for the gzip files")
	n := fs.Int("lines", 2000, "messages per sample container")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up when not everything is delivered by then")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	work, err := os.MkdirTemp("", "skiff-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "skiff demo:", err)
		return 1
	}
	defer os.RemoveAll(work)
	outDir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintln(stderr, "skiff demo:", err)
		return 1
	}
	records, err := loggen.WriteSamples(work, *n, time.Now().Add(-time.Minute))
	if err != nil {
		fmt.Fprintln(stderr, "skiff demo: write sample logs:", err)
		return 1
	}
	text := demoConfig
	if *es != "" {
		text += "  - name: es\n    type: elasticsearch\n    match: [\"kube.**\"]\n    hosts: [" + strconv.Quote(*es) + "]\n    index: \"skiff-demo-%Y.%m.%d\"\n    flush_interval: 200ms\n"
	}
	os.Setenv("SKIFF_DEMO_DIR", work)
	os.Setenv("SKIFF_DEMO_OUT", outDir)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		printConfigError(stderr, "(embedded demo config)", err)
		return 1
	}
	fmt.Fprintf(stdout, "skiff demo: %d sample records in %d container logs under %s\n", records, len(loggen.SampleContainers), work)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- runAgent(ctx, cfg, newLogger(stderr, "warn"), func(*agent.Agent) {}) }()

	deadline := time.After(*timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !allDone(cfg, records) {
		select {
		case err := <-errc:
			fmt.Fprintln(stderr, "skiff demo:", err)
			return 1
		case <-deadline:
			fmt.Fprintf(stderr, "skiff demo: not everything was delivered within %v\n", *timeout)
			cancel()
			<-errc
			return 1
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	cancel()
	if err := <-errc; err != nil {
		fmt.Fprintln(stderr, "skiff demo:", err)
		return 1
	}
	for _, o := range cfg.Outputs {
		fmt.Fprintf(stdout, "skiff demo: output %q: %.0f delivered, %.0f rejected\n", o.Name,
			metrics.Value(metrics.OutputRecords.WithLabelValues(o.Name, "delivered")),
			metrics.Value(metrics.OutputRecords.WithLabelValues(o.Name, "rejected")))
	}
	fmt.Fprintf(stdout, "skiff demo: gzip files (one JSON document per line) are under %s\n", outDir)
	if *es != "" {
		fmt.Fprintf(stdout, "skiff demo: Elasticsearch indices skiff-demo-* at %s\n", *es)
	}
	return 0
}

// allDone reports whether every output has finished (delivered or dead-lettered) all records.
func allDone(cfg *config.Config, records int) bool {
	for _, o := range cfg.Outputs {
		done := metrics.Value(metrics.OutputRecords.WithLabelValues(o.Name, "delivered")) +
			metrics.Value(metrics.OutputRecords.WithLabelValues(o.Name, "rejected"))
		if done < float64(records) {
			return false
		}
	}
	return true
}
