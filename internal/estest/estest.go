// Package estest gives tests a real Elasticsearch. When SKIFF_ES_URL is set (the Makefile and CI
// start one instance for the whole run), tests use it; otherwise the first caller in a test binary
// starts a private instance with scripts/elasticsearch.sh, which Stop (called from TestMain) ends.
// There is no fallback to a fake: without Elasticsearch the test fails.
package estest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	mu      sync.Mutex
	url     string
	ownDir  string
	started bool
)

// URL returns the base URL of a running Elasticsearch, starting one if needed. It fails tb when
// none can be had.
func URL(tb testing.TB) string {
	tb.Helper()
	u, err := ensure()
	if err != nil {
		tb.Fatalf("elasticsearch: %v", err)
	}
	return u
}

func ensure() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if url != "" {
		return url, nil
	}
	if u := os.Getenv("SKIFF_ES_URL"); u != "" {
		url = strings.TrimRight(u, "/")
		return url, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "skiff-es-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "elasticsearch.sh"), "start", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("start with scripts/elasticsearch.sh: %w", err)
	}
	ownDir, started = dir, true
	url = strings.TrimSpace(string(out))
	return url, nil
}

// Stop stops the instance this process started, if any. Call it from TestMain after m.Run.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if !started {
		return
	}
	root, err := repoRoot()
	if err == nil {
		cmd := exec.Command(filepath.Join(root, "scripts", "elasticsearch.sh"), "stop", ownDir)
		cmd.Stderr = os.Stderr
		_ = cmd.Run()
	}
	_ = os.RemoveAll(ownDir)
	started, url = false, ""
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "elasticsearch.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("scripts/elasticsearch.sh not found above the working directory")
		}
		dir = parent
	}
}

// Do sends one request to Elasticsearch and returns the status and body. It fails tb on a
// transport error.
func Do(tb testing.TB, method, path string, body []byte) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, URL(tb)+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 60 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, b
}
