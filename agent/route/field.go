package route

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/skiff-logs/skiff/agent/event"
)

// documentKeys are the top-level keys the document encoder writes itself; records rules may
// not set or remove under them (they change Fields only).
var documentKeys = []string{"@timestamp", "@timestamp_nanos", "message", "stream", "tag", "log", "kubernetes", "container", "skiff"}

// fieldKey is a compiled dotted key into a record (see event.ParseKey).
type fieldKey struct {
	event.Key
	always bool // tag and message: present even when empty
}

// compileKey checks and compiles a dotted key.
func compileKey(path string) (fieldKey, error) {
	if err := checkPath(path); err != nil {
		return fieldKey{}, err
	}
	return fieldKey{Key: event.ParseKey(path), always: path == "tag" || path == "message"}, nil
}

func checkPath(path string) error {
	if path == "" {
		return fmt.Errorf("empty key")
	}
	for seg := range strings.SplitSeq(path, ".") {
		if seg == "" {
			return fmt.Errorf("key %q has an empty segment", path)
		}
	}
	return nil
}

// value returns the key's value in r as text, and whether r has it. The document's own fields
// come from the record (see event.Key.OwnValue); when such a field is empty, and for every
// other key, the key is looked up in r.Fields, where strings, numbers and booleans have a value
// and anything else (absent, null, objects, lists) has none. tag and message are always
// present. The result may alias r.Message or *num (scratch for numbers) and is valid until
// either changes.
func (k *fieldKey) value(r *event.Record, num *[]byte) (string, bool) {
	if k.Own() {
		if v := k.OwnValue(r); v != "" || k.always {
			return v, true
		}
	}
	v, ok := event.LookupField(r.Fields, k.Path)
	if !ok {
		return "", false
	}
	return scalarText(v, num)
}

// scalarText writes a Fields value as text: strings as they are, numbers and booleans as JSON
// writes them (numbers into *num). Other values have no text.
func scalarText(v any, num *[]byte) (string, bool) {
	var b []byte
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	case json.Number:
		return string(v), true
	case float64:
		b = strconv.AppendFloat((*num)[:0], v, 'f', -1, 64)
	case float32:
		b = strconv.AppendFloat((*num)[:0], float64(v), 'f', -1, 32)
	case int:
		b = strconv.AppendInt((*num)[:0], int64(v), 10)
	case int64:
		b = strconv.AppendInt((*num)[:0], v, 10)
	case int32:
		b = strconv.AppendInt((*num)[:0], int64(v), 10)
	case uint64:
		b = strconv.AppendUint((*num)[:0], v, 10)
	default:
		return "", false
	}
	*num = b
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}
