package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCLI runs the skiff binary with args and returns its exit code and output. A command still
// running after a minute fails the test (a bad config must stop skiff at once).
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("skiff %s still running after a minute; stderr:\n%s", strings.Join(args, " "), errb.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("skiff %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// TestBadConfig: `skiff validate` and `skiff run` reject broken configs with a non-zero exit and
// a message naming the key; a good config validates.
func TestBadConfig(t *testing.T) {
	e := newEnv(t, false)
	good := func() map[string]any {
		c := e.config(e.esOutput("es", "http://127.0.0.1:9200"), map[string]any{
			"name":  "archive",
			"type":  "file",
			"match": []string{"**"},
			"path":  filepath.Join(e.dir, "out/{tag}/%Y%m%d%H.log.gz"),
		})
		return c
	}
	input := func(c map[string]any) map[string]any { return c["inputs"].([]map[string]any)[0] }
	output := func(c map[string]any, i int) map[string]any { return c["outputs"].([]map[string]any)[i] }

	tests := []struct {
		name   string
		break_ func(c map[string]any)
		key    string
	}{
		{"unknown key", func(c map[string]any) { input(c)["bogus"] = 1 }, "inputs[0].bogus"},
		{"unknown top-level key", func(c map[string]any) { c["outputz"] = []string{} }, "outputz"},
		{"bad flush_bytes", func(c map[string]any) { output(c, 0)["flush_bytes"] = "lots" }, "outputs[0].flush_bytes"},
		{"negative flush_bytes", func(c map[string]any) { output(c, 1)["flush_bytes"] = "-5MiB" }, "outputs[1].flush_bytes"},
		{"missing path", func(c map[string]any) { delete(output(c, 1), "path") }, "outputs[1].path"},
		{"bad start_at", func(c map[string]any) { input(c)["start_at"] = "middle" }, "inputs[0].start_at"},
		{"bad duration", func(c map[string]any) { c["shutdown_timeout"] = "soon" }, "shutdown_timeout"},
		{"bad host", func(c map[string]any) { output(c, 0)["hosts"] = []string{"elasticsearch:9200"} }, "outputs[0].hosts[0]"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.break_(c)
			path := e.writeConfig(fmt.Sprintf("bad-%d.yaml", i), c)
			for _, cmd := range []string{"validate", "run"} {
				code, _, stderr := runCLI(t, cmd, "--config", path)
				if code == 0 {
					t.Errorf("skiff %s exited 0 for a config with a bad %s", cmd, tc.key)
				}
				if !strings.Contains(stderr, tc.key+":") {
					t.Errorf("skiff %s: stderr does not name %q:\n%s", cmd, tc.key, stderr)
				}
			}
		})
	}

	t.Run("good", func(t *testing.T) {
		path := e.writeConfig("good.yaml", good())
		code, stdout, stderr := runCLI(t, "validate", "--config", path)
		if code != 0 {
			t.Errorf("skiff validate exited %d for a good config:\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("version", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "version")
		if code != 0 || !strings.HasPrefix(stdout, "skiff ") {
			t.Errorf("skiff version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}
