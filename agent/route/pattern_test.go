package route

import "testing"

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		tag     string
		want    bool
	}{
		{"**", "", true},
		{"**", "kube.ns.pod.c", true},
		{"kube.**", "kube", true},
		{"kube.**", "kube.ns.pod.c", true},
		{"kube.**", "kubex.ns", false},
		{"kube.*", "kube.ns", true},
		{"kube.*", "kube.ns.pod", false},
		{"kube.*", "kube", false},
		{"kube.*.pod.*", "kube.ns.pod.c", true},
		{"kube.*.pod.*", "kube.ns.other.c", false},
		{"audit", "audit", true},
		{"audit", "audit.ns", false},
		{"audit.**", "audit.ns", true},
		{"**.c", "kube.ns.pod.c", true},
		{"**.c", "c", true},
		{"**.c", "kube.ns.pod.d", false},
		{"a.**.z", "a.z", true},
		{"a.**.z", "a.b.c.z", true},
		{"a.**.z", "a.b.c.y", false},
		{"kube.{prod,stage}.**", "kube.stage.p.c", true},
		{"kube.{prod,stage}.**", "kube.dev.p.c", false},
		{"{audit,audit.**}", "audit.x", true},
		{"{audit,kube.**}", "kube.a", true},
	}
	for _, tt := range tests {
		p, err := Compile(tt.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.tag); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.tag, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, p := range []string{"", "a..b", "a.b*", "{a,b", "a}", "{a,{b}}", ".a", "a."} {
		if _, err := Compile(p); err == nil {
			t.Errorf("Compile(%q) succeeded, want an error", p)
		}
	}
}

func TestTableLookupAndCache(t *testing.T) {
	tab, err := New([][]string{{"kube.**"}, {"audit", "audit.**"}, {"**"}})
	if err != nil {
		t.Fatal(err)
	}
	c := tab.NewCache()
	for _, tt := range []struct {
		tag  string
		want []int
	}{
		{"kube.a.b.c", []int{0, 2}},
		{"kube.a.b.c", []int{0, 2}},
		{"audit.ns", []int{1, 2}},
		{"other", []int{2}},
	} {
		got := c.Lookup(tt.tag)
		if len(got) != len(tt.want) {
			t.Fatalf("Lookup(%q) = %v, want %v", tt.tag, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Fatalf("Lookup(%q) = %v, want %v", tt.tag, got, tt.want)
			}
		}
	}
}

func BenchmarkCachedLookup(b *testing.B) {
	tab, _ := New([][]string{{"kube.**"}, {"**"}})
	c := tab.NewCache()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Lookup("kube.ns.pod.container")
	}
}
