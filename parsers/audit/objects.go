package audit

import "bytes"

// maxDepth bounds the nesting of the objects cutObjects skips, so that a hostile line cannot
// exhaust the stack.
const maxDepth = 1000

// objectKey is in every line that has a requestObject or responseObject member.
var objectKey = []byte(`Object"`)

// cutObjects takes the top-level requestObject and responseObject members of line as JSON
// text into w, and returns the line with their values replaced by null for the decoder. The
// objects are arbitrary Kubernetes objects, up to megabytes: skipping them here costs no
// allocation per key (json-iterator's Skip allocates every key it passes) and they are copied
// once, into their strings.
//
// The scan checks the line's structure (strings, nesting, commas and colons) but not the
// contents of strings and numbers inside the objects; the decoder checks the rest of the line.
// ok is false when the line is not a well-formed object as far as the scan sees. A line
// without either member is returned as it is.
func (p *Parser) cutObjects(line []byte, w *wireEvent) (rest []byte, ok bool) {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' || !bytes.Contains(line, objectKey) {
		return line, true // the decoder reports what is wrong with it, if anything
	}
	rest = p.rest[:0]
	copied := 0 // line[:copied] is in rest
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return line, true
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return nil, false
		}
		keyStart := i
		if i, ok = skipString(line, i); !ok {
			return nil, false
		}
		key := line[keyStart+1 : i-1]
		if i = skipSpace(line, i); i >= len(line) || line[i] != ':' {
			return nil, false
		}
		i = skipSpace(line, i+1)
		valStart := i
		if i, ok = skipValue(line, i, 0); !ok {
			return nil, false
		}
		var dst *string
		switch string(key) {
		case "requestObject":
			dst = &w.requestObject
		case "responseObject":
			dst = &w.responseObject
		}
		if dst != nil {
			if v := line[valStart:i]; string(v) != "null" {
				*dst = string(v)
			} else {
				*dst = ""
			}
			rest = append(rest, line[copied:valStart]...)
			rest = append(rest, "null"...)
			copied = i
		}
		if i = skipSpace(line, i); i >= len(line) {
			return nil, false
		}
		switch line[i] {
		case ',':
			i = skipSpace(line, i+1)
			continue
		case '}':
			p.rest = append(rest, line[copied:]...)
			return p.rest, true
		}
		return nil, false
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts with the '"' at b[i].
func skipString(b []byte, i int) (int, bool) {
	i++
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return 0, false
		}
		bs := bytes.IndexByte(b[i:i+q], '\\')
		if bs < 0 {
			return i + q + 1, true
		}
		i += bs + 2 // past the backslash and the character it escapes
		if i > len(b) {
			return 0, false
		}
	}
}

// skipValue returns the index after the JSON value that starts at b[i].
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, false
		}
		return skipContainer(b, i, depth)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, true
	}
	return 0, false
}

// skipContainer returns the index after the object or array that starts at b[i].
func skipContainer(b []byte, i, depth int) (int, bool) {
	object := b[i] == '{'
	end := byte(']')
	if object {
		end = '}'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == end {
		return i + 1, true
	}
	for {
		var ok bool
		if object {
			if i >= len(b) || b[i] != '"' {
				return 0, false
			}
			if i, ok = skipString(b, i); !ok {
				return 0, false
			}
			if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
				return 0, false
			}
			i = skipSpace(b, i+1)
		}
		if i, ok = skipValue(b, i, depth+1); !ok {
			return 0, false
		}
		if i = skipSpace(b, i); i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case end:
			return i + 1, true
		default:
			return 0, false
		}
	}
}

func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}
