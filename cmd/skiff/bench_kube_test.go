package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	kjson "sigs.k8s.io/json"

	"github.com/skiff-logs/skiff/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

// bulkCounter counts the documents of _bulk bodies, and those carrying metadata that only the
// apiserver knows (a namespace label, a pod label and the pod uid), not the file name.
type bulkCounter struct {
	mu             sync.Mutex
	docs, enriched int
}

func (c *bulkCounter) add(body []byte) {
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i < len(lines); i += 2 { // action, document, action, document…
		c.docs++
		d := lines[i]
		if bytes.Contains(d, []byte(`"cost-center":"cc-`)) && bytes.Contains(d, []byte(`"pod-template-hash":"7d4b9c6f8"`)) &&
			bytes.Contains(d, []byte(`"uid":"`)) {
			c.enriched++
		}
	}
}

// TestBenchKube runs `skiff bench --kube-dir` twice against a real kube-apiserver, the second
// time with fewer pods: every document is enriched, the table reports every file's pod found
// and a sync time, and the second run reuses what the first created and leaves exactly its own
// pods on the node.
func TestBenchKube(t *testing.T) {
	kc := kubetest.Env(t)
	work := t.TempDir()
	lineCount := regexp.MustCompile(`input: (\d+) lines`)
	row := regexp.MustCompile(`(?m)^1 +.* (\d+) +(\d+)$`)
	median := regexp.MustCompile(`(?m)^median .*sync \d+ ms, heap after sync [0-9.]+ MiB +peak RSS`)
	tests := []struct{ pods, namespaces int }{{7, 3}, {4, 2}}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d-pods-%d-namespaces", tc.pods, tc.namespaces), func(t *testing.T) {
			var bulk bulkCounter
			es := httptest.NewServer(blackholeHandler(bulk.add))
			defer es.Close()
			var stdout, stderr bytes.Buffer
			code := cmdBench([]string{"--kube-dir", kc.Dir, "--pods", strconv.Itoa(tc.pods), "--namespaces", strconv.Itoa(tc.namespaces),
				"--size", "300KiB", "--runs", "1", "--es", es.URL, "--dir", work}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			out := stdout.String()
			m := lineCount.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no line count in\n%s", out)
			}
			lines, _ := strconv.Atoi(m[1])
			bulk.mu.Lock()
			docs, enriched := bulk.docs, bulk.enriched
			bulk.mu.Unlock()
			if docs != lines || enriched != lines {
				t.Errorf("%d documents, %d enriched; want all %d", docs, enriched, lines)
			}
			if m := row.FindStringSubmatch(out); m == nil || m[1] != strconv.Itoa(tc.pods) || m[2] != "0" {
				t.Errorf("want run 1 to report %d files found, 0 missing:\n%s", tc.pods, out)
			}
			if !median.MatchString(out) {
				t.Errorf("no median line with sync time and heap:\n%s", out)
			}

			list, err := kc.Client.CoreV1().Pods(metav1.NamespaceAll).List(context.Background(), metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("spec.nodeName", benchNode).String(),
			})
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, p := range list.Items {
				got = append(got, p.Namespace+"/"+p.Name)
				if p.Status.Phase != "Running" || p.Status.PodIP == "" {
					t.Errorf("pod %s/%s: phase %s ip %q, want Running with an IP", p.Namespace, p.Name, p.Status.Phase, p.Status.PodIP)
				}
			}
			for i := range tc.pods {
				p := benchPod(i, fmt.Sprintf("skiff-bench-%03d", i%tc.namespaces))
				want = append(want, p.Namespace+"/"+p.Name)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("pods on %s: %v, want %v", benchNode, got, want)
			}
		})
	}
}

// TestBenchKubeFiles checks --files against --pods with --kube-dir: a multiple of the pods (one
// file per container) or left out; the check comes before the apiserver is contacted.
func TestBenchKubeFiles(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"--pods", "3", "--namespaces", "1", "--files", "4"}, 2},
		{[]string{"--pods", "3", "--namespaces", "1", "--files", "2"}, 2},
		{[]string{"--pods", "2", "--namespaces", "3"}, 2},
		// Valid: it fails later (1), on the kubeconfig the directory does not hold.
		{[]string{"--pods", "3", "--namespaces", "1", "--files", "6"}, 1},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--kube-dir", t.TempDir(), "--size", "64KiB", "--runs", "1", "--dir", t.TempDir(), "--es", "http://127.0.0.1:1"}, tt.args...)
		if code := cmdBench(args, &stdout, &stderr); code != tt.code {
			t.Errorf("%v: exit %d, want %d\n%s", tt.args, code, tt.code, stderr.String())
		}
	}
}

func TestWithSidecars(t *testing.T) {
	p := withSidecars(benchPod(0, "ns"), 2)
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	if want := []string{"app", "sidecar-1", "sidecar-2"}; !slices.Equal(names, want) {
		t.Errorf("containers %v, want %v", names, want)
	}
}

// TestBenchPodJSON: the benchmark's pods, sidecars included, are valid core/v1 Pod JSON (no
// field core/v1 lacks, names matched case-sensitively) and as fat as meant: what the cache is
// to trim is there.
func TestBenchPodJSON(t *testing.T) {
	b, err := json.Marshal(withSidecars(benchPod(3, "ns-1"), 1))
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	strict, err := kjson.UnmarshalStrict(b, &p)
	if err != nil || len(strict) > 0 {
		t.Fatalf("decode as core/v1 Pod: %v %v\n%s", err, strict, b)
	}
	if p.Namespace != "ns-1" || p.Name != "svc-03-7d4b9c6f8-x0003" || p.Spec.NodeName != benchNode || len(p.OwnerReferences) != 1 ||
		len(p.Labels) != 8 || len(p.Annotations) != 8 || len(p.Spec.Containers) != 2 || len(p.Spec.Volumes) != 1 ||
		p.Spec.Volumes[0].ConfigMap == nil || p.Spec.Volumes[0].ConfigMap.Name != "svc-03-config" {
		t.Fatalf("pod %+v", p)
	}
	app, sidecar := p.Spec.Containers[0], p.Spec.Containers[1]
	if app.Name != "app" || len(app.Env) != 12 || len(app.Ports) != 2 || app.LivenessProbe == nil || app.ReadinessProbe == nil ||
		app.LivenessProbe.HTTPGet == nil || app.LivenessProbe.HTTPGet.Port.String() != "http" ||
		app.Resources.Requests.Cpu().String() != "100m" || app.Resources.Limits.Memory().String() != "256Mi" ||
		len(app.VolumeMounts) != 1 || app.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("container app %+v", app)
	}
	if sidecar.Name != "sidecar-1" || len(sidecar.Env) != 12 || sidecar.Ports != nil || sidecar.LivenessProbe != nil {
		t.Errorf("container sidecar-1 %+v", sidecar)
	}
}

// TestNoKubernetesAPITypes: skiff's binary links no k8s.io/api package. k8s.io/api/core/v1 alone
// is ~1.75 MB of code and read-only data, resident on every node; agent/kube/core has the few
// types skiff reads (tests may use k8s.io/api).
func TestNoKubernetesAPITypes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	var deps int
	for line := range strings.Lines(string(out)) {
		deps++
		if strings.HasPrefix(line, "k8s.io/api/") {
			t.Errorf("skiff links %s", strings.TrimSpace(line))
		}
	}
	if deps < 100 {
		t.Fatalf("go list -deps listed %d packages, too few to be skiff's:\n%s", deps, out)
	}
}
