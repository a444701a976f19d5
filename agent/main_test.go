package agent_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/internal/kubetest"
	"github.com/skiff-logs/skiff/outputs/file"
	"github.com/skiff-logs/skiff/parsers"
	"github.com/skiff-logs/skiff/parsers/audit"
)

// TestMain stops the kube-apiserver the tests may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

// filePlugins are the container log and audit parsers and the gzip file output, as cmd/skiff
// plugs them.
func filePlugins() agent.Plugins {
	return agent.Plugins{
		NewParser:      func(first []byte, max int) tail.Parser { return parsers.Detect(first, max) },
		NewAuditParser: func(max int) tail.Parser { return audit.New(max) },
		NewOutput: func(o config.Output, _ string, log *slog.Logger) (agent.Output, error) {
			return file.New(file.Config{Name: o.Name, Path: o.Path, FlushInterval: o.FlushInterval.D(), FlushBytes: int(o.FlushBytes), Logger: log})
		},
	}
}

// runAgent runs an agent with filePlugins until the returned function stops it.
func runAgent(t *testing.T, cfg *config.Config) (stop func()) {
	t.Helper()
	a, err := agent.New(cfg, filePlugins(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
}
