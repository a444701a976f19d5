package charttest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	chartDir = "../skiff"
	// release and namespace of the golden renders.
	goldenRelease   = "skiff"
	goldenNamespace = "logging"
)

// valueSet is one file of testdata/values: a way operators install the chart.
type valueSet struct {
	name   string
	values map[string]any
}

// valueSets loads every testdata/values/*.yaml, sorted by name.
func valueSets(t *testing.T) []valueSet {
	t.Helper()
	paths, err := filepath.Glob("testdata/values/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no value sets in testdata/values (%v)", err)
	}
	sort.Strings(paths)
	var sets []valueSet
	for _, p := range paths {
		v, err := chartutil.ReadValuesFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		sets = append(sets, valueSet{name: strings.TrimSuffix(filepath.Base(p), ".yaml"), values: v.AsMap()})
	}
	return sets
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// rendered is the chart rendered for one value set.
type rendered struct {
	// files maps each template's path (skiff/templates/x.yaml) to its output.
	files map[string]string
	// objects are the Kubernetes objects of all manifests, in file order then document order.
	objects []*unstructured.Unstructured
}

// render renders the chart as `helm install --namespace ns release` would, values validated
// against values.schema.json.
func render(t *testing.T, vals map[string]any, release, ns string) rendered {
	t.Helper()
	c := loadChart(t)
	top, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: ns, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	files, err := engine.Render(c, top)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r := rendered{files: map[string]string{}}
	for _, name := range sortedKeys(files) {
		text := files[name]
		if strings.TrimSpace(text) == "" || strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		r.files[name] = text
		if strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		objs, err := decodeObjects(text)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, text)
		}
		r.objects = append(r.objects, objs...)
	}
	return r
}

// decodeObjects splits a multi-document manifest into objects, skipping empty documents.
func decodeObjects(text string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document without apiVersion, kind or name: %v", m)
		}
		out = append(out, u)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// one returns the only object of kind, failing t when there is not exactly one.
func (r rendered) one(t *testing.T, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range r.objects {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, rendered %d", kind, len(found))
	}
	return found[0]
}

// all returns the objects of kind.
func (r rendered) all(kind string) []*unstructured.Unstructured {
	var found []*unstructured.Unstructured
	for _, o := range r.objects {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	return found
}

// into converts u into a typed object.
func into(t *testing.T, u *unstructured.Unstructured, dst any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, dst, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func (r rendered) daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	into(t, r.one(t, "DaemonSet"), &ds)
	return &ds
}

// kinds lists "Kind/name" of every object, for messages and the report.
func (r rendered) kinds() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// golden is the text compared with testdata/golden/<set>.yaml: every rendered file with its path.
func (r rendered) golden() []byte {
	var b bytes.Buffer
	for _, name := range sortedKeys(r.files) {
		fmt.Fprintf(&b, "# Source: %s\n%s", name, r.files[name])
		if !strings.HasSuffix(r.files[name], "\n") {
			b.WriteByte('\n')
		}
		b.WriteString("---\n")
	}
	return b.Bytes()
}

// TestRenderGolden renders every value set and compares with testdata/golden (go test -update
// rewrites them; review the diff).
func TestRenderGolden(t *testing.T) {
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			r := render(t, vs.values, goldenRelease, goldenNamespace)
			got := r.golden()
			path := filepath.Join("testdata", "golden", vs.name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered chart differs from %s (go test -update, then review the diff):\n%s", path, lineDiff(string(want), string(got)))
			}
			t.Logf("objects: %s", strings.Join(r.kinds(), " "))
		})
	}
}

// lineDiff shows the first line where two texts differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	at := func(lines []string) string {
		if i < len(lines) {
			return strconv.Quote(lines[i])
		}
		return "(end of text)"
	}
	return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, at(w), at(g))
}

// TestValuesRejectedBySchema: values.schema.json catches mistakes at install time, before skiff
// would refuse the configuration on every node.
func TestValuesRejectedBySchema(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   string // a fragment of the error
	}{
		{"unknown config key", "config:\n  outputz: []\n", "outputz"},
		{"misspelt output key", "config:\n  outputs:\n    - name: es\n      type: elasticsearch\n      hostz: [http://x:9200]\n", "hostz"},
		{"unknown output type", "config:\n  outputs:\n    - name: es\n      type: kafka\n", "outputs/0/type"},
		{"listen without port", "config:\n  http:\n    listen: localhost\n", "listen"},
		{"bad duration", "config:\n  shutdown_timeout: 30\n", "shutdown_timeout"},
		{"bad log level", "config:\n  log_level: verbose\n", "log_level"},
		{"relative host path", "hostPaths:\n  logs: var/log\n", "logs"},
		{"secret without key", "elasticsearch:\n  apiKeySecret:\n    name: x\n    key: \"\"\n", "key"},
		{"unknown top-level value", "replicas: 3\n", "replicas"},
		{"tail input without paths", "config:\n  inputs:\n    - name: c\n      type: containers\n", "paths"},
		{"misspelt webhook input key", "auditWebhook:\n  config:\n    inputs:\n      - name: w\n        type: audit_webhook\n        tls_cert: /x\n", "tls_cert"},
		{"webhook listen without port", "auditWebhook:\n  config:\n    inputs:\n      - name: w\n        type: audit_webhook\n        listen: localhost\n", "listen"},
		{"unknown auditWebhook value", "auditWebhook:\n  replicas: 2\n", "replicas"},
		{"webhook service port", "auditWebhook:\n  service:\n    port: 0\n", "port"},
		{"relative kubeconfig dir", "auditWebhook:\n  kubeconfig:\n    dir: etc/kubernetes\n", "dir"},
		{"kubeconfig server over http", "auditWebhook:\n  kubeconfig:\n    server: http://10.0.0.1/\n", "server"},
	}
	c := loadChart(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := chartutil.ReadValues([]byte(tc.values))
			if err != nil {
				t.Fatal(err)
			}
			_, err = chartutil.ToRenderValues(c, v.AsMap(), chartutil.ReleaseOptions{Name: "skiff", Namespace: "logging"}, chartutil.DefaultCapabilities)
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q: %v", tc.want, err)
			}
		})
	}
}
