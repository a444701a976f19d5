package kube

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-logs/skiff/agent/kube/core"
)

// Annotations skiff acts on, on a pod or (exclude only) its namespace.
const (
	// AnnotationExclude "true" drops the records of a pod, or of every pod of a namespace.
	AnnotationExclude = "skiff.io/exclude"
	// AnnotationParser "json" parses each message of a pod's containers as a JSON object.
	AnnotationParser = "skiff.io/parser"
)

// podInfo is what the pod informer stores of a pod: the informer's transform turns each
// *core.Pod into one, so that the store holds a few hundred bytes per pod instead of the
// whole object (managed fields, env, volumes, probes, conditions, … and the many empty fields
// of the API types). It is never modified once made.
type podInfo struct {
	// Name, Namespace, UID and ResourceVersion as the pod's; Labels in document form;
	// Annotations only the allowlisted ones, in document form. Nothing else is set.
	metav1.ObjectMeta
	NodeName, PodIP    string
	Exclude, ParseJSON bool // the pod's skiff.io annotations
	// Containers lists init containers, then containers, then ephemeral containers.
	Containers []containerInfo
}

// containerInfo is one container of a podInfo.
type containerInfo struct {
	Name, Image string
	Init        bool
	// ID and LastID are the current and previous runtime ids, without scheme.
	ID, LastID string
	Restarts   int32
	// Reported: the pod's status lists the container (ID and Restarts are known).
	Reported bool
}

// GetObjectKind implements runtime.Object; a podInfo has no kind.
func (p *podInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. A podInfo is never modified, so sharing its maps
// and slices is safe.
func (p *podInfo) DeepCopyObject() runtime.Object {
	c := *p
	return &c
}

// podInfoOf makes the podInfo of p. Labels and allowlisted annotations get their document keys
// (de-dotted when configured).
func (e *Enricher) podInfoOf(p *core.Pod) *podInfo {
	s := &podInfo{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: e.docKeys(p.Labels),
		},
		NodeName:  p.Spec.NodeName,
		PodIP:     p.Status.PodIP,
		Exclude:   p.Annotations[AnnotationExclude] == "true",
		ParseJSON: p.Annotations[AnnotationParser] == "json",
	}
	for _, k := range e.cfg.PodAnnotations {
		if v, ok := p.Annotations[k]; ok {
			if s.Annotations == nil {
				s.Annotations = make(map[string]string, len(e.cfg.PodAnnotations))
			}
			s.Annotations[e.docKey(k)] = v
		}
	}
	s.Containers = make([]containerInfo, 0, len(p.Spec.InitContainers)+len(p.Spec.Containers)+len(p.Spec.EphemeralContainers))
	for _, c := range p.Spec.InitContainers {
		s.Containers = append(s.Containers, containerInfo{Name: c.Name, Image: c.Image, Init: true})
	}
	for _, c := range p.Spec.Containers {
		s.Containers = append(s.Containers, containerInfo{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.EphemeralContainers {
		s.Containers = append(s.Containers, containerInfo{Name: c.Name, Image: c.Image})
	}
	for _, list := range [][]core.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, st := range list {
			c := s.container(st.Name)
			if c == nil {
				continue
			}
			c.ID, c.Restarts, c.Reported = stripScheme(st.ContainerID), st.RestartCount, true
			if t := st.LastTerminationState.Terminated; t != nil {
				c.LastID = stripScheme(t.ContainerID)
			}
		}
	}
	return s
}

// container returns the container named name, or nil.
func (p *podInfo) container(name string) *containerInfo {
	for i := range p.Containers {
		if p.Containers[i].Name == name {
			return &p.Containers[i]
		}
	}
	return nil
}

// stripScheme turns "containerd://abc" into "abc".
func stripScheme(id string) string {
	if _, rest, ok := strings.Cut(id, "://"); ok {
		return rest
	}
	return id
}

// slimNamespace returns a new namespace metadata object holding only its name, uid, resource
// version, skiff's annotations, and its labels when keepLabels. It is idempotent.
func slimNamespace(m *metav1.PartialObjectMetadata, keepLabels bool) *metav1.PartialObjectMetadata {
	s := &metav1.PartialObjectMetadata{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:            m.Name,
			UID:             m.UID,
			ResourceVersion: m.ResourceVersion,
		},
	}
	for _, k := range []string{AnnotationExclude, AnnotationParser} {
		if v, ok := m.Annotations[k]; ok {
			if s.Annotations == nil {
				s.Annotations = make(map[string]string, 2)
			}
			s.Annotations[k] = v
		}
	}
	if keepLabels {
		s.Labels = m.Labels
	}
	return s
}

// docKeys returns m with its keys in document form: m itself when none changes.
func (e *Enricher) docKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	if !e.cfg.Dedot {
		return m
	}
	changed := false
	for k := range m {
		if strings.IndexByte(k, '.') >= 0 {
			changed = true
			break
		}
	}
	if !changed {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[e.docKey(k)] = v
	}
	return out
}

// docKey is a label or annotation key in document form: with '.' replaced by '_' when dedot
// is on, so that app and app.kubernetes.io/name do not both claim the field app.
func (e *Enricher) docKey(k string) string {
	if !e.cfg.Dedot {
		return k
	}
	return strings.ReplaceAll(k, ".", "_")
}
