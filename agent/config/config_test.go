package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadIssueExample(t *testing.T) {
	c, err := Load("testdata/issue-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/skiff" || len(c.Inputs) != 1 || len(c.Outputs) != 2 {
		t.Fatalf("unexpected config: %+v", c)
	}
	es := c.Outputs[0]
	if es.FlushBytes != 5<<20 || es.FlushInterval.D() != time.Second || es.Index != "k8s-logs-%Y.%m.%d" {
		t.Errorf("es output: %+v", es)
	}
	if c.Inputs[0].MaxLineBytes != DefaultMaxLineBytes || c.Inputs[0].StartAt != "beginning" {
		t.Errorf("input defaults: %+v", c.Inputs[0])
	}
	if c.Outputs[1].FlushBytes != DefaultFileFlushBytes {
		t.Errorf("file output defaults: %+v", c.Outputs[1])
	}
	if c.HTTP.Listen != ":2020" {
		t.Errorf("http.listen = %q", c.HTTP.Listen)
	}
}

const base = `
inputs:
  - name: c
    paths: ["/var/log/containers/*.log"]
outputs:
  - name: es
    type: elasticsearch
    hosts: ["http://127.0.0.1:9200"]
  - name: f
    type: file
    path: /tmp/x/{tag}.gz
`

func TestErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", base + "bogus: 1\n", "bogus: unknown key"},
		{"unknown nested key", strings.Replace(base, "    path: /tmp", "    pathh: /tmp", 1), "outputs[1].pathh: unknown key"},
		{"bad byte size", base + "", ""},
		{"bad size value", strings.Replace(base, "type: file", "type: file\n    flush_bytes: lots", 1), "outputs[1].flush_bytes: want a size"},
		{"negative size", strings.Replace(base, "type: file", "type: file\n    flush_bytes: -1", 1), "outputs[1].flush_bytes"},
		{"bad duration", strings.Replace(base, "type: file", "type: file\n    flush_interval: 5", 1), "outputs[1].flush_interval: want a duration"},
		{"missing path", strings.Replace(base, "    path: /tmp/x/{tag}.gz\n", "", 1), "outputs[1].path: must not be empty"},
		{"field of other type", strings.Replace(base, "type: file", "type: file\n    hosts: [\"http://x:9200\"]", 1), "outputs[1].hosts: only applies to elasticsearch"},
		{"bad host", strings.Replace(base, "http://127.0.0.1:9200", "127.0.0.1:9200", 1), "outputs[0].hosts[0]: want a URL"},
		{"unknown type", strings.Replace(base, "type: file", "type: kafka", 1), "outputs[1].type: unknown output type"},
		{"spool keys", strings.Replace(base, "type: elasticsearch", "type: elasticsearch\n    fallback_after: 10s\n    spool_max_bytes: 2GiB", 1), ""},
		{"bad fallback_after", strings.Replace(base, "type: elasticsearch", "type: elasticsearch\n    fallback_after: 10", 1), "outputs[0].fallback_after: want a duration"},
		{"bad spool_max_bytes", strings.Replace(base, "type: elasticsearch", "type: elasticsearch\n    spool_max_bytes: much", 1), "outputs[0].spool_max_bytes: want a size"},
		{"negative fallback_after", strings.Replace(base, "type: elasticsearch", "type: elasticsearch\n    fallback_after: -1s", 1), "outputs[0].fallback_after: must not be negative"},
		{"spool key on file output", strings.Replace(base, "type: file", "type: file\n    spool_max_bytes: 1GiB", 1), "outputs[1].spool_max_bytes: only applies to elasticsearch"},
		{"bad match", strings.Replace(base, "type: file", "type: file\n    match: [\"a..b\"]", 1), "outputs[1].match[0]: empty part"},
		{"duplicate name", strings.Replace(base, "name: f", "name: es", 1), "outputs[1].name: \"es\" is already"},
		{"bad start_at", strings.Replace(base, "    paths:", "    start_at: middle\n    paths:", 1), "inputs[0].start_at: must be beginning or end"},
		{"no inputs", "outputs: []\n", "inputs: at least one input"},
		{"list where mapping", "inputs: {a: 1}\n", "inputs: want a list"},
		{"duplicate key", base + "data_dir: /a\ndata_dir: /b\n", "data_dir"},
		{"bad memory_limit", base + "memory_limit: plenty\n", "memory_limit: want a size"},
		{"negative memory_limit", base + "memory_limit: -1\n", "memory_limit"},
	}
	for _, tt := range tests {
		if tt.want == "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("SKIFF_TEST_HOST", "http://es.example:9200")
	y := strings.Replace(base, "http://127.0.0.1:9200", "${SKIFF_TEST_HOST}", 1)
	y = strings.Replace(y, "/tmp/x/", "${SKIFF_TEST_UNSET_DIR:-/tmp/y}/$${tag}/", 1)
	c, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if c.Outputs[0].Hosts[0] != "http://es.example:9200" {
		t.Errorf("host = %q", c.Outputs[0].Hosts[0])
	}
	if c.Outputs[1].Path != "/tmp/y/${tag}/{tag}.gz" {
		t.Errorf("path = %q", c.Outputs[1].Path)
	}
	_, err = Parse([]byte(strings.Replace(base, "http://127.0.0.1:9200", "${SKIFF_TEST_NOT_SET}", 1)))
	if err == nil || !strings.Contains(err.Error(), "SKIFF_TEST_NOT_SET") {
		t.Fatalf("unset variable: err = %v", err)
	}
}

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(base, "type: elasticsearch", "type: elasticsearch\n    api_key_file: "+key, 1)
	c, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if c.Outputs[0].APIKey != "c2VjcmV0" {
		t.Errorf("api key = %q", c.Outputs[0].APIKey)
	}
	y = strings.Replace(base, "type: elasticsearch", "type: elasticsearch\n    password_file: "+filepath.Join(dir, "missing")+"\n    username: u", 1)
	_, err = Parse([]byte(y))
	if err == nil || !strings.Contains(err.Error(), "outputs[0].password_file: cannot read secret file") {
		t.Fatalf("missing secret file: err = %v", err)
	}
	if strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatal("error leaks a secret")
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"5MiB": 5 << 20, "512KB": 512000, "1024": 1024, "1.5KiB": 1536, "2 GiB": 2 << 30, "7B": 7} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "abc", "1XB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	if b, err := os.ReadFile("testdata/issue-example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("inputs: [{name: a, paths: ['*']}]\noutputs: [{name: b, type: file, path: x}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil && c.Validate() != nil {
			t.Fatal("Parse accepted a config that Validate rejects")
		}
	})
}

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       ByteSize
	}{
		{"default", base, DefaultMemoryLimit},
		{"set", base + "memory_limit: 128MiB\n", 128 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if c.MemoryLimit != tt.want {
				t.Errorf("MemoryLimit = %d, want %d", c.MemoryLimit, tt.want)
			}
		})
	}
}

func TestKubernetesDefaults(t *testing.T) {
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Kubernetes
	if k.Enabled || k.Kubeconfig != "" || k.NodeName != "" || len(k.PodAnnotations) != 0 {
		t.Errorf("kubernetes is configured without a kubernetes section: %+v", k)
	}
	if !*k.NamespaceLabels || !*k.Dedot || k.DeletedPodGrace.D() != 5*time.Minute || k.JSONKey != "json" || k.SyncTimeout.D() != 10*time.Second {
		t.Errorf("kubernetes defaults: %+v", k)
	}
}

func TestKubernetesSection(t *testing.T) {
	t.Setenv("SKIFF_TEST_NODE", "node-a")
	c, err := Parse([]byte(base + `
kubernetes:
  enabled: true
  kubeconfig: /etc/kube/config
  node_name: ${SKIFF_TEST_NODE}
  pod_annotations: [team, example.com/owner]
  namespace_labels: false
  dedot: false
  deleted_pod_grace: 90s
  json_key: app
  sync_timeout: 2s
`))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Kubernetes
	if !k.Enabled || k.Kubeconfig != "/etc/kube/config" || k.NodeName != "node-a" ||
		strings.Join(k.PodAnnotations, ",") != "team,example.com/owner" || *k.NamespaceLabels || *k.Dedot ||
		k.DeletedPodGrace.D() != 90*time.Second || k.JSONKey != "app" || k.SyncTimeout.D() != 2*time.Second {
		t.Errorf("kubernetes: %+v", k)
	}
}

func TestKubernetesErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, section, want string
	}{
		{"no node name", "enabled: true", "kubernetes.node_name: must not be empty when kubernetes.enabled"},
		{"empty node name", "enabled: true\n  node_name: \"\"", "kubernetes.node_name: must not be empty"},
		{"negative grace", "deleted_pod_grace: -1s", "kubernetes.deleted_pod_grace: must not be negative"},
		{"bad grace", "deleted_pod_grace: 5", "kubernetes.deleted_pod_grace: want a duration"},
		{"negative sync timeout", "sync_timeout: -3s", "kubernetes.sync_timeout: must not be negative"},
		{"json key collides", "json_key: message", `kubernetes.json_key: "message" is a field skiff writes itself`},
		{"empty annotation", "pod_annotations: [a, \"\"]", "kubernetes.pod_annotations[1]: must not be empty"},
		{"annotation twice", "pod_annotations: [a, b, a]", `kubernetes.pod_annotations[2]: "a" is listed twice`},
		{"unknown key", "node: x", "kubernetes.node: unknown key"},
		{"bool expected", "dedot: maybe", "kubernetes.dedot"},
		{"list expected", "pod_annotations: team", "kubernetes.pod_annotations: want a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(base + "kubernetes:\n  " + tt.section + "\n"))
			if err == nil {
				t.Fatalf("no error; want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}
