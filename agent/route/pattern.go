// Package route decides which outputs a record goes to, by its tag, with fluentd-style patterns.
package route

import (
	"fmt"
	"strings"
)

// Pattern is a compiled fluentd-style tag pattern: dot-separated parts, each a literal, "*"
// (exactly one part) or "**" (any number of parts, including none, so "a.**" also matches "a");
// {x,y} gives alternatives ("kube.{prod,stage}.**", "{audit,audit.**}"). Immutable, safe for
// concurrent use.
type Pattern struct {
	text string
	alts [][]string // each alternative split into parts
}

// Compile parses p.
func Compile(p string) (*Pattern, error) {
	if p == "" {
		return nil, fmt.Errorf("empty tag pattern")
	}
	texts, err := expandBraces(p)
	if err != nil {
		return nil, err
	}
	pat := &Pattern{text: p}
	for _, t := range texts {
		parts := strings.Split(t, ".")
		for _, s := range parts {
			if s == "" {
				return nil, fmt.Errorf("empty part in tag pattern %q", p)
			}
			if strings.Contains(s, "*") && s != "*" && s != "**" {
				return nil, fmt.Errorf("* must be a whole part in tag pattern %q", p)
			}
		}
		pat.alts = append(pat.alts, parts)
	}
	return pat, nil
}

// String returns the pattern's text.
func (p *Pattern) String() string { return p.text }

// Match reports whether tag matches the pattern. It does not allocate.
func (p *Pattern) Match(tag string) bool {
	for _, parts := range p.alts {
		if matchParts(parts, tag) {
			return true
		}
	}
	return false
}

func matchParts(parts []string, tag string) bool {
	if len(parts) == 0 {
		return tag == ""
	}
	if parts[0] == "**" {
		if len(parts) == 1 {
			return true
		}
		// "**" swallows zero or more leading parts of tag.
		rest := tag
		for {
			if matchParts(parts[1:], rest) {
				return true
			}
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				return false
			}
			rest = rest[i+1:]
		}
	}
	if tag == "" {
		return false
	}
	head, rest, more := strings.Cut(tag, ".")
	if parts[0] != "*" && parts[0] != head {
		return false
	}
	if !more {
		return len(parts) == 1 || (len(parts) == 2 && parts[1] == "**")
	}
	return matchParts(parts[1:], rest)
}

// expandBraces turns "a.{b,c}.d" into ["a.b.d", "a.c.d"]. Braces do not nest.
func expandBraces(p string) ([]string, error) {
	open := strings.IndexByte(p, '{')
	if open < 0 {
		if strings.IndexByte(p, '}') >= 0 {
			return nil, fmt.Errorf("unmatched } in tag pattern %q", p)
		}
		return []string{p}, nil
	}
	end := strings.IndexByte(p[open:], '}')
	if end < 0 {
		return nil, fmt.Errorf("unclosed { in tag pattern %q", p)
	}
	end += open
	inner := p[open+1 : end]
	if strings.IndexByte(inner, '{') >= 0 {
		return nil, fmt.Errorf("nested { in tag pattern %q", p)
	}
	tails, err := expandBraces(p[end+1:])
	if err != nil {
		return nil, err
	}
	var out []string
	for _, choice := range strings.Split(inner, ",") {
		for _, t := range tails {
			out = append(out, p[:open]+choice+t)
		}
	}
	return out, nil
}
