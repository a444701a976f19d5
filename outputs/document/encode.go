package document

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"
)

// safe[b] is true for the bytes that appear in a JSON string as they are: printable ASCII
// other than '"' and '\\'. Everything else takes the slow path.
var safe = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a quoted JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip eight plain ASCII bytes at a time; most log text is nothing else.
		for i+8 <= len(s) && !needsWork(load64(s, i)) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if safe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but not valid JavaScript before ES2019; escaping costs nothing here.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// load64 reads the 8 bytes of s at i as a little-endian word (the compiler makes it one load).
func load64(s string, i int) uint64 {
	w := s[i : i+8]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// needsWork reports whether any byte of x is not plain JSON-safe ASCII: a control character
// (< 0x20), '"', '\\', or a byte >= 0x80. It uses the classic "has a byte less than n" and "has a
// zero byte" bit tricks, which are exact when only asked whether any byte matches.
func needsWork(x uint64) bool {
	ctl := (x - lsb*0x20) &^ x
	q := x ^ (lsb * '"')
	q = (q - lsb) &^ q
	bs := x ^ (lsb * '\\')
	bs = (bs - lsb) &^ bs
	return (ctl|q|bs|x)&msb != 0
}

func appendInt(dst []byte, v int64) []byte {
	return strconv.AppendInt(dst, v, 10)
}

// fixedKeys are the top-level keys Append writes itself; Fields keys equal to one of them are
// renamed so that a document never holds a key twice.
var fixedKeys = map[string]bool{
	"@timestamp": true, "@timestamp_nanos": true, "message": true, "stream": true, "tag": true,
	"log": true, "kubernetes": true, "container": true, "skiff": true,
}

// renamePrefix is put before a Fields key that collides with a fixed key.
const renamePrefix = "fields_"

// maxStackKeys is how many keys of one map are sorted without allocating.
const maxStackKeys = 32

// appendTopFields writes the Fields of a record after the fixed fields: a leading comma, then
// key:value pairs in sorted key order, with colliding keys renamed.
func appendTopFields(dst []byte, m map[string]any) []byte {
	var stack [maxStackKeys]string
	keys := sortedKeys(stack[:0], m)
	for _, k := range keys {
		dst = append(dst, ',')
		if fixedKeys[k] {
			dst = appendRenamedKey(dst, k, m)
		} else {
			dst = appendString(dst, k)
		}
		dst = append(dst, ':')
		dst = appendValue(dst, m[k])
	}
	return dst
}

// appendRenamedKey writes "fields_<k>", adding prefixes until the name is not a key of m.
// Collisions are rare, so the allocation of the candidate name does not matter.
func appendRenamedKey(dst []byte, k string, m map[string]any) []byte {
	name := renamePrefix + k
	for {
		if _, taken := m[name]; !taken {
			break
		}
		name = renamePrefix + name
	}
	return appendString(dst, name)
}

func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendValue writes one Fields value as JSON.
func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return appendString(dst, v)
	case bool:
		if v {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case float64:
		return appendFloat(dst, v, 64)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case json.Number:
		return appendNumber(dst, v)
	case map[string]any:
		return appendObject(dst, v, appendValue)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, e)
		}
		return append(dst, ']')
	case map[string]string:
		return appendObject(dst, v, appendString)
	case []string:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, e)
		}
		return append(dst, ']')
	case []byte:
		return appendString(dst, bytesToString(v))
	case float32:
		return appendFloat(dst, float64(v), 32)
	case int32:
		return strconv.AppendInt(dst, int64(v), 10)
	case int16:
		return strconv.AppendInt(dst, int64(v), 10)
	case int8:
		return strconv.AppendInt(dst, int64(v), 10)
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10)
	}
	return appendOther(dst, v)
}

// appendObject writes m as a JSON object with sorted keys, each value written by enc.
func appendObject[V any](dst []byte, m map[string]V, enc func([]byte, V) []byte) []byte {
	var stack [maxStackKeys]string
	keys := sortedKeys(stack[:0], m)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = enc(dst, m[k])
	}
	return append(dst, '}')
}

// appendFloat writes f the way encoding/json does: shortest representation, plain notation for
// magnitudes in [1e-6, 1e21), exponent notation (without a leading zero in the exponent)
// outside it. NaN and infinities have no JSON form and become null.
func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// 1e-07 → 1e-7
		if n := len(dst) - start; n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// appendNumber writes a json.Number as a number when it is one, else as a string, so that a
// malformed Number cannot break the document.
func appendNumber(dst []byte, n json.Number) []byte {
	if validNumber(string(n)) {
		return append(dst, n...)
	}
	return appendString(dst, string(n))
}

// validNumber reports whether s follows JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// jsonAPI encodes values of types appendValue does not know. It is configured like
// encoding/json (sorted map keys, HTML escaping as the standard library does).
var jsonAPI = jsoniter.ConfigCompatibleWithStandardLibrary

// appendOther encodes an unexpected value type. It is the robustness path, not a fast one.
func appendOther(dst []byte, v any) []byte {
	b, err := jsonAPI.Marshal(v)
	if err != nil || !json.Valid(b) {
		return appendString(dst, fmt.Sprintf("%v", v))
	}
	return append(dst, b...)
}
