package core_test

import (
	"context"
	"os"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-logs/skiff/agent/kube/core"
	"github.com/skiff-logs/skiff/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

// TestListWatchOnRealAPIServer: lists and watches decode pods (JSON, into core's slim types)
// from a real kube-apiserver with what skiff reads of them (and without their managed fields), the field selector reaches it, a
// status merge patch applies, and a missing object is a NotFound error.
func TestListWatchOnRealAPIServer(t *testing.T) {
	c := kubetest.Env(t)
	client, err := core.New(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := kubetest.UniqueName("core")
	c.CreateNamespace(t, ns, nil)
	// Written with k8s.io/api's types (which skiff's binary does not link): the JSON the
	// apiserver stores and answers is the real thing, with far more fields than core.Pod.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "shop"}},
		Spec: corev1.PodSpec{
			NodeName:       kubetest.NodeName,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.37", Command: []string{"true"}}},
			Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27", Env: []corev1.EnvVar{{Name: "A", Value: "b"}},
				Ports: []corev1.ContainerPort{{ContainerPort: 80}}}},
		},
	}
	list, err := client.Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := client.Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created := &corev1.Pod{} // a type the client's scheme does not know decodes too
	if err := client.Create(ctx, "pods", ns, pod, created); err != nil {
		t.Fatal(err)
	}
	if created.UID == "" || created.Spec.Containers[0].Env[0].Value != "b" || len(created.ManagedFields) == 0 {
		t.Fatalf("created pod %+v", created)
	}
	next := func(want watch.EventType) *core.Pod {
		t.Helper()
		select {
		case ev := <-w.ResultChan():
			p, ok := ev.Object.(*core.Pod)
			if ev.Type != want || !ok {
				t.Fatalf("watch event %s %T %+v, want %s of a *core.Pod", ev.Type, ev.Object, ev.Object, want)
			}
			return p
		case <-ctx.Done():
			t.Fatal("no watch event")
		}
		return nil
	}
	wantSpec := core.PodSpec{NodeName: kubetest.NodeName,
		InitContainers: []core.Container{{Name: "init", Image: "busybox:1.37"}}, Containers: []core.Container{{Name: "c", Image: "nginx:1.27"}}}
	check := func(what string, p *core.Pod, status core.PodStatus) {
		t.Helper()
		if p.Name != "p" || p.Namespace != ns || p.UID != created.UID || p.ResourceVersion == "" ||
			!reflect.DeepEqual(p.Labels, pod.Labels) || !reflect.DeepEqual(p.Annotations, pod.Annotations) ||
			!reflect.DeepEqual(p.Spec, wantSpec) || !reflect.DeepEqual(p.Status, status) || p.ObjectMeta.ObjectMeta.ManagedFields != nil {
			t.Errorf("%s: %+v\nwant spec %+v status %+v", what, p, wantSpec, status)
		}
	}
	check("added", next(watch.Added), core.PodStatus{})

	// A status as a kubelet would patch it in, with a previous run of c.
	running := map[string]any{"status": map[string]any{
		"phase": "Running", "podIP": "10.1.2.3",
		"initContainerStatuses": []map[string]any{{"name": "init", "image": "busybox:1.37", "imageID": "", "ready": false,
			"restartCount": 0, "containerID": "containerd://i1", "state": map[string]any{"terminated": map[string]any{"exitCode": 0, "containerID": "containerd://i1"}}}},
		"containerStatuses": []map[string]any{{"name": "c", "image": "nginx:1.27", "imageID": "", "ready": true,
			"restartCount": 1, "containerID": "containerd://c2", "state": map[string]any{"running": map[string]any{}},
			"lastState": map[string]any{"terminated": map[string]any{"exitCode": 1, "containerID": "containerd://c1"}}}},
	}}
	patched := &core.Pod{}
	if err := client.Patch(ctx, "pods", ns, "p", "status", running, patched); err != nil {
		t.Fatal(err)
	}
	wantStatus := core.PodStatus{PodIP: "10.1.2.3",
		InitContainerStatuses: []core.ContainerStatus{{Name: "init", ContainerID: "containerd://i1"}},
		ContainerStatuses: []core.ContainerStatus{{Name: "c", ContainerID: "containerd://c2", RestartCount: 1,
			LastTerminationState: core.ContainerState{Terminated: &core.ContainerStateTerminated{ContainerID: "containerd://c1"}}}},
	}
	check("patched", patched, wantStatus)
	check("modified", next(watch.Modified), wantStatus)
	stale := map[string]any{"metadata": map[string]any{"resourceVersion": created.ResourceVersion}, "status": map[string]any{"podIP": "10.9.9.9"}}
	if err := client.Patch(ctx, "pods", ns, "p", "status", stale, nil); !apierrors.IsConflict(err) {
		t.Errorf("patch at an old resourceVersion: %v, want Conflict", err)
	}

	for sel, want := range map[string]int{kubetest.NodeName: 1, "another-node": 0} {
		l, err := client.Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", sel).String()})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != want {
			t.Fatalf("pods on %s: %d, want %d", sel, len(l.Items), want)
		}
		if want == 1 {
			check("listed", &l.Items[0], wantStatus)
		}
	}
	if err := client.Delete(ctx, "pods", ns, "p", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if err := client.Get(ctx, "pods", ns, "p", &core.Pod{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v, want NotFound", err)
	}
}

// TestPodDeepCopy: a deep copy shares nothing modifiable with its original.
func TestPodDeepCopy(t *testing.T) {
	p := &core.Pod{
		Spec: core.PodSpec{NodeName: "n", Containers: []core.Container{{Name: "c", Image: "i"}}},
		Status: core.PodStatus{ContainerStatuses: []core.ContainerStatus{{Name: "c", ContainerID: "x://2",
			LastTerminationState: core.ContainerState{Terminated: &core.ContainerStateTerminated{ContainerID: "x://1"}}}}},
	}
	p.Name, p.Labels = "p", map[string]string{"a": "b"}
	list := &core.PodList{Items: []core.Pod{*p}}
	lc := list.DeepCopyObject().(*core.PodList)
	c := p.DeepCopyObject().(*core.Pod)
	for _, c := range []*core.Pod{c, &lc.Items[0]} {
		if !reflect.DeepEqual(c, p) {
			t.Fatalf("copy %+v, want %+v", c, p)
		}
		c.Labels["a"] = "changed"
		c.Spec.Containers[0].Name = "changed"
		c.Status.ContainerStatuses[0].LastTerminationState.Terminated.ContainerID = "changed"
	}
	if p.Labels["a"] != "b" || p.Spec.Containers[0].Name != "c" || p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ContainerID != "x://1" {
		t.Errorf("changing a copy changed the original: %+v", p)
	}
}
