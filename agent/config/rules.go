package config

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-logs/skiff/agent/route"
)

// RewriteTagRule is one rule of the top-level rewrite_tag list; see route.RewriteRule for the
// meaning of each setting. The rules run once per record, in order, and the first that applies
// sets the record's new tag; the new tag is not run through the rules again, so rules cannot
// loop.
type RewriteTagRule struct {
	Match   []string `yaml:"match"`
	Key     string   `yaml:"key"`
	Pattern string   `yaml:"pattern"`
	Tag     string   `yaml:"tag"`
	Default string   `yaml:"default"`
	Invert  bool     `yaml:"invert"`
}

// RecordRule is one rule of the top-level records list, applied after rewrite_tag to the
// records whose new tag matches; see route.RecordRule.
type RecordRule struct {
	Match  []string          `yaml:"match"`
	Set    map[string]Scalar `yaml:"set"`
	Remove []string          `yaml:"remove"`
}

// Scalar is a YAML scalar taken as its text, so that set: {replicas: 3, debug: true} sets the
// strings "3" and "true".
type Scalar string

// UnmarshalYAML accepts any scalar (null is the empty string).
func (s *Scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a string, number or boolean")
	}
	if n.Tag == "!!null" {
		*s = ""
		return nil
	}
	*s = Scalar(n.Value)
	return nil
}

// RouteRules returns the rewrite_tag and records rules in the form route.NewRules takes.
func (c *Config) RouteRules() ([]route.RewriteRule, []route.RecordRule) {
	var rw []route.RewriteRule
	for _, r := range c.RewriteTag {
		rw = append(rw, route.RewriteRule{Match: r.Match, Key: r.Key, Pattern: r.Pattern, Tag: r.Tag, Default: r.Default, Invert: r.Invert})
	}
	var rc []route.RecordRule
	for _, r := range c.Records {
		set := make(map[string]string, len(r.Set))
		for k, v := range r.Set {
			set[k] = string(v)
		}
		rc = append(rc, route.RecordRule{Match: r.Match, Set: set, Remove: r.Remove})
	}
	return rw, rc
}

// validateRules compiles the rules and reports each problem at its key
// (rewrite_tag[1].pattern: …).
func (c *Config) validateRules() []error {
	_, err := route.NewRules(c.RouteRules())
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range unjoin(err) {
		var re *route.RuleError
		if errors.As(e, &re) {
			errs = append(errs, errAt(re.Key(), "%v", re.Err))
		} else {
			errs = append(errs, e)
		}
	}
	return errs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// InputAudit is the type of the input that tails kube-apiserver audit logs (--audit-log-path):
// one audit.k8s.io/v1 Event JSON object a line.
const InputAudit = "audit"

// Defaults of audit inputs.
const (
	// DefaultAuditTag is the tag of audit records, whatever the file's path.
	DefaultAuditTag = "audit"
	// DefaultAuditMaxLineBytes is the line cap of audit inputs: events are read whole up to
	// this size, and only then cut to max_event_bytes, member by member.
	DefaultAuditMaxLineBytes = 16 << 20
	// DefaultMaxEventBytes caps an audit event; larger ones lose their largest members
	// (responseObject first), like the apiserver's own truncation.
	DefaultMaxEventBytes = 1 << 20
)

func (in *Input) applyAuditDefaults() {
	if in.Type != InputAudit {
		return
	}
	fillDefault(&in.Tag, DefaultAuditTag)
	fillDefault(&in.MaxLineBytes, DefaultAuditMaxLineBytes)
	fillDefault(&in.MaxEventBytes, DefaultMaxEventBytes)
}

// validateAudit checks the settings that depend on an input being of type audit; key is
// "inputs[i]". Inputs of type audit_webhook are checked by validateWebhook.
func (in *Input) validateAudit(key string) []error {
	var errs []error
	if in.Type != InputAudit {
		for _, f := range []struct {
			name string
			set  bool
		}{{"tag", in.Tag != ""}, {"max_event_bytes", in.MaxEventBytes != 0}} {
			if f.set {
				errs = append(errs, errAt(key+"."+f.name, "only applies to %s and %s inputs, this one is %s (its tags come from the file paths)", InputAudit, InputAuditWebhook, in.Type))
			}
		}
		return errs
	}
	if err := route.ValidTag(in.Tag); err != nil {
		errs = append(errs, errAt(key+".tag", "%v", err))
	}
	if in.MaxEventBytes <= 0 {
		errs = append(errs, errAt(key+".max_event_bytes", "must be positive"))
	} else if in.MaxLineBytes < in.MaxEventBytes {
		errs = append(errs, errAt(key+".max_line_bytes", "must be at least max_event_bytes (%d): a longer line is cut before it can be parsed", in.MaxEventBytes))
	}
	return errs
}
