package event

import "testing"

func TestLookupField(t *testing.T) {
	m := map[string]any{
		"a":                 map[string]any{"b": map[string]any{"c": 1}, "x.y": "dotted"},
		"a.b":               "flat wins",
		"kubernetes.labels": map[string]string{"app.kubernetes.io/name": "web"},
		"nil":               nil,
	}
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"a.b", "flat wins", true},
		{"a.b.c", 1, true},
		{"a.x.y", "dotted", true},
		{"kubernetes.labels.app.kubernetes.io/name", "web", true},
		{"nil", nil, true},
		{"a.missing", nil, false},
		{"a.b.c.d", nil, false},
		{"", nil, false},
	}
	for _, tt := range tests {
		v, ok := LookupField(m, tt.path)
		if v != tt.want || ok != tt.ok {
			t.Errorf("LookupField(%q) = %v, %v; want %v, %v", tt.path, v, ok, tt.want, tt.ok)
		}
	}
	if _, ok := LookupField(nil, "a"); ok {
		t.Error("nil map answered")
	}
	// A map[string]string value is boxed into an interface (one allocation); the rest is free.
	if n := testing.AllocsPerRun(100, func() { LookupField(m, "a.x.y") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestKeyOwnValue(t *testing.T) {
	src := &Source{Path: "/p.log", Namespace: "src-ns", PodName: "src-pod", Container: "c"}
	kube := &Kube{Namespace: "kube-ns", PodName: "kube-pod", NodeName: "n1", Labels: map[string]string{"app.kubernetes.io/name": "web"}}
	r := &Record{Tag: "t.x", Message: []byte("msg"), Stream: StreamStderr, Source: src}
	rk := &Record{Source: src, Kube: kube}
	tests := []struct {
		path string
		r    *Record
		own  bool
		want string
	}{
		{"tag", r, true, "t.x"},
		{"message", r, true, "msg"},
		{"stream", r, true, "stderr"},
		{"log.file.path", r, true, "/p.log"},
		{"kubernetes.namespace", r, true, "src-ns"},
		{"kubernetes.namespace", rk, true, "kube-ns"},
		{"kubernetes.container.name", r, true, "c"},
		{"kubernetes.container.name", rk, true, ""}, // Kube supersedes Source, as in documents
		{"kubernetes.node.name", rk, true, "n1"},
		{"kubernetes.labels.app.kubernetes.io/name", rk, true, "web"},
		{"kubernetes.labels.", rk, false, ""},
		{"objectRef.namespace", r, false, ""},
		{"kubernetes.namespace", &Record{}, true, ""},
	}
	for _, tt := range tests {
		k := ParseKey(tt.path)
		if k.Own() != tt.own || k.OwnValue(tt.r) != tt.want || k.Path != tt.path {
			t.Errorf("%q: Own %v OwnValue %q, want %v %q", tt.path, k.Own(), k.OwnValue(tt.r), tt.own, tt.want)
		}
	}
}
