package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/skiff-logs/skiff/agent/kube"
	"github.com/skiff-logs/skiff/agent/kube/core"
	"github.com/skiff-logs/skiff/internal/kubetest/kubeobj"
	"github.com/skiff-logs/skiff/internal/loggen"
)

// benchNode is the node the benchmark's pods are bound to and the agent watches. Every pod on it
// that the benchmark did not ask for is deleted, so that the cache holds exactly --pods pods.
const benchNode = "skiff-bench-node"

// kubeSyncedMessage is what the agent logs (at info) once the Kubernetes cache synced; the
// benchmark's log handler watches for it (agent/enrich.go).
const kubeSyncedMessage = "kubernetes metadata synced"

// kubeBench is an apiserver filled for the benchmark and the kubelet log layout of its pods.
type kubeBench struct {
	kubeconfig string
	// root holds var/log/pods and var/log/containers; the caller removes it.
	root string
}

// mode makes the runs read the /var/log/containers symlinks (as the chart's config does) and
// enrich records from the apiserver, with the chart's defaults otherwise.
func (kb *kubeBench) mode() benchMode {
	return benchMode{
		glob: filepath.Join(kb.root, "var/log/containers/*.log"),
		kube: true,
		kubeYAML: fmt.Sprintf(`kubernetes:
  enabled: true
  kubeconfig: %q
  node_name: %q
`, kb.kubeconfig, benchNode),
	}
}

// setupKubeBench makes the apiserver of kubeDir hold namespaces namespaces and pods running pods
// on benchNode, each with perPod containers (created, or reused from an earlier run against the
// same apiserver), then copies benchInput's file i from inputDir to the log file of container
// i/pods of pod i%pods in a kubelet layout under a new directory in workDir.
func setupKubeBench(ctx context.Context, kubeDir, inputDir, workDir string, pods, namespaces, perPod int, stdout io.Writer) (*kubeBench, error) {
	start := time.Now()
	abs, err := filepath.Abs(kubeDir)
	if err != nil {
		return nil, err
	}
	kb := &kubeBench{kubeconfig: filepath.Join(abs, "kubeconfig")}
	rc, err := kube.RESTConfig(kb.kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	client, err := core.New(rc)
	if err != nil {
		return nil, err
	}
	nsNames := make([]string, namespaces)
	err = parallel(namespaces, func(j int) error {
		nsNames[j] = fmt.Sprintf("skiff-bench-%03d", j)
		err := kubeobj.CreateNamespace(ctx, client, nsNames[j], benchNamespaceLabels(j), nil)
		if apierrors.IsAlreadyExists(err) {
			return nil // from an earlier run, with its default ServiceAccount
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	containers := make([]loggen.Container, pods*perPod)
	err = parallel(pods, func(i int) error {
		want := withSidecars(benchPod(i, nsNames[i%namespaces]), perPod-1)
		p := &core.Pod{}
		err := kubeobj.CreatePod(ctx, client, want.Namespace, want, p)
		if apierrors.IsAlreadyExists(err) {
			err = client.Get(ctx, "pods", want.Namespace, want.Name, p)
		}
		if err != nil {
			return err
		}
		if p.Spec.NodeName != benchNode {
			return fmt.Errorf("pod %s/%s exists on node %q, not %s", p.Namespace, p.Name, p.Spec.NodeName, benchNode)
		}
		if len(p.Spec.Containers) != perPod {
			return fmt.Errorf("pod %s/%s exists with %d containers, not %d: use a fresh kube-apiserver", p.Namespace, p.Name, len(p.Spec.Containers), perPod)
		}
		if err := kubeobj.SetRunning(ctx, client, p, fmt.Sprintf("10.244.%d.%d", i/250, i%250+2), nil); err != nil {
			return err
		}
		for k, c := range p.Spec.Containers {
			containers[k*pods+i] = loggen.Container{Namespace: p.Namespace, Pod: p.Name, UID: string(p.UID), Name: c.Name, ID: kubeobj.ContainerID(p.Namespace, p.Name, c.Name)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := deleteOtherPods(ctx, client, containers); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "kube: %d running pods (%d containers each) on node %s in %d namespaces (kube-apiserver %s), set up in %.1fs\n",
		pods, perPod, benchNode, namespaces, rc.Host, time.Since(start).Seconds())

	if kb.root, err = os.MkdirTemp(workDir, "kubelet-"); err != nil {
		return nil, err
	}
	for i, c := range containers {
		if err := copyLog(filepath.Join(inputDir, benchFileName(i)), c, kb.root); err != nil {
			_ = os.RemoveAll(kb.root)
			return nil, err
		}
	}
	return kb, nil
}

// deleteOtherPods deletes the pods on benchNode that are not among keep (left by an earlier run
// with more pods).
func deleteOtherPods(ctx context.Context, client *core.Client, keep []loggen.Container) error {
	list, err := client.Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", benchNode).String(),
	})
	if err != nil {
		return fmt.Errorf("list pods on %s: %w", benchNode, err)
	}
	wanted := make(map[string]bool, len(keep))
	for _, c := range keep {
		wanted[c.Namespace+"/"+c.Pod] = true
	}
	var errs []error
	for _, p := range list.Items {
		if !wanted[p.Namespace+"/"+p.Name] {
			errs = append(errs, kubeobj.DeletePod(ctx, client, p.Namespace, p.Name))
		}
	}
	return errors.Join(errs...)
}

// copyLog creates c's log file and symlink under root, as the kubelet does, with the content
// of src.
func copyLog(src string, c loggen.Container, root string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := c.Create(root)
	if err != nil {
		return fmt.Errorf("create log of %s/%s: %w", c.Namespace, c.Pod, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", out.Name(), err)
	}
	return out.Close()
}

// parallel calls f(0) … f(n-1) on 8 goroutines and returns their errors joined.
func parallel(n int, f func(int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// benchNamespaceLabels are namespace j's labels (the apiserver adds kubernetes.io/metadata.name).
func benchNamespaceLabels(j int) map[string]string {
	envs := []string{"production", "staging", "development"}
	return map[string]string{
		"team":                         fmt.Sprintf("team-%02d", j%17),
		"environment":                  envs[j%len(envs)],
		"istio-injection":              "enabled",
		"cost-center":                  fmt.Sprintf("cc-%04d", 1000+j%23),
		"app.kubernetes.io/managed-by": "argocd",
	}
}

// syncWatch holds when the agent reported the Kubernetes cache synced and the live heap then.
type syncWatch struct {
	mu   sync.Mutex
	at   time.Time
	heap float64
	ok   bool
}

func (w *syncWatch) get() (time.Time, float64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at, w.heap, w.ok
}

// benchLogHandler passes warnings and errors on to next and, when the agent logs
// kubeSyncedMessage (before its tailers start), notes the time and the live heap in watch.
type benchLogHandler struct {
	next  slog.Handler
	watch *syncWatch
}

// Enabled lets info through for kubeSyncedMessage; the agent logs little at info.
func (h benchLogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle implements slog.Handler.
func (h benchLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == kubeSyncedMessage {
		heap := liveHeapMiB()
		h.watch.mu.Lock()
		h.watch.at, h.watch.heap, h.watch.ok = r.Time, heap, true
		h.watch.mu.Unlock()
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h benchLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return benchLogHandler{next: h.next.WithAttrs(as), watch: h.watch}
}

// WithGroup implements slog.Handler.
func (h benchLogHandler) WithGroup(name string) slog.Handler {
	return benchLogHandler{next: h.next.WithGroup(name), watch: h.watch}
}
