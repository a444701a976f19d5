// Package kubeobj does, through a client, what controllers and a kubelet would do on a
// kube-apiserver that runs without them (as scripts/kube.sh starts it): create a namespace with
// the "default" ServiceAccount that pod admission requires, create a pod, and report a pod
// started. It needs no testing.TB, so that both kubetest (for tests) and `skiff bench` (to fill
// an apiserver with pods) use it.
package kubeobj

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-logs/skiff/agent/kube/core"
)

// CreateNamespace creates namespace name with labels, then its "default" ServiceAccount (which
// the ServiceAccount admission plugin requires before it admits pods; an existing one is kept).
// When the namespace exists already, the error satisfies apierrors.IsAlreadyExists and nothing
// else is done.
func CreateNamespace(ctx context.Context, client *core.Client, name string, labels map[string]string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	err := client.Create(ctx, "namespaces", "", &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, ns)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	if err := EnsureServiceAccount(ctx, client, name, "default"); err != nil {
		return nil, err
	}
	return ns, nil
}

// EnsureServiceAccount creates ServiceAccount ns/name unless it exists.
func EnsureServiceAccount(ctx context.Context, client *core.Client, ns, name string) error {
	err := client.Create(ctx, "serviceaccounts", ns, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, &corev1.ServiceAccount{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", ns, name, err)
	}
	return nil
}

// CreatePod creates a copy of pod in namespace ns (pod itself is not modified) and returns the
// pod the apiserver stored. The pod is bound to the node its spec names, if any; nothing
// schedules it otherwise. An existing pod of that name gives an error satisfying
// apierrors.IsAlreadyExists.
func CreatePod(ctx context.Context, client *core.Client, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	p := pod.DeepCopy()
	p.Namespace = ns
	created := &corev1.Pod{}
	if err := client.Create(ctx, "pods", ns, p, created); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", ns, p.Name, err)
	}
	return created, nil
}

// ContainerID returns the ID a started container gets (RunningStatus): 64 hex digits derived
// from the namespace, pod and container names, as a runtime would put in a log file name.
func ContainerID(ns, pod, container string) string {
	sum := sha256.Sum256([]byte(ns + "/" + pod + "/" + container))
	return hex.EncodeToString(sum[:])
}

// RunningStatus is what a kubelet would report for pod once started at now: phase Running, pod
// IP ip, init containers terminated with exit code 0 and containers running, each with container
// ID "containerd://"+ContainerID(namespace, name, container).
func RunningStatus(pod *corev1.Pod, ip string, now metav1.Time) corev1.PodStatus {
	status := func(ct corev1.Container, init bool) corev1.ContainerStatus {
		s := corev1.ContainerStatus{
			Name:        ct.Name,
			Image:       ct.Image,
			ImageID:     ct.Image,
			ContainerID: "containerd://" + ContainerID(pod.Namespace, pod.Name, ct.Name),
			Ready:       !init,
			Started:     new(!init),
		}
		if init {
			s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: s.ContainerID}
		} else {
			s.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		}
		return s
	}
	st := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "10.0.0.1",
		HostIPs:   []corev1.HostIP{{IP: "10.0.0.1"}},
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, ct := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, status(ct, true))
	}
	for _, ct := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, status(ct, false))
	}
	return st
}

// SetRunning stores RunningStatus(pod, ip, now) as the status of pod, which must be the pod as
// last read from the apiserver (its resourceVersion is checked), and returns the updated pod.
// pod itself is not modified.
func SetRunning(ctx context.Context, client *core.Client, pod *corev1.Pod, ip string) (*corev1.Pod, error) {
	p := pod.DeepCopy()
	p.Status = RunningStatus(p, ip, metav1.Now())
	updated := &corev1.Pod{}
	if err := client.Update(ctx, "pods", p.Namespace, p.Name, "status", p, updated); err != nil {
		return nil, fmt.Errorf("update status of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return updated, nil
}

// MarkPodRunning reads pod ns/name and sets it running (SetRunning).
func MarkPodRunning(ctx context.Context, client *core.Client, ns, name, ip string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := client.Get(ctx, "pods", ns, name, pod); err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	return SetRunning(ctx, client, pod, ip)
}

// DeletePod deletes pod ns/name at once (grace period 0: no kubelet would confirm a graceful
// deletion). A pod already gone is not an error.
func DeletePod(ctx context.Context, client *core.Client, ns, name string) error {
	err := client.Delete(ctx, "pods", ns, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	return nil
}
