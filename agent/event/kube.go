package event

import "sync/atomic"

// Kube is what the Kubernetes API tells about the container a record came from. It is built by
// the enricher once per pod container (and namespace change), shared read-only by every record
// of that container, and never modified after it is first given to a record: a change makes a
// new Kube. Label and annotation keys are already in their document form (de-dotted when so
// configured).
//
// Kube is not copyable (it caches its encoding); build a new one instead.
type Kube struct {
	Namespace       string
	NamespaceLabels map[string]string
	PodName         string
	PodUID          string
	PodIP           string
	Labels          map[string]string
	// Annotations holds only the allowlisted annotations.
	Annotations    map[string]string
	ContainerName  string
	ContainerImage string
	// ContainerID is the runtime's id without its scheme (no "containerd://").
	ContainerID string
	NodeName    string
	// Init is true for init containers.
	Init bool

	encoded atomic.Pointer[[]byte]
}

// Encoded returns the encoding an encoder stored with SetEncoded, or nil. Encoders use it to
// write a Kube's fields once, not once per record.
func (k *Kube) Encoded() []byte {
	if p := k.encoded.Load(); p != nil {
		return *p
	}
	return nil
}

// SetEncoded stores b as the Kube's encoding; b must not be modified afterwards. Only one
// encoding format may use it (outputs/document's). Concurrent callers store equal encodings,
// so which one wins does not matter.
func (k *Kube) SetEncoded(b []byte) { k.encoded.Store(&b) }
