package document

import (
	"bytes"

	"github.com/skiff-logs/skiff/agent/event"
)

// appendKube writes k's kubernetes and container objects, encoding them only the first time a
// Kube is written: a Kube is shared by all records of a container and does not change.
func appendKube(dst []byte, k *event.Kube) []byte {
	enc := k.Encoded()
	if enc == nil {
		// Kept for the Kube's life (thousands of them): exactly sized.
		enc = bytes.Clone(encodeKube(make([]byte, 0, 1024), k))
		k.SetEncoded(enc)
	}
	return append(dst, enc...)
}

// object writes the members of one JSON object, putting commas between them.
type object struct {
	dst []byte
	n   int
}

// key starts a member named name (a plain key that needs no escaping).
func (o *object) key(name string) {
	if o.n > 0 {
		o.dst = append(o.dst, ',')
	}
	o.n++
	o.dst = append(o.dst, '"')
	o.dst = append(o.dst, name...)
	o.dst = append(o.dst, '"', ':')
}

func (o *object) str(name, v string) {
	if v != "" {
		o.key(name)
		o.dst = appendString(o.dst, v)
	}
}

func (o *object) strings(name string, m map[string]string) {
	if len(m) > 0 {
		o.key(name)
		o.dst = appendObject(o.dst, m, appendString)
	}
}

// sub writes a member holding an object filled by fill, left out when fill writes nothing.
func (o *object) sub(name string, fill func(*object)) {
	mark := len(o.dst)
	n := o.n
	o.key(name)
	o.dst = append(o.dst, '{')
	inner := object{dst: o.dst}
	fill(&inner)
	o.dst = inner.dst
	if inner.n == 0 {
		o.dst, o.n = o.dst[:mark], n
		return
	}
	o.dst = append(o.dst, '}')
}

// encodeKube writes ,"kubernetes":{...},"container":{"id":...} with the non-empty values of k.
func encodeKube(dst []byte, k *event.Kube) []byte {
	top := object{dst: dst, n: 1} // after the document's earlier members
	top.sub("kubernetes", func(o *object) {
		o.str("namespace", k.Namespace)
		o.strings("namespace_labels", k.NamespaceLabels)
		o.sub("pod", func(o *object) {
			o.str("name", k.PodName)
			o.str("uid", k.PodUID)
			o.str("ip", k.PodIP)
		})
		o.strings("labels", k.Labels)
		o.strings("annotations", k.Annotations)
		o.sub("container", func(o *object) {
			o.str("name", k.ContainerName)
			o.str("image", k.ContainerImage)
			if k.Init {
				o.key("init")
				o.dst = append(o.dst, "true"...)
			}
		})
		o.sub("node", func(o *object) { o.str("name", k.NodeName) })
	})
	top.sub("container", func(o *object) { o.str("id", k.ContainerID) })
	return top.dst
}
