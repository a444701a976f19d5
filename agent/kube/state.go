package kube

import (
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-logs/skiff/agent/event"
)

// podKey names a pod by namespace and name (the /var/log/containers layout tells no uid).
type podKey struct{ ns, name string }

// podState is what the cache knows about one pod: its podInfo (as stored by the informer) and
// the Kube of each of its containers. A change of the pod replaces it; a change of its namespace
// rebuilds its Kubes (new ones: a Kube handed out never changes). Guarded by Enricher.mu.
type podState struct {
	*podInfo
	// kubes[i] is the Kube of Containers[i]'s current run.
	kubes []*event.Kube
	// exclude is the pod's or its namespace's skiff.io/exclude.
	exclude bool
	// deleted is when the informer reported the pod deleted; zero while it exists.
	deleted time.Time
}

// nsState is what the cache knows about one namespace.
type nsState struct {
	labels  map[string]string // document form; nil when namespace_labels is off
	exclude bool
}

// build (re)makes the Kubes of s's containers with namespace ns (nil when unknown).
func (s *podState) build(ns *nsState) {
	var nsLabels map[string]string
	s.exclude = s.Exclude
	if ns != nil {
		nsLabels = ns.labels
		s.exclude = s.exclude || ns.exclude
	}
	s.kubes = make([]*event.Kube, len(s.Containers))
	for i, c := range s.Containers {
		s.kubes[i] = s.kube(nsLabels, c.Name, c.Image, c.ID, c.Init)
	}
}

func (s *podState) kube(nsLabels map[string]string, name, image, id string, init bool) *event.Kube {
	return &event.Kube{
		Namespace: s.Namespace, NamespaceLabels: nsLabels,
		PodName: s.Name, PodUID: string(s.UID), PodIP: s.PodIP,
		Labels: s.Labels, Annotations: s.Annotations,
		ContainerName: name, ContainerImage: image, ContainerID: id,
		NodeName: s.NodeName, Init: init,
	}
}

// sameFacts reports whether a and b enrich records alike (they may differ in resource version).
func sameFacts(a, b *podInfo) bool {
	return a.UID == b.UID && a.Name == b.Name && a.Namespace == b.Namespace && a.PodIP == b.PodIP &&
		a.NodeName == b.NodeName && a.Exclude == b.Exclude && a.ParseJSON == b.ParseJSON &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		slices.Equal(a.Containers, b.Containers)
}

// withID returns a Kube like k with container id id (k itself when it has that id already).
func withID(k *event.Kube, id string) *event.Kube {
	if k.ContainerID == id {
		return k
	}
	return &event.Kube{
		Namespace: k.Namespace, NamespaceLabels: k.NamespaceLabels,
		PodName: k.PodName, PodUID: k.PodUID, PodIP: k.PodIP,
		Labels: k.Labels, Annotations: k.Annotations,
		ContainerName: k.ContainerName, ContainerImage: k.ContainerImage, ContainerID: id,
		NodeName: k.NodeName, Init: k.Init,
	}
}

// idFor returns the id of the container run whose log file src is: the id in the
// /var/log/containers name; for /var/log/pods/…/<container>/<restart>.log the current id when
// <restart> is the restart count, the previous one when it is one less, else "" (unknown).
func (c *containerInfo) idFor(src *event.Source) string {
	if src.ContainerID != "" {
		return src.ContainerID
	}
	n, ok := restartOf(src.Path)
	switch {
	case !ok || !c.Reported || n == c.Restarts:
		return c.ID
	case n == c.Restarts-1:
		return c.LastID
	}
	return ""
}

// restartOf reads <restart> from a /var/log/pods file name "<restart>.log[.<suffix>]".
func restartOf(path string) (int32, bool) {
	base := path[strings.LastIndexByte(path, '/')+1:]
	digits, _, found := strings.Cut(base, ".log")
	if !found || digits == "" || len(digits) > 9 {
		return 0, false
	}
	var n int32
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + d - '0'
	}
	return n, true
}

// newNSState takes the facts of a slim namespace.
func (e *Enricher) newNSState(m *metav1.PartialObjectMetadata) *nsState {
	s := &nsState{exclude: m.Annotations[AnnotationExclude] == "true"}
	if e.cfg.NamespaceLabels {
		s.labels = e.docKeys(m.Labels)
	}
	return s
}

func sameNS(a, b *nsState) bool {
	return a.exclude == b.exclude && maps.Equal(a.labels, b.labels)
}
