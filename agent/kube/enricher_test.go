package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
)

func TestPodInfoOf(t *testing.T) {
	p := testPod("shop", "web")
	p.Annotations[AnnotationParser] = "json"
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox", TTY: true}}}
	p.Status.ContainerStatuses[0].RestartCount = 2
	p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: "containerd://old", ExitCode: 1, Reason: "Error"}
	e := &Enricher{cfg: Config{PodAnnotations: []string{"example.com/owner", "missing"}, Dedot: true}}
	cp := corePod(t, p)
	got := e.podInfoOf(cp)

	want := &podInfo{
		NodeName: testNode, PodIP: "10.0.0.7", ParseJSON: true,
		Containers: []containerInfo{
			{Name: "init", Image: "busybox:1", Init: true, ID: containerID(p.UID, "init", 0), Reported: true},
			{Name: "app", Image: "registry.example.com/app:2", ID: containerID(p.UID, "app", 0), LastID: "old", Restarts: 2, Reported: true},
			{Name: "sidecar", Image: "envoy:1.30", ID: containerID(p.UID, "sidecar", 0), Reported: true},
			{Name: "debug", Image: "busybox"},
		},
	}
	want.Name, want.Namespace, want.UID, want.ResourceVersion = "web", "shop", p.UID, "1"
	want.Labels = map[string]string{"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "7d4"}
	want.Annotations = map[string]string{"example_com/owner": "ops"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("podInfo\n got %+v\nwant %+v", got, want)
	}
	if tr, err := e.transformPod(got); err != nil || tr != got {
		t.Errorf("the transform of a podInfo is not the podInfo itself: %v, %v", tr, err)
	}
	if cp.Annotations["unlisted"] != "x" || cp.Labels["app.kubernetes.io/name"] == "" || cp.Status.ContainerStatuses[0].LastTerminationState.Terminated == nil {
		t.Error("podInfoOf changed the pod it was given")
	}
	cp.Annotations[AnnotationExclude] = "true"
	if !e.podInfoOf(cp).Exclude {
		t.Error("exclude annotation not seen")
	}
	cp.Annotations[AnnotationExclude] = "yes"
	if e.podInfoOf(cp).Exclude {
		t.Error(`exclude annotation other than "true" taken`)
	}
}

func TestSlimNamespace(t *testing.T) {
	m := namespace("shop", map[string]string{"team": "a"}, map[string]string{AnnotationExclude: "true", "other": "x"})
	m.ResourceVersion = "5"
	for _, keepLabels := range []bool{true, false} {
		s := slimNamespace(m, keepLabels)
		want := namespace("shop", nil, map[string]string{AnnotationExclude: "true"})
		want.ResourceVersion = "5"
		if keepLabels {
			want.Labels = m.Labels
		}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("keepLabels=%v: got %+v, want %+v", keepLabels, s, want)
		}
		if again := slimNamespace(s, keepLabels); !reflect.DeepEqual(again, s) {
			t.Errorf("slimNamespace is not idempotent")
		}
	}
}

func TestDocKeys(t *testing.T) {
	labels := map[string]string{"app": "web", "app.kubernetes.io/name": "shop", "tier": "front"}
	tests := []struct {
		dedot bool
		want  map[string]string
	}{
		{true, map[string]string{"app": "web", "app_kubernetes_io/name": "shop", "tier": "front"}},
		{false, labels},
	}
	for _, tt := range tests {
		e := &Enricher{cfg: Config{Dedot: tt.dedot}}
		if got := e.docKeys(labels); !maps.Equal(got, tt.want) {
			t.Errorf("dedot=%v: %v, want %v", tt.dedot, got, tt.want)
		}
	}
	e := &Enricher{cfg: Config{Dedot: true}}
	plain := map[string]string{"app": "web"}
	if got := e.docKeys(plain); reflect.ValueOf(got).Pointer() != reflect.ValueOf(plain).Pointer() {
		t.Error("a map without dotted keys was copied")
	}
	if e.docKeys(map[string]string{}) != nil {
		t.Error("an empty map should become nil")
	}
}

func TestIDFor(t *testing.T) {
	c := containerInfo{ID: "cur", LastID: "prev", Restarts: 3, Reported: true}
	tests := []struct {
		path, pathID, want string
	}{
		{"/var/log/pods/ns_p_u/c/3.log", "", "cur"},
		{"/var/log/pods/ns_p_u/c/2.log", "", "prev"},
		{"/var/log/pods/ns_p_u/c/2.log.20240102-030405", "", "prev"},
		{"/var/log/pods/ns_p_u/c/1.log", "", ""},
		{"/var/log/pods/ns_p_u/c/9.log", "", ""},
		{"/var/log/containers/p_ns_c-abc.log", "abc", "abc"},
		{"/some/other.file", "", "cur"},
	}
	for _, tt := range tests {
		if got := c.idFor(&event.Source{Path: tt.path, ContainerID: tt.pathID}); got != tt.want {
			t.Errorf("idFor(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
	notStarted := containerInfo{}
	if got := notStarted.idFor(&event.Source{Path: "/var/log/pods/ns_p_u/c/0.log"}); got != "" {
		t.Errorf("a container without status has id %q", got)
	}
	if stripScheme("containerd://abc") != "abc" || stripScheme("abc") != "abc" || stripScheme("") != "" {
		t.Error("stripScheme")
	}
}

func TestLookupFields(t *testing.T) {
	pod := testPod("shop", "web")
	fc := startFake(t, testConfig(), pod,
		namespace("shop", map[string]string{"team": "checkout", "kubernetes.io/metadata.name": "shop"}, nil))
	e := fc.e
	app := e.Lookup(podsSource(pod, "app", 0))
	want := event.Kube{
		Namespace:       "shop",
		NamespaceLabels: map[string]string{"team": "checkout", "kubernetes_io/metadata_name": "shop"},
		PodName:         "web", PodUID: string(pod.UID), PodIP: "10.0.0.7",
		Labels:         map[string]string{"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "7d4"},
		Annotations:    map[string]string{"team": "shop", "example_com/owner": "ops"},
		ContainerName:  "app",
		ContainerImage: "registry.example.com/app:2",
		ContainerID:    containerID(pod.UID, "app", 0),
		NodeName:       testNode,
	}
	checkKube(t, "app", app.Kube, &want)
	if app.Exclude || app.ParseJSON {
		t.Errorf("unannotated pod: %+v", app)
	}

	init := e.Lookup(podsSource(pod, "init", 0)).Kube
	want.ContainerName, want.ContainerImage, want.ContainerID, want.Init = "init", "busybox:1", containerID(pod.UID, "init", 0), true
	checkKube(t, "init", init, &want)

	// By namespace and name, from the /var/log/containers name: the same shared Kube.
	byName := e.Lookup(containersSource("shop", "web", "app", containerID(pod.UID, "app", 0)))
	if byName.Kube != app.Kube {
		t.Errorf("lookup by name gave another Kube: %+v", byName.Kube)
	}
	// A container the cached spec does not list still gets the pod's metadata.
	other := e.Lookup(containersSource("shop", "web", "debug", "ffff")).Kube
	if other == nil || other.PodUID != string(pod.UID) || other.ContainerName != "debug" || other.ContainerID != "ffff" || other.ContainerImage != "" {
		t.Errorf("unknown container: %+v", other)
	}
	if r := e.Lookup(&event.Source{Path: "/var/log/audit.log", Tag: "audit"}); r != (Result{}) {
		t.Errorf("a file that is no container log: %+v", r)
	}
}

func checkKube(t *testing.T, what string, got, want *event.Kube) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no Kube", what)
	}
	type plain struct {
		ns, pod, uid, ip, ctr, image, id, node string
		init                                   bool
	}
	flat := func(k *event.Kube) plain {
		return plain{k.Namespace, k.PodName, k.PodUID, k.PodIP, k.ContainerName, k.ContainerImage, k.ContainerID, k.NodeName, k.Init}
	}
	if g, w := flat(got), flat(want); g != w {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
	for name, pair := range map[string][2]map[string]string{
		"namespace labels": {got.NamespaceLabels, want.NamespaceLabels},
		"labels":           {got.Labels, want.Labels},
		"annotations":      {got.Annotations, want.Annotations},
	} {
		if !maps.Equal(pair[0], pair[1]) {
			t.Errorf("%s %s: %v, want %v", what, name, pair[0], pair[1])
		}
	}
}

func TestLookupLearnsNewPods(t *testing.T) {
	fc := startFake(t, testConfig(), namespace("shop", nil, nil))
	pod := testPod("shop", "late")
	src := podsSource(pod, "app", 0)
	if r := fc.e.Lookup(src); r.Kube != nil {
		t.Fatalf("unknown pod enriched: %+v", r.Kube)
	}
	fc.createPod(t, pod)
	eventually(t, "the new pod", func() bool { return fc.e.Lookup(src).Kube != nil })
	if k := fc.e.Lookup(src).Kube; k.PodName != "late" || k.ContainerID != containerID(pod.UID, "app", 0) {
		t.Errorf("new pod: %+v", k)
	}
}

func TestLookupFollowsChanges(t *testing.T) {
	pod := testPod("shop", "web")
	other := testPod("shop", "other")
	fc := startFake(t, testConfig(), pod, other, namespace("shop", map[string]string{"team": "a"}, nil))
	src := podsSource(pod, "app", 0)
	first := fc.e.Lookup(src).Kube

	// A change of fields skiff does not keep changes nothing; once a later change of another
	// pod is seen, the first one was handled too (one handler goroutine, in order).
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: "Extra", Status: corev1.ConditionTrue})
	pod.ResourceVersion = "2"
	fc.updatePod(t, pod)
	other.Labels = map[string]string{"v": "2"}
	fc.updatePod(t, other)
	otherSrc := podsSource(other, "app", 0)
	eventually(t, "the other pod's label", func() bool { return fc.e.Lookup(otherSrc).Kube.Labels["v"] == "2" })
	if got := fc.e.Lookup(src).Kube; got != first {
		t.Error("an irrelevant pod change made a new Kube")
	}

	// Namespace labels show on later lookups.
	fc.updateNamespace(t, namespace("shop", map[string]string{"team": "b", "new": "yes"}, nil))
	eventually(t, "the namespace label change", func() bool { return fc.e.Lookup(src).Kube.NamespaceLabels["team"] == "b" })
	if got := fc.e.Lookup(src).Kube; got.NamespaceLabels["new"] != "yes" || got.PodName != "web" {
		t.Errorf("after namespace change: %+v", got)
	}
	if first.NamespaceLabels["team"] != "a" {
		t.Error("a Kube already handed out was modified")
	}

	// The container restarts: 1.log is the new run, 0.log the previous one.
	pod.Status.ContainerStatuses[0].RestartCount = 1
	pod.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: pod.Status.ContainerStatuses[0].ContainerID}
	pod.Status.ContainerStatuses[0].ContainerID = "containerd://" + containerID(pod.UID, "app", 1)
	fc.updatePod(t, pod)
	run1 := podsSource(pod, "app", 1)
	eventually(t, "the restart", func() bool { return fc.e.Lookup(run1).Kube.ContainerID == containerID(pod.UID, "app", 1) })
	if got := fc.e.Lookup(src).Kube.ContainerID; got != containerID(pod.UID, "app", 0) {
		t.Errorf("the previous run's file has container id %q", got)
	}

	// Annotations: exclude on the pod, parser json, then exclude on the namespace.
	pod.Annotations[AnnotationParser] = "json"
	fc.updatePod(t, pod)
	eventually(t, "the parser annotation", func() bool { return fc.e.Lookup(src).ParseJSON })
	if fc.e.Lookup(src).Exclude {
		t.Error("excluded without the annotation")
	}
	pod.Annotations[AnnotationExclude] = "true"
	fc.updatePod(t, pod)
	eventually(t, "the pod's exclude annotation", func() bool { return fc.e.Lookup(src).Exclude })
	if fc.e.Lookup(otherSrc).Exclude {
		t.Error("another pod of the namespace is excluded")
	}
	fc.updateNamespace(t, namespace("shop", nil, map[string]string{AnnotationExclude: "true"}))
	eventually(t, "the namespace's exclude annotation", func() bool { return fc.e.Lookup(otherSrc).Exclude })
	unknown := podsSource(testPod("shop", "unknown"), "app", 0)
	if r := fc.e.Lookup(unknown); !r.Exclude || r.Kube != nil {
		t.Errorf("an unknown pod of an excluded namespace: %+v", r)
	}
}

func TestDeletedPodGrace(t *testing.T) {
	cfg := testConfig()
	cfg.DeletedPodGrace = time.Minute
	pod := testPod("shop", "web")
	fc := startFake(t, cfg, pod, namespace("shop", nil, nil))
	fc.deletePod(t, "shop", "web")
	eventually(t, "the deletion", func() bool {
		fc.e.mu.RLock()
		defer fc.e.mu.RUnlock()
		return !fc.e.byUID[string(pod.UID)].deleted.IsZero()
	})
	// Files first read after the deletion are still enriched, by uid and by name.
	if k := fc.e.Lookup(podsSource(pod, "app", 0)).Kube; k == nil || k.PodName != "web" {
		t.Fatalf("deleted pod within its grace period: %+v", k)
	}
	byName := containersSource("shop", "web", "app", containerID(pod.UID, "app", 0))
	if k := fc.e.Lookup(byName).Kube; k == nil {
		t.Fatal("deleted pod not found by name within its grace period")
	}
	fc.e.sweep(fc.advance(59 * time.Second))
	if k := fc.e.Lookup(podsSource(pod, "app", 0)).Kube; k == nil {
		t.Fatal("deleted pod forgotten before its grace period ended")
	}
	fc.e.sweep(fc.advance(time.Second))
	if r := fc.e.Lookup(podsSource(pod, "app", 0)); r.Kube != nil {
		t.Fatalf("deleted pod kept after its grace period: %+v", r.Kube)
	}
	if r := fc.e.Lookup(byName); r.Kube != nil {
		t.Fatalf("deleted pod still found by name after its grace period: %+v", r.Kube)
	}
}

func TestSameNameAgain(t *testing.T) {
	// A StatefulSet pod deleted and created again: same namespace and name, new uid.
	old := testPod("db", "db-0")
	fc := startFake(t, testConfig(), old, namespace("db", nil, nil))
	fc.deletePod(t, "db", "db-0")
	eventually(t, "the deletion", func() bool {
		fc.e.mu.RLock()
		defer fc.e.mu.RUnlock()
		return !fc.e.byUID[string(old.UID)].deleted.IsZero()
	})
	again := testPod("db", "db-0")
	again.UID = "uid-db-db-0-second"
	for i := range again.Status.ContainerStatuses {
		again.Status.ContainerStatuses[i].ContainerID = "containerd://" + containerID(again.UID, again.Status.ContainerStatuses[i].Name, 0)
	}
	fc.createPod(t, again)
	newSrc := containersSource("db", "db-0", "app", containerID(again.UID, "app", 0))
	eventually(t, "the new pod", func() bool {
		k := fc.e.Lookup(newSrc).Kube
		return k != nil && k.PodUID == string(again.UID)
	})
	if k := fc.e.Lookup(containersSource("db", "db-0", "app", containerID(old.UID, "app", 0))).Kube; k == nil || k.PodUID != string(old.UID) {
		t.Errorf("the old run's file: %+v", k)
	}
	if k := fc.e.Lookup(containersSource("db", "db-0", "app", "0123abcd")).Kube; k == nil || k.PodUID != string(again.UID) || k.ContainerID != "0123abcd" {
		t.Errorf("an unknown run's file gets the existing pod: %+v", k)
	}
}

func TestSweepDropsIdleFiles(t *testing.T) {
	pod := testPod("shop", "web")
	fc := startFake(t, testConfig(), pod, namespace("shop", nil, nil))
	busy, idle := podsSource(pod, "app", 0), podsSource(pod, "sidecar", 0)
	fc.e.Lookup(busy)
	fc.e.Lookup(idle)
	for range 3 {
		fc.e.sweep(fc.advance(time.Second))
		fc.e.Lookup(busy)
	}
	if _, ok := fc.e.files.Load(idle); ok {
		t.Error("the entry of a file not looked up for three sweeps is kept")
	}
	if _, ok := fc.e.files.Load(busy); !ok {
		t.Error("the entry of a file in use was dropped")
	}
}

func TestAPIErrorsReported(t *testing.T) {
	var logs bytes.Buffer
	now := testStart
	r := &apiReporter{
		log: slog.New(slog.NewTextHandler(&logs, nil)), now: func() time.Time { return now },
		resource: "test-resource", count: metrics.KubeAPIErrors.WithLabelValues("test-resource"),
	}
	before := metrics.Value(r.count)
	ctx := context.Background()
	refused := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	r.report(ctx, nil)
	for range 5 {
		r.report(ctx, refused)
	}
	now = now.Add(errorLogInterval)
	r.report(ctx, refused)
	r.report(ctx, nil)
	r.report(ctx, nil)
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	r.report(stopped, context.Canceled)
	if got := metrics.Value(r.count) - before; got != 6 {
		t.Errorf("%v errors counted, want 6", got)
	}
	text := logs.String()
	if n := strings.Count(text, "list or watch failed"); n != 2 || !strings.Contains(text, "not_logged_since_last=4") {
		t.Errorf("%d failures logged, want 2 (the second saying 4 were not):\n%s", n, text)
	}
	if n := strings.Count(text, "answers again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, text)
	}
}

func TestNewNeedsNodeName(t *testing.T) {
	if _, err := New(nil, nil, Config{}); err == nil {
		t.Fatal("New accepted an empty node name")
	}
}

// BenchmarkLookup is the per-chunk cost of enrichment once a file's answer is cached.
func BenchmarkLookup(b *testing.B) {
	pod := testPod("shop", "web")
	fc := startFake(b, testConfig(), pod, namespace("shop", nil, nil))
	src := podsSource(pod, "app", 0)
	if fc.e.Lookup(src).Kube == nil {
		b.Fatal("pod not found")
	}
	b.ReportAllocs()
	for b.Loop() {
		if fc.e.Lookup(src).Kube == nil {
			b.Fatal("lost")
		}
	}
}

// BenchmarkLookupAfterChange is the cost of the first lookup of a file after the cache changed
// (any pod or namespace change): the answer is worked out again under the read lock.
func BenchmarkLookupAfterChange(b *testing.B) {
	pod := testPod("shop", "web")
	fc := startFake(b, testConfig(), pod, namespace("shop", nil, nil))
	src := podsSource(pod, "app", 0)
	b.ReportAllocs()
	for b.Loop() {
		fc.e.gen.Add(1)
		if fc.e.Lookup(src).Kube == nil {
			b.Fatal("lost")
		}
	}
}
