package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(good, `
inputs: [{name: c, paths: ["/var/log/containers/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, hosts: ["http://127.0.0.1:9200"]}
  - {name: f, type: file, path: "/tmp/{tag}.gz"}
`)
	bad := filepath.Join(dir, "bad.yaml")
	write(bad, `
inputs: [{name: c, paths: ["/var/log/containers/*.log"], start_at: middle}]
outputs:
  - {name: es, type: elasticsearch, hosts: ["http://127.0.0.1:9200"], workers: -1}
  - {name: f, type: file}
`)
	tests := []struct {
		args     []string
		code     int
		contains []string
	}{
		{[]string{"validate", "--config", good}, 0, []string{"ok"}},
		{[]string{"validate", "--config", bad}, 1, []string{"inputs[0].start_at: must be beginning or end", "outputs[0].workers: must not be negative", "outputs[1].path: must not be empty"}},
		{[]string{"validate", "--config", filepath.Join(dir, "missing.yaml")}, 1, []string{"read config"}},
		{[]string{"validate"}, 2, []string{"--config FILE is required"}},
		{[]string{"run", "--config", bad}, 1, []string{"outputs[1].path"}},
		{[]string{"version"}, 0, []string{"skiff "}},
		{[]string{"frobnicate"}, 2, []string{"unknown command"}},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(tt.args, &out, &errOut)
		if code != tt.code {
			t.Errorf("skiff %v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errOut.String())
		}
		all := out.String() + errOut.String()
		for _, c := range tt.contains {
			if !strings.Contains(all, c) {
				t.Errorf("skiff %v: output %q does not contain %q", tt.args, all, c)
			}
		}
	}
}
