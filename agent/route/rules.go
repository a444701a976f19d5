package route

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
)

// Rules are the compiled rewrite_tag and records rules. They change records in one pass, before
// routing:
//
//  1. rewrite_tag: the rules whose match patterns match the record's tag are tried in order, and
//     the first that applies sets the new tag. The new tag is not fed back into the rules:
//     rewriting happens once per record, in a single pass, so a rule can never loop (fluentd's
//     rewrite_tag_filter re-emits the event into the whole chain, which is why a rule there can
//     loop).
//  2. records: every rule whose match patterns match the tag, after rewriting, applies in order:
//     its set, then its remove.
//
// Rules is immutable and safe for concurrent use; each goroutine applies them through its own
// State.
type Rules struct {
	rewrite      []*rewriteRule
	records      []*recordRule
	rewriteMatch [][]*Pattern
	recordMatch  [][]*Pattern
}

// RuleError is a problem with one setting of one rule. Its Key names the setting as the
// configuration file does: "rewrite_tag[1].pattern", "records[0].set.cluster".
type RuleError struct {
	// Section is "rewrite_tag" or "records".
	Section string
	// Index is the rule's position in its section.
	Index int
	// Field is the rule's setting: "pattern", "match[0]", "set.<key>", "remove[2]", ….
	Field string
	Err   error
}

// Key returns the full key of the setting, e.g. "rewrite_tag[1].pattern".
func (e *RuleError) Key() string { return fmt.Sprintf("%s[%d].%s", e.Section, e.Index, e.Field) }

func (e *RuleError) Error() string { return e.Key() + ": " + e.Err.Error() }

func (e *RuleError) Unwrap() error { return e.Err }

// DefaultMatch is the match of a rule that gives none: every tag.
var DefaultMatch = []string{"**"}

// NewRules compiles the rules. It returns every problem found, joined, each a *RuleError. With
// no rules at all it returns nil and no error: callers skip rule processing entirely.
func NewRules(rewrite []RewriteRule, records []RecordRule) (*Rules, error) {
	if len(rewrite) == 0 && len(records) == 0 {
		return nil, nil
	}
	rs := &Rules{}
	var errs []error
	for i, spec := range rewrite {
		ps, perrs := compileMatch(spec.Match)
		errs = append(errs, wrapRuleErrors("rewrite_tag", i, perrs)...)
		r, rerrs := compileRewrite(spec)
		errs = append(errs, wrapRuleErrors("rewrite_tag", i, rerrs)...)
		rs.rewrite = append(rs.rewrite, r)
		rs.rewriteMatch = append(rs.rewriteMatch, ps)
	}
	for i, spec := range records {
		ps, perrs := compileMatch(spec.Match)
		errs = append(errs, wrapRuleErrors("records", i, perrs)...)
		r, rerrs := compileRecord(spec)
		errs = append(errs, wrapRuleErrors("records", i, rerrs)...)
		rs.records = append(rs.records, r)
		rs.recordMatch = append(rs.recordMatch, ps)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// fieldError is a rule setting's problem before the rule's section and index are known.
type fieldError struct {
	field string
	err   error
}

func fieldErr(field, format string, args ...any) fieldError {
	return fieldError{field, fmt.Errorf(format, args...)}
}

func wrapRuleErrors(section string, i int, fes []fieldError) []error {
	var errs []error
	for _, fe := range fes {
		errs = append(errs, &RuleError{Section: section, Index: i, Field: fe.field, Err: fe.err})
	}
	return errs
}

func compileMatch(match []string) ([]*Pattern, []fieldError) {
	if len(match) == 0 {
		match = DefaultMatch
	}
	var ps []*Pattern
	var errs []fieldError
	for j, m := range match {
		p, err := Compile(m)
		if err != nil {
			errs = append(errs, fieldError{fmt.Sprintf("match[%d]", j), err})
			continue
		}
		ps = append(ps, p)
	}
	return ps, errs
}

// maxCachedTags bounds the per-State caches of rules by tag and of rewritten tags; a full cache
// is emptied and refilled, which costs only speed.
const maxCachedTags = 4096

// State applies Rules for one goroutine: it caches which rules apply to a tag, so that a record
// no rule matches costs a comparison with the previous record's tag, and keeps the rewritten
// tags so that rewriting allocates only for a tag not seen recently. Not safe for concurrent use.
type State struct {
	rules   *Rules
	rewrite tagCache
	records tagCache
	tags    map[string]string // rewritten tags, interned
	buf     []byte            // rendering scratch
	vals    []string          // a records rule's rendered values
	keyNum  []byte            // a rewrite key's number formatted as text
	tmplNum []byte            // a template placeholder's number formatted as text
}

// NewState returns a State over r; r must not be nil.
func (r *Rules) NewState() *State {
	return &State{
		rules:   r,
		rewrite: tagCache{rules: r.rewriteMatch},
		records: tagCache{rules: r.recordMatch},
		tags:    map[string]string{},
	}
}

// Apply rewrites rec's tag by the first rewrite_tag rule that applies, then applies every
// records rule that matches the (new) tag. Record rules change rec.Fields in place (creating it
// when needed), so rec must own its Fields maps, as records made by parsers do.
func (s *State) Apply(rec *event.Record) {
	for _, i := range s.rewrite.lookup(rec.Tag) {
		if s.rules.rewrite[i].apply(s, rec) {
			break
		}
	}
	for _, i := range s.records.lookup(rec.Tag) {
		s.rules.records[i].apply(s, rec)
	}
}

// tagCache remembers which rules' match patterns match a tag: the previous tag first, then a
// bounded map.
type tagCache struct {
	rules   [][]*Pattern
	last    string
	lastIdx []int
	ok      bool
	m       map[string][]int
}

func (c *tagCache) lookup(tag string) []int {
	if c.ok && c.last == tag {
		return c.lastIdx
	}
	if len(c.rules) == 0 {
		return nil
	}
	idx, found := c.m[tag]
	if !found {
		for i, ps := range c.rules {
			for _, p := range ps {
				if p.Match(tag) {
					idx = append(idx, i)
					break
				}
			}
		}
		if c.m == nil || len(c.m) >= maxCachedTags {
			c.m = make(map[string][]int)
		}
		c.m[tag] = idx
	}
	c.last, c.lastIdx, c.ok = tag, idx, true
	return idx
}

// intern returns b as a string, reusing the string of an earlier equal tag.
func (s *State) intern(b []byte) string {
	if t, ok := s.tags[string(b)]; ok {
		return t
	}
	if len(s.tags) >= maxCachedTags {
		clear(s.tags)
	}
	t := string(b)
	s.tags[t] = t
	return t
}

// ValidTag reports why tag cannot be a record's tag, or nil. A tag is one or more non-empty
// parts separated by '.', in valid UTF-8 without white space, control characters, or the
// characters tag patterns treat specially ('*', '{', '}', ',').
func ValidTag(tag string) error {
	if tag == "" {
		return errors.New("empty tag")
	}
	for part := range strings.SplitSeq(tag, ".") {
		if part == "" {
			return fmt.Errorf("tag %q has an empty part (leading, trailing or double '.')", tag)
		}
	}
	for i, r := range tag {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(tag[i:]); size == 1 {
				return fmt.Errorf("tag %q is not valid UTF-8", tag)
			}
		}
		if badTagRune(r) {
			return fmt.Errorf("tag %q must not contain %q", tag, r)
		}
	}
	return nil
}

func badTagRune(r rune) bool {
	switch r {
	case '*', '{', '}', ',':
		return true
	}
	return r < 0x20 || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r)
}

// maxTagValueBytes caps one value substituted into a tag.
const maxTagValueBytes = 255

// appendTagValue writes v as part of a tag: characters a tag must not hold become '_', runs of
// '.' become one, leading and trailing '.' are dropped, at most maxTagValueBytes are kept, and
// a value left empty is written "none" (as templates write absent values).
func appendTagValue(dst []byte, v string) []byte {
	if len(v) > maxTagValueBytes {
		n := maxTagValueBytes
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = v[:n]
	}
	start := len(dst)
	dot := false // a '.' is owed before the next character
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		c := v[i : i+size]
		i += size
		if r == '.' {
			dot = len(dst) > start
			continue
		}
		if dot {
			dst = append(dst, '.')
			dot = false
		}
		if r == utf8.RuneError && size == 1 || badTagRune(r) {
			dst = append(dst, '_')
			continue
		}
		dst = append(dst, c...)
	}
	if len(dst) == start {
		dst = append(dst, "none"...)
	}
	return dst
}
