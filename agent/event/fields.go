package event

import (
	"strings"
	"unsafe"
)

// LookupField finds a dotted path in a record's Fields (nested maps). At each level the whole
// rest of the path is tried as a key first, then each split at a dot, so both {"a":{"b":1}} and
// {"a.b":1} answer "a.b"; a map[string]string answers the rest of the path as one key
// ("kubernetes.labels" → {"app.kubernetes.io/name": …}). It allocates only to box a
// map[string]string value.
func LookupField(m map[string]any, path string) (any, bool) {
	if m == nil {
		return nil, false
	}
	if v, ok := m[path]; ok {
		return v, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		switch next := m[path[:i]].(type) {
		case map[string]any:
			if v, ok := LookupField(next, path[i+1:]); ok {
				return v, true
			}
		case map[string]string:
			if v, ok := next[path[i+1:]]; ok {
				return v, true
			}
		}
	}
	return nil, false
}

// Key is a compiled dotted key into a record: one of the fields the document encoder writes
// from the record itself, or a path into Fields. Rules and name templates use it, so a key
// means the same everywhere. Immutable; the zero Key names nothing.
type Key struct {
	// Path is the key as written.
	Path string
	kind keyKind
	sub  string // the map key of kubernetes.labels.<sub> and its kin
}

type keyKind uint8

const (
	keyFields keyKind = iota
	keyTag
	keyMessage
	keyStream
	keyPath
	keyNamespace
	keyPodName
	keyPodUID
	keyPodIP
	keyContainerName
	keyContainerImage
	keyContainerID
	keyNodeName
	keyLabel
	keyAnnotation
	keyNamespaceLabel
)

// recordKeys are the document's own fields a Key can name, by their document names.
var recordKeys = map[string]keyKind{
	"tag":                        keyTag,
	"message":                    keyMessage,
	"stream":                     keyStream,
	"log.file.path":              keyPath,
	"kubernetes.namespace":       keyNamespace,
	"kubernetes.pod.name":        keyPodName,
	"kubernetes.pod.uid":         keyPodUID,
	"kubernetes.pod.ip":          keyPodIP,
	"kubernetes.container.name":  keyContainerName,
	"kubernetes.container.image": keyContainerImage,
	"container.id":               keyContainerID,
	"kubernetes.node.name":       keyNodeName,
}

var recordMaps = []struct {
	prefix string
	kind   keyKind
}{
	{"kubernetes.labels.", keyLabel},
	{"kubernetes.annotations.", keyAnnotation},
	{"kubernetes.namespace_labels.", keyNamespaceLabel},
}

// ParseKey compiles path. The document's own fields are tag, message, stream, log.file.path,
// kubernetes.namespace, kubernetes.pod.name|uid|ip, kubernetes.container.name|image,
// container.id, kubernetes.node.name and kubernetes.labels|annotations|namespace_labels.<key>
// (keys in their document form); any other path is looked up in Fields.
func ParseKey(path string) Key {
	k := Key{Path: path, kind: recordKeys[path]}
	for _, m := range recordMaps {
		if sub, ok := strings.CutPrefix(path, m.prefix); ok && sub != "" {
			k.kind, k.sub = m.kind, sub
		}
	}
	return k
}

// Own reports whether k names one of the document's own fields rather than a path in Fields.
func (k Key) Own() bool { return k.kind != keyFields }

// OwnValue returns the value of the document field k names, from r.Kube when set, else from
// r.Source and the record: "" when k names none or r has no value for it. Message is returned
// as a string that aliases r.Message (valid while r.Message is unchanged). It does not allocate.
func (k Key) OwnValue(r *Record) string {
	switch k.kind {
	case keyFields:
		return ""
	case keyTag:
		return r.Tag
	case keyMessage:
		return unsafe.String(unsafe.SliceData(r.Message), len(r.Message))
	case keyStream:
		return r.Stream
	}
	if kb := r.Kube; kb != nil {
		switch k.kind {
		case keyNamespace:
			return kb.Namespace
		case keyPodName:
			return kb.PodName
		case keyPodUID:
			return kb.PodUID
		case keyPodIP:
			return kb.PodIP
		case keyContainerName:
			return kb.ContainerName
		case keyContainerImage:
			return kb.ContainerImage
		case keyContainerID:
			return kb.ContainerID
		case keyNodeName:
			return kb.NodeName
		case keyLabel:
			return kb.Labels[k.sub]
		case keyAnnotation:
			return kb.Annotations[k.sub]
		case keyNamespaceLabel:
			return kb.NamespaceLabels[k.sub]
		}
	}
	s := r.Source
	if s == nil {
		return ""
	}
	switch k.kind {
	case keyPath:
		return s.Path
	case keyNamespace:
		return s.Namespace
	case keyPodName:
		return s.PodName
	case keyPodUID:
		return s.PodUID
	case keyContainerName:
		return s.Container
	case keyContainerID:
		return s.ContainerID
	}
	return ""
}
