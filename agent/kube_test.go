package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
	"github.com/skiff-logs/skiff/internal/kubetest"
	"github.com/skiff-logs/skiff/internal/loggen"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// kubeDoc is the part of a document the enrichment writes.
type kubeDoc struct {
	Message    string `json:"message"`
	Kubernetes struct {
		Namespace       string            `json:"namespace"`
		NamespaceLabels map[string]string `json:"namespace_labels"`
		Pod             struct{ Name, UID, IP string }
		Labels          map[string]string `json:"labels"`
		Annotations     map[string]string `json:"annotations"`
		Container       struct {
			Name, Image string
			Init        bool
		}
		Node struct{ Name string }
	} `json:"kubernetes"`
	Container struct{ ID string } `json:"container"`
	App       map[string]any      `json:"app"`
}

// kubeFixture is a namespace with three running pods on the test node and their log files:
// web (an init container "migrate" and "web", read through /var/log/pods), quiet (annotated
// skiff.io/exclude) and structured (annotated skiff.io/parser: json), both read through
// /var/log/containers.
type kubeFixture struct {
	t     *testing.T
	kc    *kubetest.Cluster
	root  string
	ns    string
	files map[string]*os.File // by "<pod>/<container>"
	t0    time.Time
	lines int
}

func newKubeFixture(t *testing.T) *kubeFixture {
	kc := kubetest.Env(t)
	f := &kubeFixture{t: t, kc: kc, root: t.TempDir(), ns: kubetest.UniqueName("skiff-agent"),
		files: map[string]*os.File{}, t0: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	kc.CreateNamespace(t, f.ns, map[string]string{"team": "checkout"})
	pods := []*corev1.Pod{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app.kubernetes.io/name": "web"},
				Annotations: map[string]string{"example.com/owner": "shop"}},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate:1"}},
				Containers:     []corev1.Container{{Name: "web", Image: "nginx:1.29"}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "quiet", Annotations: map[string]string{"skiff.io/exclude": "true"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "noisy", Image: "noisy:1"}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "structured", Annotations: map[string]string{"skiff.io/parser": "json"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "api:2"}}},
		},
	}
	for i, p := range pods {
		created := kc.CreatePod(t, f.ns, p)
		kc.MarkPodRunning(t, f.ns, p.Name, fmt.Sprintf("10.9.0.%d", i+1))
		for _, cs := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			c := loggen.Container{Namespace: f.ns, Pod: p.Name, UID: string(created.UID), Name: cs.Name,
				ID: kubetest.ContainerID(f.ns, p.Name, cs.Name)}
			file, err := c.Create(f.root)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { file.Close() })
			f.files[p.Name+"/"+cs.Name] = file
		}
	}
	return f
}

// write appends CRI lines to a container's file.
func (f *kubeFixture) write(container string, msgs ...string) {
	var b []byte
	for _, m := range msgs {
		f.lines++
		b = loggen.AppendLine(b, loggen.CRI, f.t0.Add(time.Duration(f.lines)*time.Millisecond), "stdout", m, nil)
	}
	if _, err := f.files[container].Write(b); err != nil {
		f.t.Fatal(err)
	}
}

// start runs an agent enriching from the apiserver, with one file output named output.
func (f *kubeFixture) start(output string) (stop func()) {
	t := f.t
	cfg, err := config.Parse([]byte(`
data_dir: ` + filepath.Join(f.root, "data") + `
inputs:
  - name: pods
    paths: ["` + filepath.Join(f.root, "var/log/pods", f.ns+"_web_*/*/*.log") + `"]
    scan_interval: 100ms
  - name: containers
    paths: ["` + filepath.Join(f.root, "var/log/containers/*.log") + `"]
    exclude: ["` + filepath.Join(f.root, "var/log/containers/web_*") + `"]
    scan_interval: 100ms
outputs:
  - name: ` + output + `
    type: file
    path: "` + filepath.Join(f.root, "out", "{tag}.log.gz") + `"
    flush_interval: 50ms
kubernetes:
  enabled: true
  kubeconfig: ` + f.kc.AdminKubeconfig + `
  node_name: ` + kubetest.NodeName + `
  pod_annotations: [example.com/owner]
  json_key: app
  sync_timeout: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	return runAgent(t, cfg)
}

// checkPositionsAtEnd checks that the positions store in dataDir holds want files, each at its
// end: every record was acknowledged.
func checkPositionsAtEnd(t *testing.T, dataDir string, want int) {
	t.Helper()
	store, err := positions.Open(filepath.Join(dataDir, "positions.json"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(store.Entries()); n != want {
		t.Errorf("positions hold %d files, want %d", n, want)
	}
	for _, e := range store.Entries() {
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

// docs reads the documents of one container's tag, in file order.
func (f *kubeFixture) docs(pod, container string) []kubeDoc {
	var docs []kubeDoc
	path := filepath.Join(f.root, "out", "kube."+f.ns+"."+pod+"."+container+".log.gz")
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	complete, err := gzipfile.ReadAll(path, func(line []byte) error {
		var d kubeDoc
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&d); err != nil {
			return err
		}
		docs = append(docs, d)
		return nil
	})
	if err != nil || !complete {
		f.t.Fatalf("read %s: complete=%v err=%v", path, complete, err)
	}
	return docs
}

func waitDelivered(t *testing.T, output string, since float64, n int) {
	t.Helper()
	delivered := metrics.OutputRecords.WithLabelValues(output, "delivered")
	deadline := time.Now().Add(time.Minute)
	for metrics.Value(delivered)-since < float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d records delivered", metrics.Value(delivered)-since, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKubernetesEnrichment runs the agent against a real kube-apiserver: records carry the
// pod's and namespace's metadata, by uid (/var/log/pods) and by name (/var/log/containers); an
// excluded pod ships nothing yet its file is read to the end; a json pod's messages are parsed;
// a namespace label change shows on later records; a deleted pod's last lines are enriched.
func TestKubernetesEnrichment(t *testing.T) {
	f := newKubeFixture(t)
	output := kubetest.UniqueName("kube")
	delivered := metrics.Value(metrics.OutputRecords.WithLabelValues(output, "delivered"))
	excludedCount := metrics.RouteDropped.WithLabelValues("excluded")
	excluded := metrics.Value(excludedCount)

	f.write("web/migrate", "migrating", "done")
	f.write("web/web", "GET / 200")
	f.write("quiet/noisy", "secret 1", "secret 2", "secret 3")
	f.write("structured/api", `{"level":"info","msg":"up","id":12345678901234567890}`, "panic: not json")
	stop := f.start(output)
	waitDelivered(t, output, delivered, 5)

	web := f.docs("web", "web")
	if len(web) != 1 {
		t.Fatalf("web: %d documents", len(web))
	}
	d := web[0].Kubernetes
	if d.Namespace != f.ns || d.NamespaceLabels["team"] != "checkout" || d.NamespaceLabels["kubernetes_io/metadata_name"] != f.ns ||
		d.Pod.Name != "web" || d.Pod.UID == "" || d.Pod.IP != "10.9.0.1" ||
		d.Labels["app_kubernetes_io/name"] != "web" || d.Annotations["example_com/owner"] != "shop" ||
		d.Container.Name != "web" || d.Container.Image != "nginx:1.29" || d.Container.Init || d.Node.Name != kubetest.NodeName ||
		web[0].Container.ID != kubetest.ContainerID(f.ns, "web", "web") {
		t.Errorf("web document: %+v", web[0])
	}
	migrate := f.docs("web", "migrate")
	if len(migrate) != 2 || !migrate[0].Kubernetes.Container.Init || migrate[0].Kubernetes.Container.Image != "migrate:1" ||
		migrate[1].Container.ID != kubetest.ContainerID(f.ns, "web", "migrate") {
		t.Errorf("init container documents: %+v", migrate)
	}
	api := f.docs("structured", "api")
	if len(api) != 2 || api[0].App["level"] != "info" || api[0].App["id"] != json.Number("12345678901234567890") ||
		api[0].Message != `{"level":"info","msg":"up","id":12345678901234567890}` ||
		api[1].App != nil || api[1].Message != "panic: not json" || api[1].Kubernetes.Pod.Name != "structured" {
		t.Errorf("json pod documents: %+v", api)
	}
	if docs := f.docs("quiet", "noisy"); docs != nil {
		t.Errorf("the excluded pod shipped %d documents", len(docs))
	}
	if got := metrics.Value(excludedCount) - excluded; got != 3 {
		t.Errorf("%v records counted as excluded, want 3", got)
	}

	// A namespace label change shows on the records that follow it.
	ns, err := f.kc.Client.CoreV1().Namespaces().Get(context.Background(), f.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["team"] = "payments"
	if _, err := f.kc.Client.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	written := 1
	for deadline := time.Now().Add(time.Minute); ; {
		f.write("web/web", fmt.Sprintf("after relabel %d", written))
		written++
		waitDelivered(t, output, delivered, 4+written)
		docs := f.docs("web", "web")
		if docs[len(docs)-1].Kubernetes.NamespaceLabels["team"] == "payments" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the namespace label change never showed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := false
	for _, d := range f.docs("web", "web") {
		switch team := d.Kubernetes.NamespaceLabels["team"]; {
		case team == "payments":
			seen = true
		case seen || team != "checkout":
			t.Errorf("namespace label %q after the change was seen: %+v", team, d)
		}
	}

	// The pod is deleted; its last lines, read after the deletion, are enriched still.
	f.kc.DeletePod(t, f.ns, "web")
	time.Sleep(500 * time.Millisecond) // let the watch deliver the deletion (not needed for the result)
	f.write("web/web", "last words")
	waitDelivered(t, output, delivered, 4+written+1)
	docs := f.docs("web", "web")
	if last := docs[len(docs)-1]; last.Message != "last words" || last.Kubernetes.Pod.Name != "web" || last.Kubernetes.Pod.IP != "10.9.0.1" {
		t.Errorf("the deleted pod's last line: %+v", last)
	}
	stop()

	// Every file, the excluded pod's too, was read and acknowledged to its end.
	checkPositionsAtEnd(t, filepath.Join(f.root, "data"), len(f.files))
}
