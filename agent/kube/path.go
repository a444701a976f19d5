// Package kube knows Kubernetes: what the kubelet's log file paths say about a container.
package kube

import (
	"path/filepath"
	"strings"

	"github.com/skiff-logs/skiff/agent/event"
)

// UnknownTag is the tag of a container log file whose path follows neither kubelet layout.
const UnknownTag = "kube.unknown"

// Describe returns what a kubelet log file's path tells about its container, and the tag
// kube.<namespace>.<pod>.<container>. It understands both layouts:
//
//	/var/log/containers/<pod>_<namespace>_<container>-<container id>.log
//	/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart>.log[.<rotation suffix>]
//
// Namespaces and container names are DNS labels (no dots); pod names may contain dots, which then
// appear as extra tag parts: patterns such as kube.<namespace>.** still select them. A path in
// neither layout gets UnknownTag and no Kubernetes facts.
func Describe(path string) event.Source {
	s := event.Source{Path: path, Tag: UnknownTag}
	dir, base := filepath.Split(path)
	if ns, pod, uid, ok := podsDir(filepath.Base(filepath.Dir(filepath.Clean(dir)))); ok && isLogName(base) {
		s.Namespace, s.PodName, s.PodUID = ns, pod, uid
		s.Container = filepath.Base(filepath.Clean(dir))
	} else if pod, ns, ctr, id, ok := containersName(base); ok {
		s.Namespace, s.PodName, s.Container, s.ContainerID = ns, pod, ctr, id
	} else {
		return s
	}
	s.Tag = "kube." + s.Namespace + "." + s.PodName + "." + s.Container
	return s
}

// podsDir splits "<namespace>_<pod>_<uid>". Neither a namespace nor a pod name may contain '_'.
func podsDir(name string) (ns, pod, uid string, ok bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// isLogName accepts "0.log" and rotated "0.log.20240102-030405" (and its .gz).
func isLogName(base string) bool {
	i := strings.Index(base, ".log")
	if i <= 0 {
		return false
	}
	for _, c := range base[:i] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// containersName splits "<pod>_<namespace>_<container>-<id>.log".
func containersName(base string) (pod, ns, ctr, id string, ok bool) {
	name, found := strings.CutSuffix(base, ".log")
	if !found {
		return "", "", "", "", false
	}
	parts := strings.Split(name, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", "", false
	}
	dash := strings.LastIndexByte(parts[2], '-')
	if dash <= 0 || dash == len(parts[2])-1 {
		return "", "", "", "", false
	}
	return parts[0], parts[1], parts[2][:dash], parts[2][dash+1:], true
}
