// Package kubeobj does, through a client, what controllers and a kubelet would do on a
// kube-apiserver that runs without them (as scripts/kube.sh starts it): create a namespace with
// the "default" ServiceAccount that pod admission requires, create a pod, and report a pod
// started. It needs no testing.TB, so that both kubetest (for tests) and `skiff bench` (to fill
// an apiserver with pods) use it; nor does it import k8s.io/api, which skiff's binary must not
// link: objects go out as JSON made from any value (see core.Client.Create) and come back into
// whatever runtime.Object the caller passes.
package kubeobj

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-logs/skiff/agent/kube/core"
)

// object is the JSON of an object that has only metadata to set.
type object struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
}

// CreateNamespace creates namespace name with labels, decoding it into into unless that is nil,
// then its "default" ServiceAccount (which the ServiceAccount admission plugin requires before
// it admits pods; an existing one is kept). When the namespace exists already, the error
// satisfies apierrors.IsAlreadyExists and nothing else is done.
func CreateNamespace(ctx context.Context, client *core.Client, name string, labels map[string]string, into runtime.Object) error {
	ns := object{metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := client.Create(ctx, "namespaces", "", ns, into); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return EnsureServiceAccount(ctx, client, name, "default")
}

// EnsureServiceAccount creates ServiceAccount ns/name unless it exists.
func EnsureServiceAccount(ctx context.Context, client *core.Client, ns, name string) error {
	err := client.Create(ctx, "serviceaccounts", ns, object{metav1.ObjectMeta{Name: name}}, nil)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", ns, name, err)
	}
	return nil
}

// CreatePod creates pod (any value whose JSON is a core/v1 Pod, see core.Client.Create) in
// namespace ns, where its metadata.namespace, if set, must be ns, and decodes the pod the
// apiserver stored into into. The pod is bound to the node its spec names, if any; nothing
// schedules it otherwise. An existing pod of that name gives an error satisfying
// apierrors.IsAlreadyExists.
func CreatePod(ctx context.Context, client *core.Client, ns string, pod any, into runtime.Object) error {
	if err := client.Create(ctx, "pods", ns, pod, into); err != nil {
		return fmt.Errorf("create pod in namespace %s: %w", ns, err)
	}
	return nil
}

// ContainerID returns the ID a started container gets (SetRunning): 64 hex digits derived from
// the namespace, pod and container names, as a runtime would put in a log file name.
func ContainerID(ns, pod, container string) string {
	sum := sha256.Sum256([]byte(ns + "/" + pod + "/" + container))
	return hex.EncodeToString(sum[:])
}

// The JSON of the core/v1 PodStatus fields a kubelet reports for a started pod.
type (
	podStatus struct {
		Phase                 string            `json:"phase"`
		HostIP                string            `json:"hostIP"`
		HostIPs               []podIP           `json:"hostIPs"`
		PodIP                 string            `json:"podIP"`
		PodIPs                []podIP           `json:"podIPs"`
		StartTime             metav1.Time       `json:"startTime"`
		Conditions            []podCondition    `json:"conditions"`
		InitContainerStatuses []containerStatus `json:"initContainerStatuses,omitempty"`
		ContainerStatuses     []containerStatus `json:"containerStatuses"`
	}
	podIP struct {
		IP string `json:"ip"`
	}
	podCondition struct {
		Type               string      `json:"type"`
		Status             string      `json:"status"`
		LastTransitionTime metav1.Time `json:"lastTransitionTime"`
	}
	containerStatus struct {
		Name        string         `json:"name"`
		Image       string         `json:"image"`
		ImageID     string         `json:"imageID"`
		ContainerID string         `json:"containerID"`
		Ready       bool           `json:"ready"`
		Started     bool           `json:"started"`
		State       containerState `json:"state"`
	}
	containerState struct {
		Running    *stateRunning    `json:"running,omitempty"`
		Terminated *stateTerminated `json:"terminated,omitempty"`
	}
	stateRunning struct {
		StartedAt metav1.Time `json:"startedAt"`
	}
	stateTerminated struct {
		ExitCode    int32       `json:"exitCode"`
		Reason      string      `json:"reason"`
		StartedAt   metav1.Time `json:"startedAt"`
		FinishedAt  metav1.Time `json:"finishedAt"`
		ContainerID string      `json:"containerID"`
	}
)

// runningStatus is what a kubelet would report for pod once started at now: phase Running, pod
// IP ip, init containers terminated with exit code 0 and containers running, each with container
// ID "containerd://"+ContainerID(namespace, name, container).
func runningStatus(pod *core.Pod, ip string, now metav1.Time) podStatus {
	status := func(ct core.Container, init bool) containerStatus {
		s := containerStatus{
			Name:        ct.Name,
			Image:       ct.Image,
			ImageID:     ct.Image,
			ContainerID: "containerd://" + ContainerID(pod.Namespace, pod.Name, ct.Name),
			Ready:       !init,
			Started:     !init,
		}
		if init {
			s.State.Terminated = &stateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: s.ContainerID}
		} else {
			s.State.Running = &stateRunning{StartedAt: now}
		}
		return s
	}
	st := podStatus{
		Phase:     "Running",
		HostIP:    "10.0.0.1",
		HostIPs:   []podIP{{IP: "10.0.0.1"}},
		PodIP:     ip,
		PodIPs:    []podIP{{IP: ip}},
		StartTime: now,
		Conditions: []podCondition{
			{Type: "PodScheduled", Status: "True", LastTransitionTime: now},
			{Type: "Ready", Status: "True", LastTransitionTime: now},
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

// statusPatch is a merge patch replacing a pod's status, on the condition that the pod is at
// resourceVersion.
type statusPatch struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Status podStatus `json:"status"`
}

// SetRunning sets the status of pod, as last read from the apiserver (its resourceVersion is
// checked), to what a kubelet would report once it started pod now: phase Running, pod IP ip,
// init containers terminated with exit code 0 and containers running, each with container ID
// "containerd://"+ContainerID(namespace, name, container). The updated pod is decoded into into
// unless it is nil. Only the status changes (a merge patch of pods/status).
func SetRunning(ctx context.Context, client *core.Client, pod *core.Pod, ip string, into runtime.Object) error {
	var patch statusPatch
	patch.Metadata.ResourceVersion = pod.ResourceVersion
	patch.Status = runningStatus(pod, ip, metav1.Now())
	if err := client.Patch(ctx, "pods", pod.Namespace, pod.Name, "status", patch, into); err != nil {
		return fmt.Errorf("update status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// MarkPodRunning reads pod ns/name and sets it running (SetRunning).
func MarkPodRunning(ctx context.Context, client *core.Client, ns, name, ip string, into runtime.Object) error {
	pod := &core.Pod{}
	if err := client.Get(ctx, "pods", ns, name, pod); err != nil {
		return fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	return SetRunning(ctx, client, pod, ip, into)
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
