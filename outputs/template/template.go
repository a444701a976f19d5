// Package template renders the names outputs derive from records: Elasticsearch index names and
// gzip file paths.
//
// A template is literal text with placeholders:
//
//   - strftime directives on the record time in UTC: %Y (year), %m (month 01-12), %d (day 01-31),
//     %H (hour 00-23), %M (minute), %S (second), %j (day of the year 001-366), %% (a '%');
//   - {tag}: the record's tag;
//   - {tag_parts[N]}: the N-th dot-separated part of the tag, counting from 0; a negative N
//     counts from the end ({tag_parts[-1]} is the last part);
//   - {dotted.field}: a field of the record. The document's own fields (kubernetes.namespace,
//     kubernetes.pod.name, kubernetes.labels.<key>, container.id, log.file.path, stream, tag, …;
//     see event.ParseKey) come from the record itself, r.Kube before r.Source; when they are
//     empty, and for every other name, the path is looked up in r.Fields (nested maps, or keys
//     that contain dots themselves; see event.LookupField), e.g. {objectRef.namespace} of an
//     audit event.
//
// A placeholder whose value is absent or empty, or not a string, number or boolean, renders as
// "none", as does a value that is "." or "..". Values are sanitised for the Mode; literal text
// is checked once, by Parse.
package template

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
)

// Mode says what a rendered name is for, which decides how values are sanitised.
type Mode int

const (
	// Index: Elasticsearch index names (lower-case, no \ / * ? " < > | space , # :, not starting
	// with - _ +, not . or .., at most 255 bytes). Values are lower-cased and the forbidden
	// characters (and invalid UTF-8) replaced by '_'; leading - _ + of the rendered name are
	// removed; a name that ends up empty, "." or ".." becomes "none". Literal text must already
	// be a valid part of an index name, or Parse fails.
	Index Mode = iota
	// Path: file paths. Placeholder values have '/' and NUL replaced by '_' and are at most 255
	// bytes, so a value never adds a directory level or a ".." segment. Literal text may hold
	// '/', but no NUL and no ".." segment.
	Path
)

func (m Mode) String() string {
	switch m {
	case Index:
		return "index"
	case Path:
		return "path"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// MaxIndexBytes is the longest index name Elasticsearch accepts; longer names are cut.
const MaxIndexBytes = 255

// maxValueBytes caps one placeholder value in Path mode (NAME_MAX on common file systems).
const maxValueBytes = 255

// none is what an absent value renders as.
const none = "none"

type kind uint8

const (
	literal kind = iota
	year
	month
	day
	hour
	minute
	second
	yearDay
	tag
	tagPart
	field
)

type part struct {
	kind kind
	text string    // literal text, or the field path
	n    int       // tag_parts index
	key  event.Key // the field
}

// Template is a parsed name template. It is immutable and safe for concurrent use.
type Template struct {
	src    string
	mode   Mode
	parts  []part
	prefix string
	static bool
	timed  kindSet // the time directives used, so Append computes only those
}

type kindSet uint16

func (s kindSet) has(k kind) bool { return s&(1<<k) != 0 }

// Parse parses s: strftime directives (%Y %m %d %H %M %S %j %%) on the record time in UTC,
// {tag}, {tag_parts[N]} (negative N counts from the end), and {dotted.field} placeholders looked
// up in the record (fixed fields such as kubernetes.namespace, then Fields), which render as
// "none" when absent. Errors name the byte position and the problem, e.g. `unclosed "{" at 5`.
func Parse(s string, mode Mode) (*Template, error) {
	if mode != Index && mode != Path {
		return nil, fmt.Errorf("template %q: unknown mode %d", s, int(mode))
	}
	if s == "" {
		return nil, fmt.Errorf("template is empty")
	}
	t := &Template{src: s, mode: mode}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{kind: literal, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '%':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("template %q: incomplete directive \"%%\" at %d", s, i)
			}
			k, ok := directives[s[i+1]]
			if !ok {
				return nil, fmt.Errorf("template %q: unknown directive %q at %d (known: %%Y %%m %%d %%H %%M %%S %%j %%%%)", s, s[i:i+2], i)
			}
			if k == literal {
				lit.WriteByte('%')
			} else {
				flush()
				t.parts = append(t.parts, part{kind: k})
				t.timed |= 1 << k
			}
			i += 2
		case '{':
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] == '{' {
				return nil, fmt.Errorf("template %q: unclosed \"{\" at %d", s, i)
			}
			p, err := parsePlaceholder(s[i+1 : i+1+end])
			if err != nil {
				return nil, fmt.Errorf("template %q: %w at %d", s, err, i)
			}
			flush()
			t.parts = append(t.parts, p)
			i += end + 2
		case '}':
			return nil, fmt.Errorf("template %q: unexpected \"}\" at %d", s, i)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if err := checkLiteral(r, size, mode); err != nil {
				return nil, fmt.Errorf("template %q: %w at %d", s, err, i)
			}
			lit.WriteString(s[i : i+size])
			i += size
		}
	}
	flush()
	t.static = len(t.parts) == 1 && t.parts[0].kind == literal
	if len(t.parts) > 0 && t.parts[0].kind == literal {
		t.prefix = t.parts[0].text
	}
	var err error
	if mode == Index {
		err = t.checkIndexLiterals()
	} else {
		err = t.checkPathLiterals()
	}
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", s, err)
	}
	return t, nil
}

var directives = map[byte]kind{
	'Y': year, 'm': month, 'd': day, 'H': hour, 'M': minute, 'S': second, 'j': yearDay, '%': literal,
}

func parsePlaceholder(name string) (part, error) {
	switch {
	case name == "":
		return part{}, fmt.Errorf("empty placeholder \"{}\"")
	case name == "tag":
		return part{kind: tag}, nil
	case strings.HasPrefix(name, "tag_parts"):
		rest := strings.TrimPrefix(name, "tag_parts")
		if len(rest) < 3 || rest[0] != '[' || rest[len(rest)-1] != ']' {
			return part{}, fmt.Errorf("bad placeholder {%s}: want {tag_parts[N]}", name)
		}
		n, err := strconv.Atoi(rest[1 : len(rest)-1])
		if err != nil || n > 1<<16 || n < -1<<16 {
			return part{}, fmt.Errorf("bad tag_parts index %q", rest[1:len(rest)-1])
		}
		return part{kind: tagPart, n: n}, nil
	}
	for seg := range strings.SplitSeq(name, ".") {
		if seg == "" {
			return part{}, fmt.Errorf("empty name segment in field placeholder {%s}", name)
		}
	}
	return part{kind: field, text: name, key: event.ParseKey(name)}, nil
}

// checkLiteral rejects a literal character that cannot be part of a rendered name. Values are
// sanitised when rendered, but a template with an upper-case letter or a '/' in an index name is
// a config mistake better reported at start.
func checkLiteral(r rune, size int, mode Mode) error {
	if r == utf8.RuneError && size == 1 {
		return fmt.Errorf("invalid UTF-8")
	}
	if mode == Path {
		if r == 0 {
			return fmt.Errorf("NUL in path")
		}
		return nil
	}
	switch {
	case r < 0x20 || r == 0x7f:
		return fmt.Errorf("control character %q in index name", r)
	case indexForbidden(r):
		return fmt.Errorf("index names must not contain %q", r)
	case unicode.ToLower(r) != r:
		return fmt.Errorf("index names must be lower-case, found %q", r)
	}
	return nil
}

// checkIndexLiterals checks the rules for the literal text of a whole index name.
func (t *Template) checkIndexLiterals() error {
	if len(t.parts) > 0 && t.parts[0].kind == literal {
		if c := t.parts[0].text[0]; c == '-' || c == '_' || c == '+' {
			return fmt.Errorf("index names must not start with %q", c)
		}
	}
	if t.static && (t.src == "." || t.src == "..") {
		return fmt.Errorf("index name must not be %q", t.src)
	}
	if t.static && len(t.src) > MaxIndexBytes {
		return fmt.Errorf("index names are at most %d bytes", MaxIndexBytes)
	}
	return nil
}

// checkPathLiterals rejects ".." as a whole segment of literal text (a segment
// that touches a placeholder always holds more than dots, since values are never empty, "."
// or "..").
func (t *Template) checkPathLiterals() error {
	for i, p := range t.parts {
		if p.kind != literal {
			continue
		}
		segs := strings.Split(p.text, "/")
		for j, seg := range segs {
			leftBound := j > 0 || i == 0
			rightBound := j < len(segs)-1 || i == len(t.parts)-1
			if seg == ".." && leftBound && rightBound {
				return fmt.Errorf("paths must not contain a \"..\" segment")
			}
		}
	}
	if strings.HasSuffix(t.src, "/") {
		return fmt.Errorf("path must name a file, not end with \"/\"")
	}
	return nil
}

func indexForbidden(r rune) bool {
	switch r {
	case '\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ':', ' ':
		return true
	}
	return false
}

// String returns the template's source text.
func (t *Template) String() string { return t.src }

// Mode returns the mode the template was parsed for.
func (t *Template) Mode() Mode { return t.mode }

// Static reports whether the template has no placeholders, so it renders the same for every
// record.
func (t *Template) Static() bool { return t.static }

// Prefix returns the literal text before the first placeholder (the whole text for a static
// template), e.g. "k8s-logs-" for "k8s-logs-%Y.%m.%d", so an index pattern "k8s-logs-*" matches
// every name the template renders.
func (t *Template) Prefix() string { return t.prefix }

// Append renders the template for r onto dst. It does not allocate (unless dst must grow), only
// reads r, and may be called from any number of goroutines.
func (t *Template) Append(dst []byte, r *event.Record) []byte {
	start := len(dst)
	var tm clock
	if t.timed != 0 {
		tm = clockOf(r.Time, t.timed)
	}
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case literal:
			dst = append(dst, p.text...)
		case year:
			if tm.year >= 0 && tm.year <= 9999 {
				dst = appendDigits(dst, tm.year, 4)
			} else {
				dst = strconv.AppendInt(dst, int64(tm.year), 10)
			}
		case month:
			dst = appendDigits(dst, tm.month, 2)
		case day:
			dst = appendDigits(dst, tm.day, 2)
		case hour:
			dst = appendDigits(dst, tm.hour, 2)
		case minute:
			dst = appendDigits(dst, tm.minute, 2)
		case second:
			dst = appendDigits(dst, tm.second, 2)
		case yearDay:
			dst = appendDigits(dst, tm.yearDay, 3)
		case tag:
			dst = t.appendValue(dst, r.Tag)
		case tagPart:
			dst = t.appendValue(dst, tagPartOf(r.Tag, p.n))
		case field:
			dst = t.appendField(dst, p, r)
		}
	}
	if t.mode == Index {
		dst = finishIndex(dst, start)
	}
	return dst
}

type clock struct {
	year, month, day, hour, minute, second, yearDay int
}

// clockOf computes the parts of t in UTC that the template uses; each time method works out the
// calendar date again, so the unused ones are skipped.
func clockOf(t time.Time, used kindSet) clock {
	t = t.UTC()
	var c clock
	if used.has(year) || used.has(month) || used.has(day) {
		y, mo, d := t.Date()
		c.year, c.month, c.day = y, int(mo), d
	}
	if used.has(hour) || used.has(minute) || used.has(second) {
		c.hour, c.minute, c.second = t.Clock()
	}
	if used.has(yearDay) {
		c.yearDay = t.YearDay()
	}
	return c
}

// appendDigits writes v with at least width digits.
func appendDigits(dst []byte, v, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for v > 0 || len(buf)-i < width {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}

// tagPartOf returns the n-th dot-separated part of tag (negative n counts from the end), or ""
// when there is none.
func tagPartOf(tag string, n int) string {
	if n < 0 {
		n += strings.Count(tag, ".") + 1
		if n < 0 {
			return ""
		}
	}
	for ; n > 0; n-- {
		i := strings.IndexByte(tag, '.')
		if i < 0 {
			return ""
		}
		tag = tag[i+1:]
	}
	if i := strings.IndexByte(tag, '.'); i >= 0 {
		tag = tag[:i]
	}
	return tag
}

func (t *Template) appendField(dst []byte, p *part, r *event.Record) []byte {
	if v := p.key.OwnValue(r); v != "" {
		return t.appendValue(dst, v)
	}
	v, ok := event.LookupField(r.Fields, p.text)
	if !ok {
		return append(dst, none...)
	}
	switch v := v.(type) {
	case string:
		return t.appendValue(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	case float64:
		n := len(dst)
		dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
		if t.mode == Index { // NaN, +Inf
			lowerASCII(dst[n:])
		}
		return dst
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case json.Number:
		return t.appendValue(dst, string(v))
	}
	return append(dst, none...)
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// appendValue writes one placeholder value sanitised for the template's mode.
func (t *Template) appendValue(dst []byte, v string) []byte {
	if v == "" || v == "." || v == ".." {
		return append(dst, none...)
	}
	if t.mode == Path {
		return appendPathValue(dst, v)
	}
	return appendIndexValue(dst, v)
}

func appendPathValue(dst []byte, v string) []byte {
	if len(v) > maxValueBytes {
		v = cutAtRune(v, maxValueBytes)
	}
	for len(v) > 0 {
		i := strings.IndexAny(v, "/\x00")
		if i < 0 {
			return append(dst, v...)
		}
		dst = append(dst, v[:i]...)
		dst = append(dst, '_')
		v = v[i+1:]
	}
	return dst
}

func appendIndexValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			case c < 0x20 || c == 0x7f || indexForbidden(rune(c)):
				c = '_'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError {
			dst = append(dst, '_')
		} else {
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		}
		i += size
	}
	return dst
}

// finishIndex applies the rules for a whole index name to dst[start:]: no leading - _ +, not
// empty, "." or "..", at most MaxIndexBytes.
func finishIndex(dst []byte, start int) []byte {
	name := dst[start:]
	k := 0
	for k < len(name) && (name[k] == '-' || name[k] == '_' || name[k] == '+') {
		k++
	}
	if k > 0 {
		n := copy(name, name[k:])
		dst = dst[:start+n]
		name = dst[start:]
	}
	if len(name) == 0 || string(name) == "." || string(name) == ".." {
		return append(dst[:start], none...)
	}
	if len(name) > MaxIndexBytes {
		n := len(cutAtRune(string(name), MaxIndexBytes))
		dst = dst[:start+n]
	}
	return dst
}

// cutAtRune returns the longest prefix of s of at most n bytes that does not split a UTF-8
// sequence.
func cutAtRune(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
