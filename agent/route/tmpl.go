package route

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/skiff-logs/skiff/agent/event"
)

// The text templates of rules: a rewritten tag, a default tag, a value to set.
//
//	$1 … $9, ${N}           the pattern's groups (rewrite tags only; $0 is the whole match)
//	${tag}                  the record's tag (before rewriting)
//	${tag_parts[N]}         its N-th dot-separated part, from 0; negative N counts from the end
//	${record.dotted.key}    a record value (see fieldKey.value)
//	$$                      a '$'
//
// In a tag, each substituted value is made tag-safe (appendTagValue) and an absent or empty
// one is written "none"; in a value to set, values are written as they are and absent ones as
// nothing. Note that the configuration file's own ${ENV} expansion runs first: a literal '$' in
// a YAML value is written "$$", so "$$$$" there for a '$' here.

type tmplKind uint8

const (
	tLiteral tmplKind = iota
	tGroup
	tTag
	tTagPart
	tField
)

type tmplPart struct {
	kind tmplKind
	text string
	n    int
	key  fieldKey
}

type tmpl struct {
	parts    []tmplPart
	static   bool   // no placeholders: the text is lit
	lit      string // the literal text of a static template
	maxGroup int    // the highest $N used, -1 for none
}

// parseTmpl parses s; groups allows $N placeholders.
func parseTmpl(s string, groups bool) (*tmpl, error) {
	t := &tmpl{maxGroup: -1}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tmplPart{kind: tLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("%q: a '$' at the end (write $$ for a '$')", s)
		}
		switch n := s[i+1]; {
		case n == '$':
			lit.WriteByte('$')
			i += 2
			continue
		case n >= '0' && n <= '9':
			if !groups {
				return nil, fmt.Errorf("%q: $%c: groups exist only in a rewrite rule's tag, when its pattern matched", s, n)
			}
			flush()
			t.addGroup(int(n - '0'))
			i += 2
			continue
		case n != '{':
			return nil, fmt.Errorf("%q: unknown placeholder at %d (want $1, ${tag}, ${tag_parts[N]} or ${record.KEY}; $$ for a '$')", s, i)
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("%q: unclosed \"${\" at %d", s, i)
		}
		name := s[i+2 : i+end]
		p, err := parsePlaceholder(name, groups)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		flush()
		if p.kind == tGroup {
			t.addGroup(p.n)
		} else {
			t.parts = append(t.parts, p)
		}
		i += end + 1
	}
	flush()
	switch len(t.parts) {
	case 0:
		t.static = true
	case 1:
		t.static = t.parts[0].kind == tLiteral
		t.lit = t.parts[0].text
	}
	return t, nil
}

func (t *tmpl) addGroup(n int) {
	t.parts = append(t.parts, tmplPart{kind: tGroup, n: n})
	t.maxGroup = max(t.maxGroup, n)
}

func parsePlaceholder(name string, groups bool) (tmplPart, error) {
	switch {
	case name == "tag":
		return tmplPart{kind: tTag}, nil
	case strings.HasPrefix(name, "tag_parts[") && strings.HasSuffix(name, "]"):
		n, err := strconv.Atoi(name[len("tag_parts[") : len(name)-1])
		if err != nil || n > 1<<16 || n < -1<<16 {
			return tmplPart{}, fmt.Errorf("${%s}: bad tag_parts index", name)
		}
		return tmplPart{kind: tTagPart, n: n}, nil
	case strings.HasPrefix(name, "record."):
		k, err := compileKey(name[len("record."):])
		if err != nil {
			return tmplPart{}, fmt.Errorf("${%s}: %w", name, err)
		}
		return tmplPart{kind: tField, key: k}, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < 1000 {
		if !groups {
			return tmplPart{}, fmt.Errorf("${%s}: groups exist only in a rewrite rule's tag, when its pattern matched", name)
		}
		return tmplPart{kind: tGroup, n: n}, nil
	}
	return tmplPart{}, fmt.Errorf("unknown placeholder ${%s} (want ${tag}, ${tag_parts[N]}, ${record.KEY} or ${N})", name)
}

// sample renders t with every placeholder written "x", to check the literal text of a tag.
func (t *tmpl) sample() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind == tLiteral {
			b.WriteString(p.text)
		} else {
			b.WriteByte('x')
		}
	}
	return b.String()
}

// render appends t for r to dst. v and m are the matched value and the pattern's submatch
// indexes (nil when there are none). asTag makes each value tag-safe (see appendTagValue).
func (t *tmpl) render(dst []byte, s *State, r *event.Record, v string, m []int, asTag bool) []byte {
	for i := range t.parts {
		p := &t.parts[i]
		var val string
		switch p.kind {
		case tLiteral:
			dst = append(dst, p.text...)
			continue
		case tGroup:
			if 2*p.n+1 < len(m) && m[2*p.n] >= 0 {
				val = v[m[2*p.n]:m[2*p.n+1]]
			}
		case tTag:
			val = r.Tag
		case tTagPart:
			val = tagPart(r.Tag, p.n)
		case tField:
			val, _ = p.key.value(r, &s.tmplNum)
		}
		if asTag {
			dst = appendTagValue(dst, val)
		} else {
			dst = append(dst, val...)
		}
	}
	return dst
}

// tagPart returns the n-th dot-separated part of tag (negative n counts from the end), or "".
func tagPart(tag string, n int) string {
	parts := strings.Count(tag, ".") + 1
	if n < 0 {
		n += parts
	}
	if n < 0 || n >= parts {
		return ""
	}
	for ; n > 0; n-- {
		tag = tag[strings.IndexByte(tag, '.')+1:]
	}
	if i := strings.IndexByte(tag, '.'); i >= 0 {
		tag = tag[:i]
	}
	return tag
}
