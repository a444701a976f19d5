package template

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

var src = &event.Source{
	Path: "/var/log/containers/web_shop_nginx-abc.log", Namespace: "Shop", PodName: "web-7d4",
	PodUID: "uid-1", Container: "nginx", ContainerID: "abc",
}

func rec() *event.Record {
	return &event.Record{
		Time:   time.Date(2024, 2, 29, 13, 4, 5, 0, time.FixedZone("x", 2*3600)), // 11:04:05 UTC
		Tag:    "kube.shop.web-7d4.nginx",
		Stream: "stdout",
		Source: src,
		Fields: map[string]any{
			"level":             "WARN",
			"user":              map[string]any{"name": "A/B", "id": float64(42), "tags": []any{"x"}},
			"objectRef":         map[string]any{"namespace": "kube-system"},
			"kubernetes.labels": map[string]string{"app.kubernetes.io/name": "Web"},
			"a.b":               "flat",
			"n":                 json.Number("7"),
			"ok":                true,
			"i":                 -3,
			"nan":               math.NaN(),
			"dot":               "..",
			"empty":             "",
			"slash":             "/etc/passwd",
			"nul":               "a\x00b",
		},
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		tmpl string
		mode Mode
		want string
	}{
		{"k8s-logs-%Y.%m.%d", Index, "k8s-logs-2024.02.29"},
		{"t-%H%M%S-%j-%%", Index, "t-110405-060-%"},
		{"{tag}", Index, "kube.shop.web-7d4.nginx"},
		{"{tag_parts[0]}-{tag_parts[1]}-{tag_parts[-1]}-{tag_parts[-4]}", Index, "kube-shop-nginx-kube"},
		{"x-{tag_parts[4]}-{tag_parts[-5]}", Index, "x-none-none"},
		{"k8s-{kubernetes.namespace}", Index, "k8s-shop"},
		{"k8s-{kubernetes.namespace}", Path, "k8s-Shop"},
		{"{kubernetes.pod.name}/{kubernetes.pod.uid}/{kubernetes.container.name}/{container.id}", Path, "web-7d4/uid-1/nginx/abc"},
		{"{stream}-{tag}", Path, "stdout-kube.shop.web-7d4.nginx"},
		{"p/{log.file.path}", Path, "p/_var_log_containers_web_shop_nginx-abc.log"},
		{"audit-{objectRef.namespace}", Index, "audit-kube-system"},
		{"{user.name}", Index, "a_b"},
		{"{user.name}", Path, "A_B"},
		{"{user.id}-{n}-{ok}-{i}", Index, "42-7-true--3"},
		{"x-{nan}", Index, "x-nan"},
		{"{kubernetes.labels.app.kubernetes.io/name}", Path, "Web"},
		{"{a.b}", Path, "flat"},
		{"x-{user.tags}-{user}-{missing}-{user.name.deeper}", Index, "x-none-none-none-none"},
		{"x/{dot}/{empty}", Path, "x/none/none"},
		{"{slash}", Path, "_etc_passwd"},
		{"{nul}", Path, "a_b"},
		{"{level}", Index, "warn"},
		{"static-name", Index, "static-name"},
		{"/var/log/skiff/{tag}/%Y/%m/%d/%H.gz", Path, "/var/log/skiff/kube.shop.web-7d4.nginx/2024/02/29/11.gz"},
	}
	for _, tt := range tests {
		tp, err := Parse(tt.tmpl, tt.mode)
		if err != nil {
			t.Errorf("Parse(%q, %v): %v", tt.tmpl, tt.mode, err)
			continue
		}
		if got := string(tp.Append([]byte("pre:"), rec())); got != "pre:"+tt.want {
			t.Errorf("%q (%v) = %q, want %q", tt.tmpl, tt.mode, got, "pre:"+tt.want)
		}
	}
}

// TestAuditRoutes renders the names of the audit issue's routes: per-namespace files and
// indices from a rewritten tag and from an audit event's fields, with hostile values kept
// inside their path segment and index names lower-case.
func TestAuditRoutes(t *testing.T) {
	audit := func(tag, ns, user string) *event.Record {
		r := &event.Record{Time: time.Date(2024, 6, 11, 9, 14, 2, 0, time.UTC), Tag: tag, Fields: map[string]any{
			"user": map[string]any{"username": user},
		}}
		if ns != "" {
			r.Fields["objectRef"] = map[string]any{"namespace": ns, "resource": "pods"}
		}
		return r
	}
	kube := &event.Record{Tag: "kube.shop.web.nginx", Source: src, Kube: &event.Kube{
		Namespace: "Shop-Enriched", PodName: "web-7d4", Labels: map[string]string{"app": "Web/Front", "app.kubernetes.io/name": "web"},
	}}
	tests := []struct {
		tmpl string
		mode Mode
		r    *event.Record
		want string
	}{
		{"/var/log/audit-{tag}.%Y%m%d%H.log.gz", Path, audit("audit.kube-system", "kube-system", "x"), "/var/log/audit-audit.kube-system.2024061109.log.gz"},
		{"/var/log/audit-{tag_parts[1]}.%Y%m%d%H.log.gz", Path, audit("audit.none", "", "x"), "/var/log/audit-none.2024061109.log.gz"},
		{"/var/log/audit-{tag_parts[1]}.log.gz", Path, audit("audit", "", "x"), "/var/log/audit-none.log.gz"},
		{"k8s-audit-{objectRef.namespace}-%Y.%m.%d", Index, audit("audit", "payments", "x"), "k8s-audit-payments-2024.06.11"},
		{"k8s-audit-{objectRef.namespace}-%Y.%m.%d", Index, audit("audit", "", "x"), "k8s-audit-none-2024.06.11"},
		{"/var/log/kube-audit-{user.username}/audit", Path, audit("audit", "", "system:serviceaccount:ns:sa"), "/var/log/kube-audit-system:serviceaccount:ns:sa/audit"},
		{"/var/log/kube-audit-{user.username}/audit", Path, audit("audit", "", "../../etc/passwd"), "/var/log/kube-audit-.._.._etc_passwd/audit"},
		{"/var/log/{user.username}/audit", Path, audit("audit", "", ".."), "/var/log/none/audit"},
		{"audit-{user.username}", Index, audit("audit", "", "Alice:Admin"), "audit-alice_admin"},
		{"k8s-{kubernetes.namespace}-{kubernetes.labels.app}", Index, kube, "k8s-shop-enriched-web_front"},
		{"{kubernetes.labels.app.kubernetes.io/name}/{kubernetes.pod.name}", Path, kube, "web/web-7d4"},
	}
	for _, tt := range tests {
		tp, err := Parse(tt.tmpl, tt.mode)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.tmpl, err)
		}
		if got := string(tp.Append(nil, tt.r)); got != tt.want {
			t.Errorf("%q (%v) = %q, want %q", tt.tmpl, tt.mode, got, tt.want)
		}
	}
}

func TestSanitiseIndex(t *testing.T) {
	tests := []struct {
		tag, want string
	}{
		{"Hello World", "hello_world"},
		{`a\b/c*d?e"f<g>h|i,j#k:l m`, "a_b_c_d_e_f_g_h_i_j_k_l_m"},
		{"-_+leading", "leading"},
		{"---", "none"},
		{".", "none"},
		{"..", "none"},
		{"ÉCOLE", "école"},
		{"bad\xffutf8", "bad_utf8"},
		{"tab\tnl\n", "tab_nl_"},
		{strings.Repeat("x", 300), strings.Repeat("x", MaxIndexBytes)},
		{strings.Repeat("é", 200), strings.Repeat("é", MaxIndexBytes/2)},
	}
	tp, err := Parse("{tag}", Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r := &event.Record{Tag: tt.tag}
		if got := string(tp.Append(nil, r)); got != tt.want {
			t.Errorf("tag %q rendered %q, want %q", tt.tag, got, tt.want)
		}
	}
	// The leading-character rule applies to the name, not to dst before it.
	if got := string(tp.Append([]byte("_x_"), &event.Record{Tag: "_a"})); got != "_x_a" {
		t.Errorf("got %q, want %q", got, "_x_a")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		tmpl string
		mode Mode
		want string
	}{
		{"", Index, "empty"},
		{"abc{tag", Index, `unclosed "{" at 3`},
		{"a{b{c}}", Index, `unclosed "{" at 1`},
		{"ab}", Index, `unexpected "}" at 2`},
		{"x-%", Index, `incomplete directive "%" at 2`},
		{"x-%q", Index, `unknown directive "%q" at 2`},
		{"x{}", Path, `empty placeholder "{}" at 1`},
		{"x{tag_parts[a]}", Path, `bad tag_parts index "a" at 1`},
		{"x{tag_parts}", Path, `want {tag_parts[N]} at 1`},
		{"x{a..b}", Path, "empty name segment"},
		{"Logs-%Y", Index, `lower-case, found 'L' at 0`},
		{"logs/%Y", Index, `must not contain '/' at 4`},
		{"logs %Y", Index, `must not contain ' ' at 4`},
		{"logs:%Y", Index, `must not contain ':' at 4`},
		{"_logs", Index, "must not start with '_'"},
		{"..", Index, `must not be ".."`},
		{"a\x00{tag}", Path, "NUL in path at 1"},
		{"x\xff{tag}", Path, "invalid UTF-8 at 1"},
		{"../{tag}", Path, `".." segment`},
		{"a/../{tag}", Path, `".." segment`},
		{"{tag}/..", Path, `".." segment`},
		{"logs/{tag}/", Path, `end with "/"`},
		{"x", Mode(7), "unknown mode"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.tmpl, tt.mode)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q, %v) error = %v, want it to contain %q", tt.tmpl, tt.mode, err, tt.want)
		}
	}
	// Segments that only touch a placeholder are fine: values never render as "." or "..".
	for _, ok := range []string{"..{tag}", "{tag}..", "a/..{tag}/b", "./x/{tag}", "x.gz"} {
		if _, err := Parse(ok, Path); err != nil {
			t.Errorf("Parse(%q, Path): %v", ok, err)
		}
	}
}

func TestHelpers(t *testing.T) {
	tests := []struct {
		tmpl   string
		static bool
		prefix string
	}{
		{"k8s-logs-%Y.%m.%d", false, "k8s-logs-"},
		{"k8s-audit-{objectRef.namespace}-%Y", false, "k8s-audit-"},
		{"{tag}-x", false, ""},
		{"100%%-x", true, "100%-x"},
		{"k8s-logs", true, "k8s-logs"},
	}
	for _, tt := range tests {
		tp, err := Parse(tt.tmpl, Index)
		if err != nil {
			t.Fatal(err)
		}
		if tp.Static() != tt.static || tp.Prefix() != tt.prefix || tp.String() != tt.tmpl || tp.Mode() != Index {
			t.Errorf("%q: Static %v Prefix %q String %q, want %v %q", tt.tmpl, tp.Static(), tp.Prefix(), tp.String(), tt.static, tt.prefix)
		}
	}
}

func TestTimeEdges(t *testing.T) {
	tp, err := Parse("%Y-%m-%d %H:%M:%S %j", Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range []time.Time{
		{},
		time.Date(2023, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC),
		time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1e9, 0),
	} {
		want := tm.UTC().Format("2006-01-02 15:04:05 002")
		if got := string(tp.Append(nil, &event.Record{Time: tm})); got != want {
			t.Errorf("%v: got %q, want %q", tm, got, want)
		}
	}
}

func TestAppendNoAllocs(t *testing.T) {
	for _, s := range []string{"k8s-logs-%Y.%m.%d", "k8s-{kubernetes.namespace}-{tag_parts[-1]}-{user.name}-{user.id}-%Y.%m.%d"} {
		tp, err := Parse(s, Index)
		if err != nil {
			t.Fatal(err)
		}
		r := rec()
		buf := make([]byte, 0, 512)
		if allocs := testing.AllocsPerRun(100, func() { buf = tp.Append(buf[:0], r) }); allocs != 0 {
			t.Errorf("%q: %v allocs per Append, want 0", s, allocs)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"k8s-logs-%Y.%m.%d", "{tag}/{tag_parts[-1]}/%H.gz", "a{b.c}d", "..{x}", "{x}.{x}", "%%{", "}"} {
		f.Add(s, "kube.ns.pod.c", "value")
	}
	f.Fuzz(func(t *testing.T, s, tagv, val string) {
		r := &event.Record{
			Time: time.Unix(int64(len(val))*1e8, 0), Tag: tagv, Stream: val,
			Source: &event.Source{Namespace: val, PodName: tagv},
			Fields: map[string]any{val: tagv, "x": map[string]any{"y": val}, tagv: val},
		}
		if tp, err := Parse(s, Path); err == nil {
			out := string(tp.Append(nil, r))
			if strings.IndexByte(out, 0) >= 0 {
				t.Fatalf("Path %q rendered %q with NUL", s, out)
			}
			for seg := range strings.SplitSeq(out, "/") {
				if seg == ".." {
					t.Fatalf("Path %q rendered %q with a .. segment", s, out)
				}
			}
		}
		if tp, err := Parse(s, Index); err == nil {
			out := string(tp.Append(nil, r))
			if strings.ToLower(out) != out {
				t.Fatalf("Index %q rendered %q, not lower-case", s, out)
			}
			if out == "" || out == "." || out == ".." || strings.ContainsAny(out, "\\/*?\"<>|,#: ") ||
				strings.IndexAny(out[:1], "-_+") == 0 || len(out) > MaxIndexBytes {
				t.Fatalf("Index %q rendered invalid index name %q", s, out)
			}
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	tp, err := Parse("k8s-{kubernetes.namespace}-%Y.%m.%d", Index)
	if err != nil {
		b.Fatal(err)
	}
	r := rec()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = tp.Append(buf[:0], r)
	}
}
