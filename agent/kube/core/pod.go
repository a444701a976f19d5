package core

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SchemeGroupVersion is the core API group's version v1 (group "", as in apiVersion: v1).
var SchemeGroupVersion = schema.GroupVersion{Version: "v1"}

// Pod is a read-only view of a core/v1 Pod: its whole metadata, and of its spec and status the
// few fields skiff reads. It decodes from the API's JSON, which has many more fields; those are
// skipped while decoding. Never send a Pod back to the apiserver (Update with it would drop
// every field it lacks): it is for reading pods, not for writing them.
//
// Pod and PodList are not k8s.io/api/core/v1's types on purpose: that package links ~1.75 MB of
// generated code (its init registers every core type), and its Pod decodes, then the cache
// drops, everything below.
type Pod struct {
	metav1.TypeMeta `json:",inline"`
	ObjectMeta      `json:"metadata,omitzero"`
	Spec            PodSpec   `json:"spec,omitzero"`
	Status          PodStatus `json:"status,omitzero"`
}

// ObjectMeta is an object's metadata without its managed fields (server-side apply's field
// ownership, often the bulk of the metadata): decoding skips them, so its ManagedFields are
// always empty.
type ObjectMeta struct {
	metav1.ObjectMeta `json:",inline"`
	// ManagedFields hides metav1.ObjectMeta's from JSON.
	ManagedFields skipped `json:"managedFields,omitzero"`
}

// skipped is a JSON value decoding skips (the decoder still scans it) and encoding leaves out.
type skipped struct{}

// UnmarshalJSON implements json.Unmarshaler: it ignores data.
func (*skipped) UnmarshalJSON([]byte) error { return nil }

// PodSpec is what skiff reads of a pod's spec.
type PodSpec struct {
	NodeName            string      `json:"nodeName,omitempty"`
	InitContainers      []Container `json:"initContainers,omitempty"`
	Containers          []Container `json:"containers,omitempty"`
	EphemeralContainers []Container `json:"ephemeralContainers,omitempty"`
}

// Container is what skiff reads of a container (or an ephemeral container) of a pod's spec.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
}

// PodStatus is what skiff reads of a pod's status.
type PodStatus struct {
	PodIP                      string            `json:"podIP,omitempty"`
	InitContainerStatuses      []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses          []ContainerStatus `json:"containerStatuses,omitempty"`
	EphemeralContainerStatuses []ContainerStatus `json:"ephemeralContainerStatuses,omitempty"`
}

// ContainerStatus is what skiff reads of a container's status: its runtime id
// ("containerd://…"), restarts, and the id of its previous run when that one terminated.
type ContainerStatus struct {
	Name                 string         `json:"name"`
	ContainerID          string         `json:"containerID,omitempty"`
	RestartCount         int32          `json:"restartCount"`
	LastTerminationState ContainerState `json:"lastState,omitzero"`
}

// ContainerState is what skiff reads of a container state: only a terminated one.
type ContainerState struct {
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateTerminated is what skiff reads of a terminated container's state.
type ContainerStateTerminated struct {
	ContainerID string `json:"containerID,omitempty"`
}

// PodList is a list of Pods as the apiserver answers a list request.
type PodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pod `json:"items"`
}

// DeepCopyInto copies p into out, sharing nothing modifiable with p.
func (p *Pod) DeepCopyInto(out *Pod) {
	*out = *p
	p.ObjectMeta.ObjectMeta.DeepCopyInto(&out.ObjectMeta.ObjectMeta)
	out.Spec.InitContainers = slices.Clone(p.Spec.InitContainers)
	out.Spec.Containers = slices.Clone(p.Spec.Containers)
	out.Spec.EphemeralContainers = slices.Clone(p.Spec.EphemeralContainers)
	out.Status.InitContainerStatuses = cloneStatuses(p.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = cloneStatuses(p.Status.ContainerStatuses)
	out.Status.EphemeralContainerStatuses = cloneStatuses(p.Status.EphemeralContainerStatuses)
}

func cloneStatuses(list []ContainerStatus) []ContainerStatus {
	out := slices.Clone(list)
	for i := range out {
		if t := out[i].LastTerminationState.Terminated; t != nil {
			c := *t
			out[i].LastTerminationState.Terminated = &c
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil
	}
	out := new(Pod)
	p.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &PodList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Pod, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
