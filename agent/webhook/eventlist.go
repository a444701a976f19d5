package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The apiVersion and kinds accepted. The apiserver's webhook backend sends audit.k8s.io/v1
// unless --audit-webhook-version says otherwise; v1beta1 and v1alpha1 are gone since 1.24.
const (
	apiVersion = "audit.k8s.io/v1"
	listKind   = "EventList"
	eventKind  = "Event"
)

// eventHeader is put at the front of an item that lacks kind or apiVersion. The apiserver's
// webhook backend writes these only on the list, while its log backend writes them on every
// event; adding them makes a spooled line exactly a line of the audit log, so the audit parser
// sees one format and an event that arrives both ways becomes the same document.
var (
	kindField    = []byte(`"kind":"` + eventKind + `",`)
	versionField = []byte(`"apiVersion":"` + apiVersion + `",`)
)

// badRequest is a problem with the request body, answered 400 with its text.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// splitEventList checks that body is one JSON audit.k8s.io/v1 EventList and appends each of its
// items to dst as one line: the item compacted (no whitespace, so no newline inside), with
// "kind":"Event" and "apiVersion":"audit.k8s.io/v1" added at its front when it lacks them,
// then '\n'. scratch is a buffer for the compacted body, returned for reuse. n is the number
// of items. A body that is not such a list is a *badRequest naming what is wrong; dst then
// holds the lines of the items before the bad one, which the caller discards.
//
// The body is validated and compacted by encoding/json in one pass; the walk over its structure
// after that relies on the compact form being valid JSON.
func splitEventList(dst, scratch, body []byte) (out, scratchOut []byte, n int, err error) {
	c := bytes.NewBuffer(scratch[:0])
	if err := json.Compact(c, body); err != nil {
		return dst, c.Bytes(), 0, badf("body is not valid JSON: %v", err)
	}
	b := c.Bytes()
	if len(b) == 0 || b[0] != '{' {
		return dst, b, 0, badf("body is not a JSON object: want an audit.k8s.io/v1 EventList")
	}
	var kind, version, items []byte
	var seen [3]bool
	for m := (members{obj: b}); m.next(); {
		var slot int
		switch {
		case keyIs(m.key, "kind"):
			slot, kind = 0, m.val
		case keyIs(m.key, "apiVersion"):
			slot, version = 1, m.val
		case keyIs(m.key, "items"):
			slot, items = 2, m.val
		default:
			continue
		}
		if seen[slot] {
			return dst, b, 0, badf("body has the key %s twice", m.key)
		}
		seen[slot] = true
	}
	if err := wantString(kind, "kind", listKind); err != nil {
		return dst, b, 0, err
	}
	if err := wantString(version, "apiVersion", apiVersion); err != nil {
		return dst, b, 0, err
	}
	if len(items) == 0 || string(items) == "null" {
		return dst, b, 0, nil
	}
	if items[0] != '[' {
		return dst, b, 0, badf("items is not a JSON array")
	}
	for i := 1; items[i] != ']'; {
		end := skipValue(items, i)
		item := items[i:end]
		if item[0] != '{' {
			return dst, b, n, badf("items[%d] is not a JSON object", n)
		}
		if dst, err = appendEvent(dst, item, n); err != nil {
			return dst, b, n, err
		}
		n++
		i = end
		if items[i] == ',' {
			i++
		}
	}
	return dst, b, n, nil
}

// appendEvent appends one item (a compact JSON object) as a line, adding kind and apiVersion
// when it lacks them, and checks them when it has them.
func appendEvent(dst, item []byte, index int) ([]byte, error) {
	var kind, version []byte
	for m := (members{obj: item}); m.next(); {
		switch {
		case keyIs(m.key, "kind"):
			if kind != nil {
				return dst, badf("items[%d] has the key kind twice", index)
			}
			kind = m.val
		case keyIs(m.key, "apiVersion"):
			if version != nil {
				return dst, badf("items[%d] has the key apiVersion twice", index)
			}
			version = m.val
		}
	}
	if kind != nil && !isString(kind, eventKind) {
		return dst, wantString(kind, fmt.Sprintf("items[%d].kind", index), eventKind)
	}
	if version != nil && !isString(version, apiVersion) {
		return dst, wantString(version, fmt.Sprintf("items[%d].apiVersion", index), apiVersion)
	}
	if kind != nil && version != nil {
		dst = append(dst, item...)
		return append(dst, '\n'), nil
	}
	dst = append(dst, '{')
	if kind == nil {
		dst = append(dst, kindField...)
	}
	if version == nil {
		dst = append(dst, versionField...)
	}
	if len(item) == 2 { // "{}" has neither key, so a comma ends what was added: drop it
		dst = dst[:len(dst)-1]
	}
	dst = append(dst, item[1:]...)
	return append(dst, '\n'), nil
}

// wantString checks that the raw JSON value val is the string want; key names it in the error.
func wantString(val []byte, key, want string) error {
	if val == nil {
		return badf("%s is missing: want %q", key, want)
	}
	if !isString(val, want) {
		return badf("%s is %s: want %q", key, truncate(val, 64), want)
	}
	return nil
}

// isString reports whether the raw JSON value val is the string want (written with escapes or
// not).
func isString(val []byte, want string) bool {
	if len(val) == len(want)+2 && val[0] == '"' && string(val[1:len(val)-1]) == want {
		return true
	}
	if bytes.IndexByte(val, '\\') < 0 {
		return false
	}
	var s string
	return json.Unmarshal(val, &s) == nil && s == want
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// keyIs reports whether the raw JSON string key (quotes included) is name.
func keyIs(key []byte, name string) bool { return isString(key, name) }

// members walks the members of a compact, valid JSON object: after each next that returns
// true, key is the raw key (quotes included) and val the raw value.
type members struct {
	obj      []byte
	i        int
	key, val []byte
}

func (m *members) next() bool {
	if m.i == 0 {
		m.i = 1 // past the '{'
	}
	if m.obj[m.i] == '}' {
		return false
	}
	k := skipString(m.obj, m.i)
	v := skipValue(m.obj, k+1) // past the ':'
	m.key, m.val = m.obj[m.i:k], m.obj[k+1:v]
	m.i = v
	if m.obj[m.i] == ',' {
		m.i++
	}
	return true
}

// skipValue returns the index just after the JSON value starting at b[i]; b is compact, valid
// JSON, so a scalar other than a string ends at the first ',', '}' or ']'.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// skipString returns the index just after the JSON string whose opening quote is b[i].
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}
