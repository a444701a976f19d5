package route

import (
	"fmt"
	"slices"
	"strings"

	"github.com/skiff-logs/skiff/agent/event"
)

// RecordRule is one records rule as configured, like fluentd's record_transformer: for records
// whose tag (after rewriting) matches Match, set the Set keys, then remove the Remove keys.
//
//   - Match: tag patterns (default DefaultMatch, every tag).
//   - Set: dotted key → value template (${tag}, ${tag_parts[N]}, ${record.KEY}; see tmpl). Keys
//     are paths into Fields: "a.b" sets Fields["a"]["b"] (an existing "a.b" key, or maps along
//     the way, are reused; a value on the way that is not a map is replaced by one). Values are
//     strings; every value of a rule is rendered from the record as it was before the rule's
//     sets, so the order of keys does not matter.
//   - Remove: dotted keys into Fields, looked up like Key of a RewriteRule.
//
// Keys must not start with a field the document writes itself (message, tag, stream, log,
// kubernetes, container, skiff, @timestamp…): rules change Fields only.
type RecordRule struct {
	Match  []string
	Set    map[string]string
	Remove []string
}

type recordRule struct {
	set    []setOp
	remove []string
}

type setOp struct {
	key string
	val *tmpl
}

func compileRecord(spec RecordRule) (*recordRule, []fieldError) {
	var errs []fieldError
	r := &recordRule{}
	keys := make([]string, 0, len(spec.Set))
	for k := range spec.Set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		field := "set." + k
		if err := checkFieldsKey(k); err != nil {
			errs = append(errs, fieldError{field, err})
			continue
		}
		if i > 0 && strings.HasPrefix(k, keys[i-1]+".") {
			errs = append(errs, fieldErr(field, "%q is set too, as a value: a key cannot be both", keys[i-1]))
			continue
		}
		t, err := parseTmpl(spec.Set[k], false)
		if err != nil {
			errs = append(errs, fieldError{field, err})
			continue
		}
		r.set = append(r.set, setOp{key: k, val: t})
	}
	for i, k := range spec.Remove {
		if err := checkFieldsKey(k); err != nil {
			errs = append(errs, fieldError{fmt.Sprintf("remove[%d]", i), err})
			continue
		}
		r.remove = append(r.remove, k)
	}
	return r, errs
}

func checkFieldsKey(k string) error {
	if err := checkPath(k); err != nil {
		return err
	}
	head, _, _ := strings.Cut(k, ".")
	if slices.Contains(documentKeys, head) {
		return fmt.Errorf("%q is a field skiff writes itself; records rules change other fields only", head)
	}
	return nil
}

// apply sets and removes the rule's keys in r.Fields.
func (rr *recordRule) apply(s *State, r *event.Record) {
	if len(rr.set) > 0 {
		vals := s.vals[:0]
		for _, op := range rr.set {
			if op.val.static {
				vals = append(vals, op.val.lit)
				continue
			}
			s.buf = op.val.render(s.buf[:0], s, r, "", nil, false)
			vals = append(vals, string(s.buf))
		}
		if r.Fields == nil {
			r.Fields = make(map[string]any, len(rr.set))
		}
		for i, op := range rr.set {
			setFields(r.Fields, op.key, vals[i])
		}
		clear(vals)
		s.vals = vals[:0]
	}
	for _, k := range rr.remove {
		removeFields(r.Fields, k)
	}
}

// setFields sets the dotted path in m to v. At each level an existing key equal to the whole
// rest of the path, or an existing map at a prefix of it, is used before new maps are made.
func setFields(m map[string]any, path string, v string) {
	for {
		if _, ok := m[path]; ok {
			m[path] = v
			return
		}
		next, rest := descend(m, path, v)
		if next == nil && rest == "" {
			return // set in a map[string]string
		}
		if next != nil {
			m, path = next, rest
			continue
		}
		head, tail, dotted := strings.Cut(path, ".")
		if !dotted {
			m[path] = v
			return
		}
		nm := map[string]any{}
		m[head] = nm
		m, path = nm, tail
	}
}

// descend finds the first existing map at a dotted prefix of path. For a map[string]any it
// returns the map and the rest of the path; a map[string]string whose key is the (dot-free)
// rest gets v, and descend returns nil and "". With no such map it returns nil and path.
func descend(m map[string]any, path, v string) (map[string]any, string) {
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		switch next := m[path[:i]].(type) {
		case map[string]any:
			return next, path[i+1:]
		case map[string]string:
			if rest := path[i+1:]; strings.IndexByte(rest, '.') < 0 {
				next[rest] = v
				return nil, ""
			}
		}
	}
	return nil, path
}

// removeFields deletes the dotted path from m, found as event.LookupField finds it.
func removeFields(m map[string]any, path string) {
	if m == nil {
		return
	}
	if _, ok := m[path]; ok {
		delete(m, path)
		return
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		switch next := m[path[:i]].(type) {
		case map[string]any:
			removeFields(next, path[i+1:])
		case map[string]string:
			delete(next, path[i+1:])
		}
	}
}
