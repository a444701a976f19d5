package route

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-logs/skiff/agent/event"
)

func auditRecord(ns string) *event.Record {
	r := &event.Record{Tag: "audit", Message: []byte("get pods"), Fields: map[string]any{
		"auditID": "a1", "verb": "get",
		"user":           map[string]any{"username": "alice", "groups": []string{"dev"}},
		"responseStatus": map[string]any{"code": 403},
		"annotations":    map[string]string{"authorization_k8s_io/decision": "forbid"},
	}}
	if ns != "" {
		r.Fields["objectRef"] = map[string]any{"resource": "pods", "namespace": ns}
	}
	return r
}

// auditRule is the documented fluentd job's rewrite_tag_filter as a rule.
var auditRule = RewriteRule{Match: []string{"audit"}, Key: "objectRef.namespace", Pattern: "^(.+)$", Tag: "audit.$1", Default: "audit.none"}

func TestRewrite(t *testing.T) {
	kubeSrc := &event.Source{Namespace: "shop", PodName: "web-1", Container: "nginx", Path: "/var/log/containers/x.log"}
	tests := []struct {
		name  string
		rules []RewriteRule
		rec   *event.Record
		want  string
	}{
		{"namespace from fields", []RewriteRule{auditRule}, auditRecord("kube-system"), "audit.kube-system"},
		{"default when absent", []RewriteRule{auditRule}, auditRecord(""), "audit.none"},
		{"tag not matched", []RewriteRule{auditRule}, &event.Record{Tag: "kube.a.b.c"}, "kube.a.b.c"},
		{"no default, no match: unchanged", []RewriteRule{{Key: "objectRef.namespace", Pattern: "x", Tag: "y"}}, auditRecord(""), "audit"},
		{"first matching rule wins", []RewriteRule{
			{Key: "verb", Pattern: "^list$", Tag: "audit.lists"},
			{Key: "verb", Pattern: "^(get|watch)$", Tag: "audit.reads.$1"},
			{Key: "verb", Pattern: ".", Tag: "audit.other"},
		}, auditRecord("a"), "audit.reads.get"},
		{"no re-emission: the new tag is not rewritten again", []RewriteRule{
			{Match: []string{"audit"}, Key: "verb", Tag: "audit.x"},
			{Match: []string{"audit.x"}, Key: "verb", Tag: "loop"},
		}, auditRecord("a"), "audit.x"},
		{"invert", []RewriteRule{{Key: "user.username", Pattern: "^system:", Invert: true, Tag: "humans.${tag}"}}, auditRecord("a"), "humans.audit"},
		{"invert, pattern matches", []RewriteRule{{Key: "user.username", Pattern: "^ali", Invert: true, Tag: "humans"}}, auditRecord("a"), "audit"},
		{"number key", []RewriteRule{{Key: "responseStatus.code", Pattern: "^4", Tag: "audit.denied.${record.responseStatus.code}"}}, auditRecord("a"), "audit.denied.403"},
		{"map[string]string key", []RewriteRule{{Key: "annotations.authorization_k8s_io/decision", Pattern: "forbid", Tag: "audit.forbidden"}}, auditRecord("a"), "audit.forbidden"},
		{"object value is absent", []RewriteRule{{Key: "user", Pattern: "", Tag: "x", Default: "absent"}}, auditRecord("a"), "absent"},
		{"no key: every matched record", []RewriteRule{{Match: []string{"kube.**"}, Tag: "k.${tag_parts[1]}.${tag_parts[-1]}"}}, &event.Record{Tag: "kube.ns.pod.c"}, "k.ns.c"},
		{"whole match and ${N}", []RewriteRule{{Key: "verb", Pattern: "e(t)", Tag: "$0.${1}"}}, auditRecord("a"), "et.t"},
		{"message key", []RewriteRule{{Key: "message", Pattern: `^(\w+) (\w+)`, Tag: "m.$2.$1"}}, auditRecord("a"), "m.pods.get"},
		{"fixed fields from the source", []RewriteRule{{Key: "kubernetes.namespace", Pattern: "^shop$", Tag: "shop.${record.kubernetes.pod.name}.${record.kubernetes.container.name}"}},
			&event.Record{Tag: "kube.shop.web-1.nginx", Source: kubeSrc}, "shop.web-1.nginx"},
		{"kube metadata before the source", []RewriteRule{{Key: "kubernetes.labels.app", Pattern: "(.+)", Tag: "app.$1.${record.kubernetes.namespace}"}},
			&event.Record{Tag: "kube.x", Source: kubeSrc, Kube: &event.Kube{Namespace: "other", Labels: map[string]string{"app": "web"}}}, "app.web.other"},
		{"values made tag-safe", []RewriteRule{{Key: "v", Pattern: "(.*)", Tag: "t.$1"}},
			&event.Record{Tag: "x", Fields: map[string]any{"v": "..a b*{c},d..e."}}, "t.a_b__c__d.e"},
		{"empty group is none", []RewriteRule{{Key: "v", Pattern: "^(x?)", Tag: "t.$1"}}, &event.Record{Tag: "x", Fields: map[string]any{"v": "y"}}, "t.none"},
		{"group that did not take part is none", []RewriteRule{{Key: "v", Pattern: "^(a)|(b)$", Tag: "t.$2.$1"}}, &event.Record{Tag: "x", Fields: map[string]any{"v": "a"}}, "t.none.a"},
		{"long value capped", []RewriteRule{{Key: "message", Pattern: "(.*)", Tag: "m.$1"}}, &event.Record{Tag: "x", Message: []byte(strings.Repeat("é", 300))}, "m." + strings.Repeat("é", 127)},
		{"dotted Fields key", []RewriteRule{{Key: "a.b", Pattern: "(.+)", Tag: "t.$1"}}, &event.Record{Tag: "x", Fields: map[string]any{"a.b": true}}, "t.true"},
		{"$$ is a dollar", []RewriteRule{{Tag: "cost$$"}}, &event.Record{Tag: "x"}, "cost$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := NewRules(tt.rules, nil)
			if err != nil {
				t.Fatal(err)
			}
			st := rs.NewState()
			for range 2 { // the second time from the caches
				r := *tt.rec
				st.Apply(&r)
				if r.Tag != tt.want {
					t.Fatalf("tag %q, want %q", r.Tag, tt.want)
				}
				if err := ValidTag(r.Tag); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestRecords(t *testing.T) {
	tests := []struct {
		name   string
		rules  []RecordRule
		rec    *event.Record
		want   map[string]any
		rewrit []RewriteRule
	}{
		{
			name:  "set and remove in nested fields",
			rules: []RecordRule{{Set: map[string]string{"cluster": "prod", "user.team": "t-${record.user.username}", "ns": "${record.objectRef.namespace}"}, Remove: []string{"user.groups", "auditID", "missing.key"}}},
			rec:   auditRecord("shop"),
			want: map[string]any{
				"verb": "get", "cluster": "prod", "ns": "shop",
				"user":           map[string]any{"username": "alice", "team": "t-alice"},
				"responseStatus": map[string]any{"code": 403},
				"annotations":    map[string]string{"authorization_k8s_io/decision": "forbid"},
				"objectRef":      map[string]any{"resource": "pods", "namespace": "shop"},
			},
		},
		{
			name:  "nil fields, values from before the rule's sets",
			rules: []RecordRule{{Set: map[string]string{"a": "1", "b": "<${record.a}>", "t": "${tag}/${tag_parts[0]}"}}},
			rec:   &event.Record{Tag: "kube.ns"},
			want:  map[string]any{"a": "1", "b": "<>", "t": "kube.ns/kube"},
		},
		{
			name:   "records rules see the rewritten tag, in order",
			rewrit: []RewriteRule{auditRule},
			rules: []RecordRule{
				{Match: []string{"audit"}, Set: map[string]string{"never": "x"}},
				{Match: []string{"audit.**"}, Set: map[string]string{"routed": "${tag}"}},
				{Match: []string{"audit.shop"}, Set: map[string]string{"x": "${record.routed}!"}, Remove: []string{"routed"}},
			},
			rec:  &event.Record{Tag: "audit", Fields: map[string]any{"objectRef": map[string]any{"namespace": "shop"}}},
			want: map[string]any{"objectRef": map[string]any{"namespace": "shop"}, "x": "audit.shop!"},
		},
		{
			name:  "existing dotted key and map[string]string reused, non-map replaced",
			rules: []RecordRule{{Set: map[string]string{"a.b": "new", "labels.app": "web", "s.x": "y"}}},
			rec:   &event.Record{Tag: "t", Fields: map[string]any{"a.b": "old", "labels": map[string]string{"tier": "1"}, "s": "scalar"}},
			want:  map[string]any{"a.b": "new", "labels": map[string]string{"tier": "1", "app": "web"}, "s": map[string]any{"x": "y"}},
		},
		{
			name:  "remove a dotted key and from a map[string]string",
			rules: []RecordRule{{Remove: []string{"a.b", "labels.tier"}}},
			rec:   &event.Record{Tag: "t", Fields: map[string]any{"a.b": 1, "labels": map[string]string{"tier": "1", "app": "x"}}},
			want:  map[string]any{"labels": map[string]string{"app": "x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := NewRules(tt.rewrit, tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			r := tt.rec
			rs.NewState().Apply(r)
			if !reflect.DeepEqual(r.Fields, tt.want) {
				t.Fatalf("fields\n got %#v\nwant %#v", r.Fields, tt.want)
			}
		})
	}
}

func TestRuleErrors(t *testing.T) {
	tests := []struct {
		rewrite []RewriteRule
		records []RecordRule
		want    []string // keys named by the errors
	}{
		{[]RewriteRule{{Key: "a", Pattern: "(", Tag: "x"}}, nil, []string{"rewrite_tag[0].pattern"}},
		{[]RewriteRule{{Key: "a", Tag: ""}}, nil, []string{"rewrite_tag[0].tag"}},
		{[]RewriteRule{{Tag: "x"}, {Key: "a", Pattern: "(a)", Tag: "x.$2"}}, nil, []string{"rewrite_tag[1].tag"}},
		{[]RewriteRule{{Key: "a", Tag: "x.$1", Invert: true}}, nil, []string{"rewrite_tag[0].tag"}},
		{[]RewriteRule{{Key: "a", Tag: ".x"}, {Key: "a", Tag: "x..${tag}"}, {Key: "a", Tag: "a b"}, {Key: "a", Tag: "a*"}}, nil,
			[]string{"rewrite_tag[0].tag", "rewrite_tag[1].tag", "rewrite_tag[2].tag", "rewrite_tag[3].tag"}},
		{[]RewriteRule{{Key: "a", Tag: "x", Default: "$1"}, {Key: "a", Tag: "x", Default: "${nope}"}}, nil, []string{"rewrite_tag[0].default", "rewrite_tag[1].default"}},
		{[]RewriteRule{{Tag: "x", Pattern: "a", Default: "b", Invert: true}}, nil, []string{"rewrite_tag[0].pattern", "rewrite_tag[0].default", "rewrite_tag[0].invert"}},
		{[]RewriteRule{{Match: []string{"ok", "a..b"}, Key: "a..b", Tag: "x$"}}, nil, []string{"rewrite_tag[0].match[1]", "rewrite_tag[0].key", "rewrite_tag[0].tag"}},
		{nil, []RecordRule{{Set: map[string]string{"message": "x", "kubernetes.cluster": "x", "ok": "${record.}", "a": "1", "a.b": "2"}}},
			[]string{"records[0].set.a.b", "records[0].set.kubernetes.cluster", "records[0].set.message", "records[0].set.ok"}},
		{nil, []RecordRule{{Remove: []string{"ok", "tag", ""}}, {Set: map[string]string{"x": "$1"}}}, []string{"records[0].remove[1]", "records[0].remove[2]", "records[1].set.x"}},
	}
	for _, tt := range tests {
		_, err := NewRules(tt.rewrite, tt.records)
		var got []string
		for _, e := range unjoin(err) {
			var re *RuleError
			if !errors.As(e, &re) {
				t.Fatalf("error %v is not a *RuleError", e)
			}
			if !strings.HasPrefix(re.Error(), re.Key()+": ") {
				t.Errorf("error %q does not start with its key", re.Error())
			}
			got = append(got, re.Key())
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v %+v: errors at %q (%v), want %q", tt.rewrite, tt.records, got, err, tt.want)
		}
	}
	if rs, err := NewRules(nil, nil); rs != nil || err != nil {
		t.Errorf("no rules: %v, %v; want nil, nil", rs, err)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

func TestValidTag(t *testing.T) {
	for _, tag := range []string{"a", "kube.ns.pod-1.c", "audit.none", "a_b.c:d/e", "été"} {
		if err := ValidTag(tag); err != nil {
			t.Errorf("ValidTag(%q): %v", tag, err)
		}
	}
	for _, tag := range []string{"", ".", "a.", ".a", "a..b", "a b", "a*", "{a}", "a,b", "a\tb", "a\xffb", "a\u00a0b", "a\x00"} {
		if ValidTag(tag) == nil {
			t.Errorf("ValidTag(%q) = nil, want an error", tag)
		}
	}
}

// TestCacheBounded: a State's caches stay bounded whatever the tags.
func TestCacheBounded(t *testing.T) {
	rs, err := NewRules([]RewriteRule{{Key: "message", Pattern: "(.*)", Tag: "m.$1"}}, []RecordRule{{Match: []string{"m.**"}, Set: map[string]string{"x": "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	st := rs.NewState()
	for i := range 3 * maxCachedTags {
		msg := []byte(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26))
		r := &event.Record{Tag: string(msg), Message: msg}
		st.Apply(r)
		if r.Fields["x"] != "y" {
			t.Fatalf("record %d: %v", i, r.Fields)
		}
	}
	if len(st.tags) > maxCachedTags || len(st.rewrite.m) > maxCachedTags || len(st.records.m) > maxCachedTags {
		t.Fatalf("caches hold %d, %d, %d tags", len(st.tags), len(st.rewrite.m), len(st.records.m))
	}
}

func FuzzRules(f *testing.F) {
	f.Add("audit", "objectRef.namespace", "^(.+)$", "audit.$1", "audit.none", false, "audit", `{"objectRef":{"namespace":"kube-system"}}`, "msg", "cluster", "${tag}-${record.objectRef.namespace}")
	f.Add("**", "message", `(\w+)\.(\w+)`, "${tag_parts[-1]}.$2.${record.a.b}", "", true, "kube.ns.pod.c", `{"a.b":1.5,"a":{"b":[1]}}`, "x.y z", "a.b.c", "${record.message}")
	f.Add("{a,b}.**", "", "", "x.${tag}", "", false, "..", `null`, "", "", "")
	f.Fuzz(func(t *testing.T, match, key, pattern, tag, def string, invert bool, recTag, fields, msg, setKey, setVal string) {
		var remove []string
		for _, k := range []string{setKey, key} {
			if k != "" {
				remove = append(remove, k)
			}
		}
		rs, err := NewRules(
			[]RewriteRule{{Match: []string{match}, Key: key, Pattern: pattern, Tag: tag, Default: def, Invert: invert}},
			[]RecordRule{{Match: []string{match}, Set: map[string]string{setKey: setVal}, Remove: remove}},
		)
		if err != nil {
			return
		}
		var fm map[string]any
		_ = json.Unmarshal([]byte(fields), &fm)
		r := &event.Record{Tag: recTag, Message: []byte(msg), Fields: fm}
		st := rs.NewState()
		for range 2 {
			rr := *r
			if fm != nil {
				rr.Fields = map[string]any{}
				_ = json.Unmarshal([]byte(fields), &rr.Fields)
			}
			st.Apply(&rr)
			if rr.Tag != recTag {
				if err := ValidTag(rr.Tag); err != nil {
					t.Fatalf("rewritten to an invalid tag: %v", err)
				}
			}
			if _, err := json.Marshal(rr.Fields); err != nil {
				t.Fatalf("fields: %v", err)
			}
		}
	})
}

func BenchmarkRules(b *testing.B) {
	rs, err := NewRules(
		[]RewriteRule{auditRule},
		[]RecordRule{{Match: []string{"audit.**"}, Set: map[string]string{"cluster": "prod"}}},
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("no-rule-matches", func(b *testing.B) {
		st := rs.NewState()
		r := &event.Record{Tag: "kube.shop.web-7d4.nginx"}
		b.ReportAllocs()
		for b.Loop() {
			st.Apply(r)
		}
	})
	b.Run("audit-rewrite-and-set", func(b *testing.B) {
		st := rs.NewState()
		namespaces := []string{"shop", "kube-system", "payments", ""}
		recs := make([]*event.Record, len(namespaces))
		for i, ns := range namespaces {
			recs[i] = auditRecord(ns)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := recs[i%len(recs)]
			r.Tag = "audit"
			st.Apply(r)
			i++
		}
	})
	b.Run("rewrite-only", func(b *testing.B) {
		rs, _ := NewRules([]RewriteRule{auditRule}, nil)
		st := rs.NewState()
		r := auditRecord("shop")
		b.ReportAllocs()
		for b.Loop() {
			r.Tag = "audit"
			st.Apply(r)
		}
	})
}
