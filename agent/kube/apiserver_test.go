package kube

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

// startReal runs an Enricher against the apiserver c through kubeconfig (the way skiff is
// configured outside a cluster) and waits for its first sync.
func startReal(t *testing.T, c *kubetest.Cluster, kubeconfig string, grace time.Duration) *Enricher {
	t.Helper()
	rc, err := RESTConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, meta, err := Clients(rc)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(client.Pods(""), meta, Config{
		NodeName: kubetest.NodeName, PodAnnotations: []string{"example.com/owner"},
		NamespaceLabels: true, Dedot: true, DeletedPodGrace: grace,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, e)
	return e
}

// webPod has an init container and a container, and an allowlisted annotation.
func webPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"app": "web", "app.kubernetes.io/name": "web"},
			Annotations: map[string]string{"example.com/owner": "shop-team", "not-listed": "x"},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "busybox:1.37"}},
			Containers:     []corev1.Container{{Name: "web", Image: "nginx:1.29"}},
		},
	}
}

func (c *realCluster) source(layout, pod, container string) *event.Source {
	if layout == "pods" {
		p, err := c.Client.CoreV1().Pods(c.ns).Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		return podsSource(p, container, 0)
	}
	return containersSource(c.ns, pod, container, kubetest.ContainerID(c.ns, pod, container))
}

type realCluster struct {
	*kubetest.Cluster
	t  *testing.T
	ns string
}

// eventuallyLong is eventually for what waits on the apiserver coming back (client-go backs off
// up to 30s between attempts).
func eventuallyLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 2*time.Minute, what, cond)
}

func TestAPIServerEnrichment(t *testing.T) {
	kc := kubetest.Env(t)
	c := &realCluster{Cluster: kc, t: t, ns: kubetest.UniqueName("skiff-kube")}
	kc.CreateNamespace(t, c.ns, map[string]string{"team": "checkout", "tier.example.com/level": "1"})
	kc.CreatePod(t, c.ns, webPod("web"))
	kc.MarkPodRunning(t, c.ns, "web", "10.1.2.3")
	e := startReal(t, kc, kc.AdminKubeconfig, 5*time.Minute)

	byUID := e.Lookup(c.source("pods", "web", "web"))
	k := byUID.Kube
	if k == nil {
		t.Fatal("pod not found by uid after sync")
	}
	want := &event.Kube{
		Namespace:       c.ns,
		NamespaceLabels: map[string]string{"team": "checkout", "tier_example_com/level": "1", "kubernetes_io/metadata_name": c.ns},
		PodName:         "web", PodUID: k.PodUID, PodIP: "10.1.2.3",
		Labels:        map[string]string{"app": "web", "app_kubernetes_io/name": "web"},
		Annotations:   map[string]string{"example_com/owner": "shop-team"},
		ContainerName: "web", ContainerImage: "nginx:1.29", ContainerID: kubetest.ContainerID(c.ns, "web", "web"),
		NodeName: kubetest.NodeName,
	}
	checkKube(t, "by uid", k, want)
	if k.PodUID == "" || byUID.Exclude || byUID.ParseJSON {
		t.Errorf("by uid: %+v", byUID)
	}
	init := e.Lookup(c.source("pods", "web", "migrate")).Kube
	want.ContainerName, want.ContainerImage, want.ContainerID, want.Init = "migrate", "busybox:1.37", kubetest.ContainerID(c.ns, "web", "migrate"), true
	checkKube(t, "init container", init, want)
	if got := e.Lookup(c.source("containers", "web", "migrate")).Kube; got != init {
		t.Errorf("by namespace/name: %+v, want the uid lookup's %+v", got, init)
	}

	// A new pod, and one on another node (the field selector keeps it out of the cache).
	other := webPod("elsewhere")
	other.Spec.NodeName = "another-node"
	kc.CreatePod(t, c.ns, other)
	kc.CreatePod(t, c.ns, webPod("late"))
	late := c.source("containers", "late", "web")
	eventually(t, "the new pod", func() bool { return e.Lookup(late).Kube != nil })
	if k := e.Lookup(c.source("containers", "elsewhere", "web")).Kube; k != nil {
		t.Errorf("a pod of another node was cached: %+v", k)
	}
	if k := e.Lookup(late).Kube; k.ContainerID != kubetest.ContainerID(c.ns, "late", "web") || k.PodIP != "" {
		t.Errorf("pending pod by name: %+v (container id from the path, no ip yet)", k)
	}

	// A namespace label change shows on later lookups.
	ns, err := kc.Client.CoreV1().Namespaces().Get(context.Background(), c.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["team"] = "payments"
	if _, err := kc.Client.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := c.source("pods", "web", "web")
	eventually(t, "the namespace label change", func() bool { return e.Lookup(src).Kube.NamespaceLabels["team"] == "payments" })

	// A deleted pod's files are still enriched within the grace period, also files first seen
	// after the deletion.
	kc.DeletePod(t, c.ns, "web")
	eventually(t, "the deletion", func() bool {
		e.mu.RLock()
		defer e.mu.RUnlock()
		p := e.byUID[k.PodUID]
		return p != nil && !p.deleted.IsZero()
	})
	if got := e.Lookup(podsSource(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "web", UID: "x"}}, "web", 0)); got.Kube != nil {
		t.Errorf("an unknown uid was found: %+v", got.Kube)
	}
	for _, s := range []*event.Source{
		containersSource(c.ns, "web", "web", kubetest.ContainerID(c.ns, "web", "web")),
		{Path: src.Path, Namespace: src.Namespace, PodName: src.PodName, PodUID: src.PodUID, Container: src.Container},
	} {
		if got := e.Lookup(s).Kube; got == nil || got.PodName != "web" || got.NamespaceLabels["team"] != "payments" {
			t.Errorf("deleted pod within its grace period, %s: %+v", s.Path, got)
		}
	}

	// Exclusion by namespace annotation.
	ns, err = kc.Client.CoreV1().Namespaces().Get(context.Background(), c.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Annotations = map[string]string{AnnotationExclude: "true"}
	if _, err := kc.Client.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the namespace exclusion", func() bool { return e.Lookup(late).Exclude })
}

func TestAPIServerOutage(t *testing.T) {
	kc := kubetest.Private(t)
	c := &realCluster{Cluster: kc, t: t, ns: kubetest.UniqueName("skiff-outage")}
	kc.CreateNamespace(t, c.ns, map[string]string{"team": "a"})
	kc.CreatePod(t, c.ns, webPod("before"))
	e := startReal(t, kc, kc.AdminKubeconfig, time.Minute)
	before := c.source("pods", "before", "web")
	if e.Lookup(before).Kube == nil {
		t.Fatal("pod not found after sync")
	}
	errs := metrics.KubeAPIErrors.WithLabelValues("pods")
	errsBefore := metrics.Value(errs)

	kc.StopAPIServer(t)
	// The watch breaks, reconnecting fails and is counted; lookups answer from the cache.
	eventuallyLong(t, "a counted API error", func() bool { return metrics.Value(errs) > errsBefore })
	copyOf := &event.Source{Path: before.Path, Namespace: before.Namespace, PodName: before.PodName, PodUID: before.PodUID, Container: before.Container}
	for _, s := range []*event.Source{before, copyOf} {
		if k := e.Lookup(s).Kube; k == nil || k.PodName != "before" {
			t.Fatalf("lookup while the apiserver is down: %+v", k)
		}
	}

	kc.StartAPIServer(t)
	kc.CreatePod(t, c.ns, webPod("after"))
	after := c.source("pods", "after", "web")
	eventuallyLong(t, "the pod created after the outage", func() bool { return e.Lookup(after).Kube != nil })
	if k := e.Lookup(before).Kube; k == nil || k.NamespaceLabels["team"] != "a" {
		t.Errorf("the pod from before the outage: %+v", k)
	}
}

// BenchmarkAPIServerSync fills a kube-apiserver of its own with memPods realistic pods on the
// test node and memNamespaces namespaces, then reports how long an Enricher takes to sync
// (sync-ms) and the live heap it adds (heap-bytes: caches, informers and client). Run it with
// -benchtime=1x; setting up the cluster takes a minute.
func BenchmarkAPIServerSync(b *testing.B) {
	kc := kubetest.Private(b)
	objs := memObjects()
	for _, o := range objs[:memNamespaces] {
		ns := o.(*metav1.PartialObjectMetadata)
		kc.CreateNamespace(b, ns.Name, ns.Labels)
	}
	work := make(chan *corev1.Pod)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for p := range work {
				pods := kc.Client.CoreV1().Pods(p.Namespace)
				p.ResourceVersion, p.UID, p.ManagedFields = "", "", nil // the server's to set
				created, err := pods.Create(context.Background(), p, metav1.CreateOptions{})
				if err == nil {
					created.Status = p.Status
					_, err = pods.UpdateStatus(context.Background(), created, metav1.UpdateOptions{})
				}
				if err != nil {
					b.Errorf("pod %s/%s: %v", p.Namespace, p.Name, err)
				}
			}
		})
	}
	for _, o := range objs[memNamespaces:] {
		work <- o.(*corev1.Pod)
	}
	close(work)
	wg.Wait()

	for b.Loop() {
		var synced time.Duration
		heap := heapOf(b, nil, func(ctx context.Context, _ *fakeClients) func() {
			rc, err := RESTConfig(kc.AdminKubeconfig)
			if err != nil {
				b.Fatal(err)
			}
			client, meta, err := Clients(rc)
			if err != nil {
				b.Fatal(err)
			}
			e, err := New(client.Pods(""), meta, testConfig()) // memObjects' pods are on testNode
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			go func() { _ = e.Run(ctx) }()
			if !e.WaitSynced(ctx) {
				b.Fatal("no sync")
			}
			synced = time.Since(start)
			if n := len(e.byUID); n != memPods {
				b.Fatalf("%d pods cached, want %d", n, memPods)
			}
			return func() { runtime.KeepAlive(e) }
		})
		b.ReportMetric(float64(synced.Milliseconds()), "sync-ms")
		b.ReportMetric(heap, "heap-bytes")
	}
}
