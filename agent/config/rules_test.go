package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-logs/skiff/agent/route"
)

// auditBase is the documented fluentd audit job as skiff config.
const auditBase = `
inputs:
  - name: audit
    type: audit
    paths: ["/var/log/kube-audit"]
rewrite_tag:
  - match: ["audit"]
    key: objectRef.namespace
    pattern: "^(.+)$"
    tag: "audit.$1"
    default: "audit.none"
records:
  - match: ["audit.**"]
    set: {cluster: prod, replicas: 3, debug: true, origin: "${tag}/${tag_parts[1]}", empty: }
    remove: [annotations]
outputs:
  - name: f
    type: file
    match: ["audit.**"]
    path: "/var/log/audit-{tag_parts[1]}.%Y%m%d%H.log.gz"
`

func TestRulesAndAuditInput(t *testing.T) {
	t.Setenv("tag", "must-not-be-used")
	c, err := Parse([]byte(auditBase))
	if err != nil {
		t.Fatal(err)
	}
	in := c.Inputs[0]
	if in.Tag != DefaultAuditTag || in.MaxEventBytes != DefaultMaxEventBytes || in.MaxLineBytes != DefaultAuditMaxLineBytes {
		t.Errorf("audit input defaults: %+v", in)
	}
	rw, rc := c.RouteRules()
	wantRW := []route.RewriteRule{{Match: []string{"audit"}, Key: "objectRef.namespace", Pattern: "^(.+)$", Tag: "audit.$1", Default: "audit.none"}}
	wantRC := []route.RecordRule{{Match: []string{"audit.**"}, Remove: []string{"annotations"}, Set: map[string]string{
		"cluster": "prod", "replicas": "3", "debug": "true", "origin": "${tag}/${tag_parts[1]}", "empty": "",
	}}}
	if !reflect.DeepEqual(rw, wantRW) || !reflect.DeepEqual(rc, wantRC) {
		t.Errorf("rules:\n%+v\n%+v", rw, rc)
	}
	if _, err := route.NewRules(rw, rc); err != nil {
		t.Error(err)
	}
	// The containers input keeps its defaults.
	c, err = Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if in := c.Inputs[0]; in.Tag != "" || in.MaxEventBytes != 0 || in.MaxLineBytes != DefaultMaxLineBytes {
		t.Errorf("containers input: %+v", in)
	}
}

func TestRulesErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"bad pattern", strings.Replace(auditBase, `"^(.+)$"`, `"^(.+$"`, 1), []string{"rewrite_tag[0].pattern: error parsing regexp"}},
		{"group beyond the pattern", strings.Replace(auditBase, `"audit.$1"`, `"audit.$2"`, 1), []string{"rewrite_tag[0].tag: uses $2 but the pattern has 1 groups"}},
		{"invalid tag", strings.Replace(auditBase, `"audit.none"`, `"audit..none"`, 1), []string{"rewrite_tag[0].default: tag \"audit..none\" has an empty part"}},
		{"bad match", strings.Replace(auditBase, `match: ["audit.**"]
    set`, `match: ["audit.**", "a..b"]
    set`, 1), []string{"records[0].match[1]: empty part"}},
		{"set a document field", strings.Replace(auditBase, "cluster: prod", "message: x, kubernetes.cluster: prod", 1),
			[]string{`records[0].set.kubernetes.cluster: "kubernetes" is a field skiff writes itself`, `records[0].set.message: "message" is a field`}},
		{"set a list", strings.Replace(auditBase, "cluster: prod", "cluster: [a]", 1), []string{"records[0].set: want a string, number or boolean"}},
		{"unknown rule key", strings.Replace(auditBase, "    key: objectRef", "    field: objectRef", 1), []string{"rewrite_tag[0].field: unknown key"}},
		{"audit tag", strings.Replace(auditBase, "type: audit\n", "type: audit\n    tag: \"a b\"\n", 1), []string{`inputs[0].tag: tag "a b" must not contain ' '`}},
		{"audit sizes", strings.Replace(auditBase, "type: audit\n", "type: audit\n    max_event_bytes: 2MiB\n    max_line_bytes: 1MiB\n", 1), []string{"inputs[0].max_line_bytes: must be at least max_event_bytes"}},
		{"audit settings on containers", strings.Replace(base, "    paths:", "    tag: x\n    max_event_bytes: 1KiB\n    paths:", 1),
			[]string{"inputs[0].tag: only applies to audit and audit_webhook inputs", "inputs[0].max_event_bytes: only applies"}},
		{"unknown input type", strings.Replace(auditBase, "type: audit\n", "type: audits\n", 1), []string{`inputs[0].type: unknown input type "audits" (known: containers, audit, audit_webhook)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
