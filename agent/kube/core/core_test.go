package core_test

import (
	"context"
	"os"
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

// TestListWatchOnRealAPIServer: lists and watches decode pods (protobuf) from a real
// kube-apiserver, the field selector reaches it, and a missing object is a NotFound error.
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
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{NodeName: kubetest.NodeName, Containers: []corev1.Container{{Name: "c", Image: "busybox:1.37"}}},
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
	created := &corev1.Pod{}
	if err := client.Create(ctx, "pods", ns, pod, created); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		p, ok := ev.Object.(*corev1.Pod)
		if ev.Type != watch.Added || !ok || p.Name != "p" || p.Spec.Containers[0].Image != "busybox:1.37" {
			t.Fatalf("watch event %s %T %+v, want ADDED pod p", ev.Type, ev.Object, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}

	for sel, want := range map[string]int{kubetest.NodeName: 1, "another-node": 0} {
		l, err := client.Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", sel).String()})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != want {
			t.Errorf("pods on %s: %d, want %d", sel, len(l.Items), want)
		}
	}
	if err := client.Delete(ctx, "pods", ns, "p", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if err := client.Get(ctx, "pods", ns, "p", &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v, want NotFound", err)
	}
}
