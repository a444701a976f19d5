package route

import (
	"errors"
	"regexp"

	"github.com/skiff-logs/skiff/agent/event"
)

// RewriteRule is one rewrite_tag rule as configured: for records whose tag matches Match,
// compare the value of Key with Pattern, and when it matches set the tag to Tag.
//
//   - Match: tag patterns (default DefaultMatch, every tag).
//   - Key: a dotted key into the record: the document's own fields (tag, message, stream,
//     log.file.path, kubernetes.namespace, kubernetes.pod.name, kubernetes.labels.<key>, …;
//     see compileKey) or a path into Fields (objectRef.namespace). Its value is text for
//     strings, numbers and booleans; any other value, or none, is absent. Without Key the rule
//     applies to every record its Match selects, and Pattern, Default and Invert must be unset.
//   - Pattern: a Go regular expression (RE2 syntax), unanchored like fluentd's; empty matches
//     every value.
//   - Tag: the new tag, a template with $1 … $9 / ${N} (the pattern's groups, $0 the whole
//     match), ${tag}, ${tag_parts[N]} and ${record.KEY}; see tmpl. Substituted values are
//     made tag-safe and an empty one is written "none", so the result is always a valid tag.
//   - Default: the tag when Key is absent (${tag}, ${tag_parts[N]} and ${record.KEY} allowed);
//     empty means that the rule does not apply then.
//   - Invert: the rule applies when Pattern does not match (Tag may then use no groups).
//
// The first rule that applies wins; see Rules for why rewriting cannot loop.
type RewriteRule struct {
	Match   []string
	Key     string
	Pattern string
	Tag     string
	Default string
	Invert  bool
}

type rewriteRule struct {
	key    *fieldKey // nil: every record
	re     *regexp.Regexp
	tag    *tmpl
	def    *tmpl // nil: no default
	invert bool
}

func compileRewrite(spec RewriteRule) (*rewriteRule, []fieldError) {
	var errs []fieldError
	r := &rewriteRule{invert: spec.Invert}
	if spec.Key == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"pattern", spec.Pattern != ""}, {"default", spec.Default != ""}, {"invert", spec.Invert}} {
			if f.set {
				errs = append(errs, fieldErr(f.name, "needs a key to compare"))
			}
		}
	} else if k, err := compileKey(spec.Key); err != nil {
		errs = append(errs, fieldError{"key", err})
	} else {
		r.key = &k
	}
	re, err := regexp.Compile(spec.Pattern)
	if err != nil {
		errs = append(errs, fieldError{"pattern", err})
	}
	r.re = re
	if r.tag, err = compileTagTmpl(spec.Tag, !spec.Invert && spec.Key != ""); err != nil {
		errs = append(errs, fieldError{"tag", err})
	} else if re != nil && r.tag.maxGroup > re.NumSubexp() {
		errs = append(errs, fieldErr("tag", "uses $%d but the pattern has %d groups", r.tag.maxGroup, re.NumSubexp()))
	}
	if spec.Default != "" {
		if r.def, err = compileTagTmpl(spec.Default, false); err != nil {
			errs = append(errs, fieldError{"default", err})
		}
	}
	return r, errs
}

// compileTagTmpl parses a tag template and checks that it always renders a valid tag.
func compileTagTmpl(s string, groups bool) (*tmpl, error) {
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	t, err := parseTmpl(s, groups)
	if err != nil {
		return nil, err
	}
	// Substituted values are never empty and never start or end with '.', so the literal text
	// decides whether the result is a valid tag.
	if err := ValidTag(t.sample()); err != nil {
		return nil, err
	}
	return t, nil
}

// apply rewrites r's tag if the rule applies to it, and reports whether it did.
func (rw *rewriteRule) apply(s *State, r *event.Record) bool {
	if rw.key == nil {
		s.setTag(r, rw.tag, "", nil)
		return true
	}
	v, ok := rw.key.value(r, &s.keyNum)
	switch {
	case !ok:
		if rw.def == nil {
			return false
		}
		s.setTag(r, rw.def, "", nil)
	case rw.invert || rw.tag.maxGroup < 0:
		if rw.re.MatchString(v) == rw.invert {
			return false
		}
		s.setTag(r, rw.tag, v, nil)
	default:
		m := rw.re.FindStringSubmatchIndex(v)
		if m == nil {
			return false
		}
		s.setTag(r, rw.tag, v, m)
	}
	return true
}

// setTag renders t as r's new tag.
func (s *State) setTag(r *event.Record, t *tmpl, v string, m []int) {
	if t.static {
		r.Tag = t.lit
		return
	}
	s.buf = t.render(s.buf[:0], s, r, v, m, true)
	r.Tag = s.intern(s.buf)
}
