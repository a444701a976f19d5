package kube

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/kube/core"
)

const testNode = "node-1"

var namespacesGVR = corev1.SchemeGroupVersion.WithResource("namespaces")

// fakeCluster is an Enricher running against client-go's fake clients, on a clock of the
// test's own.
type fakeCluster struct {
	fakeClients
	e     *Enricher
	clock atomic.Int64 // Unix nanoseconds
}

var testStart = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// advance moves the enricher's clock by d and returns the new time.
func (fc *fakeCluster) advance(d time.Duration) time.Time {
	return time.Unix(0, fc.clock.Add(int64(d))).UTC()
}

func testConfig() Config {
	return Config{
		NodeName: testNode, PodAnnotations: []string{"team", "example.com/owner"},
		NamespaceLabels: true, Dedot: true, DeletedPodGrace: time.Minute,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// fakeClients are client-go's fake typed and metadata clients.
type fakeClients struct {
	client *fake.Clientset
	meta   *metadatafake.FakeMetadataClient
}

// pods is the fake's pods of all namespaces, as New takes them: converted to core's types
// through their JSON, as the apiserver's answers would decode. Like the fake clientset it
// declines watch-list semantics, which the fake cannot serve.
func (fc fakeClients) pods() core.Pods { return fakePods{fc.client.CoreV1().Pods(metav1.NamespaceAll)} }

type fakePods struct{ pods typedcorev1.PodInterface }

func (fakePods) IsWatchListSemanticsUnSupported() bool { return true }

func (f fakePods) List(ctx context.Context, opts metav1.ListOptions) (*core.PodList, error) {
	l, err := f.pods.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := &core.PodList{}
	return out, viaJSON(l, out)
}

func (f fakePods) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := f.pods.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		if p, ok := ev.Object.(*corev1.Pod); ok {
			c := &core.Pod{}
			if err := viaJSON(p, c); err != nil {
				panic(err) // a corev1.Pod always encodes
			}
			ev.Object = c
		}
		return ev, true
	}), nil
}

// corePod is p as core's client would decode it from the apiserver.
func corePod(t testing.TB, p *corev1.Pod) *core.Pod {
	t.Helper()
	c := &core.Pod{}
	if err := viaJSON(p, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// viaJSON decodes the JSON of from into to.
func viaJSON(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}

// newFakeClients makes fake clients holding objs: pods, and namespaces as
// PartialObjectMetadata.
func newFakeClients(t testing.TB, objs ...runtime.Object) fakeClients {
	t.Helper()
	var pods, nss []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*metav1.PartialObjectMetadata); ok {
			nss = append(nss, o)
		} else {
			pods = append(pods, o)
		}
	}
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fakeClients{client: fake.NewClientset(pods...), meta: metadatafake.NewSimpleMetadataClient(scheme, nss...)}
}

// startFake runs an Enricher over fake clients holding objs and waits for its first sync.
func startFake(t testing.TB, cfg Config, objs ...runtime.Object) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{fakeClients: newFakeClients(t, objs...)}
	e, err := New(fc.pods(), fc.meta, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fc.e = e
	fc.clock.Store(testStart.UnixNano())
	e.now = func() time.Time { return time.Unix(0, fc.clock.Load()).UTC() }
	run(t, e)
	return fc
}

func (fc *fakeCluster) createPod(t testing.TB, p *corev1.Pod) {
	t.Helper()
	if _, err := fc.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (fc *fakeCluster) updatePod(t testing.TB, p *corev1.Pod) {
	t.Helper()
	if _, err := fc.client.CoreV1().Pods(p.Namespace).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (fc *fakeCluster) deletePod(t testing.TB, ns, name string) {
	t.Helper()
	if err := fc.client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (fc *fakeCluster) createNamespace(t testing.TB, ns *metav1.PartialObjectMetadata) {
	t.Helper()
	if _, err := fc.meta.Resource(namespacesGVR).(metadatafake.MetadataClient).CreateFake(ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (fc *fakeCluster) updateNamespace(t testing.TB, ns *metav1.PartialObjectMetadata) {
	t.Helper()
	if _, err := fc.meta.Resource(namespacesGVR).(metadatafake.MetadataClient).UpdateFake(ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// run runs e until t ends and waits for its first sync.
func run(t testing.TB, e *Enricher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitCtx, cancelWait := context.WithTimeout(ctx, time.Minute)
	defer cancelWait()
	start := time.Now()
	if !e.WaitSynced(waitCtx) {
		t.Fatal("the cache did not sync within a minute")
	}
	t.Logf("synced in %v", time.Since(start))
}

// eventually polls cond until it holds, failing t after 10s: informers deliver asynchronously.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 10*time.Second, what, cond)
}

// eventuallyWithin polls cond until it holds, failing t after d.
func eventuallyWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func namespace(name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("ns-uid-" + name), Labels: labels, Annotations: annotations},
	}
}

// testPod is a pod on testNode with an init container "init" and containers "app" and
// "sidecar", all started (status with ids), and the kind of bulk a real pod carries.
func testPod(ns, name string) *corev1.Pod {
	uid := types.UID(fmt.Sprintf("uid-%s-%s", ns, name))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: uid, ResourceVersion: "1",
			Labels: map[string]string{"app": name, "app.kubernetes.io/name": name, "pod-template-hash": "7d4"},
			Annotations: map[string]string{
				"team": "shop", "example.com/owner": "ops", "unlisted": "x",
				"kubectl.kubernetes.io/last-applied-configuration": `{"a very long":"json document"}`,
			},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-rs", UID: "rs"}},
		},
		Spec: corev1.PodSpec{
			NodeName:       testNode,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1", Command: []string{"sh", "-c", "true"}}},
			Containers: []corev1.Container{
				{Name: "app", Image: "registry.example.com/app:2", Env: []corev1.EnvVar{{Name: "A", Value: "b"}},
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
				{Name: "sidecar", Image: "envoy:1.30"},
			},
			Volumes:            []corev1.Volume{{Name: "data"}},
			ServiceAccountName: "default",
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.7", HostIP: "192.168.0.1",
			Conditions:            []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://" + containerID(uid, "init", 0), Image: "busybox:1"}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://" + containerID(uid, "app", 0), Ready: true},
				{Name: "sidecar", ContainerID: "containerd://" + containerID(uid, "sidecar", 0), Ready: true},
			},
		},
	}
}

// containerID is a made-up runtime id (64 hex digits) for a container's run.
func containerID(uid types.UID, container string, run int) string {
	return fmt.Sprintf("%x", sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d", uid, container, run)))
}

// podsSource is the Source of /var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log.
func podsSource(p *corev1.Pod, container string, restart int) *event.Source {
	s := Describe(fmt.Sprintf("/var/log/pods/%s_%s_%s/%s/%d.log", p.Namespace, p.Name, p.UID, container, restart))
	return &s
}

// containersSource is the Source of /var/log/containers/<pod>_<ns>_<container>-<id>.log.
func containersSource(ns, pod, container, id string) *event.Source {
	s := Describe(fmt.Sprintf("/var/log/containers/%s_%s_%s-%s.log", pod, ns, container, id))
	return &s
}
