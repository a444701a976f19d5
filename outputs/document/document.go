// Package document encodes records as the JSON documents skiff writes to Elasticsearch and to
// gzip files. Both outputs use it, so a document looks the same wherever it lands.
//
// A document has this shape (one line; optional values are omitted when empty):
//
//	{"@timestamp":"2024-01-02T03:04:05.123Z","@timestamp_nanos":"2024-01-02T03:04:05.123456789Z",
//	 "message":"...","stream":"stdout","tag":"kube.ns.pod.c",
//	 "log":{"file":{"path":"/var/log/containers/x.log"},"offset":123},
//	 "kubernetes":{"namespace":"ns","namespace_labels":{...},"pod":{"name":"p","uid":"u","ip":"10.0.0.1"},
//	   "labels":{...},"annotations":{...},"container":{"name":"c","image":"nginx:1","init":true},
//	   "node":{"name":"n"}},
//	 "container":{"id":"abc"},"skiff":{"parse_error":true,"truncated":true,"invalid_utf8":true},
//	 ...Fields}
//
// Field names follow ECS so that Kibana's Discover and Logs views work without setup.
package document

import (
	"time"
	"unsafe"

	"github.com/skiff-logs/skiff/agent/event"
)

// Append appends r's JSON document (one line, no trailing newline) to dst and returns it.
//
// The encoding is deterministic: the fixed fields come first in the order shown in the package
// comment, then r.Fields in sorted key order (nested maps sorted too). Rules:
//
//   - @timestamp is r.Time in UTC with exactly 3 fractional digits (truncated, not rounded),
//     @timestamp_nanos the same instant with 9; years outside 0..9999 fall back to time's own
//     RFC 3339 formatting.
//   - message, stream and tag are always present (stream may be "").
//   - log (log.file.path and log.offset) is written only for records read from a file, that is
//     when r.Source is set and has a Path. kubernetes.* and container.id are written from r.Kube
//     when it is set (label and annotation maps in sorted key order, kubernetes.container.init
//     only for init containers), else from what r.Source tells (namespace, pod name and uid,
//     container name and id); empty values are left out. skiff.* holds only the flags that are
//     set.
//   - A top-level Fields key equal to one of the fixed top-level keys (@timestamp,
//     @timestamp_nanos, message, stream, tag, log, kubernetes, container, skiff) is written as
//     "fields_<key>" (with more "fields_" prefixes if that key exists too), so a document never
//     has duplicate keys. To add to a fixed object, use a dotted key instead
//     (e.g. "kubernetes.labels"), which Elasticsearch merges into the object.
//   - Strings are escaped for JSON; invalid UTF-8 is replaced by U+FFFD, so the output is always
//     valid JSON. U+2028 and U+2029 are escaped as well.
//   - Field values may be nil, bool, string, float64/float32, any Go integer type, json.Number,
//     []byte (as a string), map[string]any, map[string]string, []any and []string; anything else
//     is encoded with json-iterator (or, should that fail, as its fmt %v text). NaN and ±Inf
//     are written as null, since JSON has no such numbers.
//
// Append does not allocate for records whose Fields are nil once dst has room for the document,
// except once per Kube value, whose encoding is made on first use and kept in it
// (Kube.SetEncoded). It only reads r (and fills that cache) and may be called concurrently for
// the same record.
func Append(dst []byte, r *event.Record) []byte {
	dst = append(dst, `{"@timestamp":"`...)
	dst = appendTime(dst, r.Time, 3)
	dst = append(dst, `","@timestamp_nanos":"`...)
	dst = appendTime(dst, r.Time, 9)
	dst = append(dst, `","message":`...)
	dst = appendString(dst, bytesToString(r.Message))
	dst = append(dst, `,"stream":`...)
	dst = appendString(dst, r.Stream)
	dst = append(dst, `,"tag":`...)
	dst = appendString(dst, r.Tag)
	if s := r.Source; s != nil && s.Path != "" {
		dst = appendLog(dst, s.Path, r.Offset)
	}
	if k := r.Kube; k != nil {
		dst = appendKube(dst, k)
	} else if s := r.Source; s != nil {
		dst = appendSource(dst, s)
	}
	if r.Flags != 0 {
		dst = appendFlags(dst, r.Flags)
	}
	if len(r.Fields) > 0 {
		dst = appendTopFields(dst, r.Fields)
	}
	return append(dst, '}')
}

// bytesToString views b as a string without copying. The string is only read during the call
// that receives it and never kept.
func bytesToString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func appendLog(dst []byte, path string, offset int64) []byte {
	dst = append(dst, `,"log":{"file":{"path":`...)
	dst = appendString(dst, path)
	dst = append(dst, `},"offset":`...)
	dst = appendInt(dst, offset)
	return append(dst, '}')
}

// appendSource writes the Kubernetes facts a file's path tells, for records without r.Kube.
func appendSource(dst []byte, s *event.Source) []byte {
	if s.Namespace != "" || s.PodName != "" || s.PodUID != "" || s.Container != "" {
		dst = append(dst, `,"kubernetes":{`...)
		sep := false
		if s.Namespace != "" {
			dst = append(dst, `"namespace":`...)
			dst = appendString(dst, s.Namespace)
			sep = true
		}
		if s.PodName != "" || s.PodUID != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"pod":{`...)
			if s.PodName != "" {
				dst = append(dst, `"name":`...)
				dst = appendString(dst, s.PodName)
			}
			if s.PodUID != "" {
				if s.PodName != "" {
					dst = append(dst, ',')
				}
				dst = append(dst, `"uid":`...)
				dst = appendString(dst, s.PodUID)
			}
			dst = append(dst, '}')
			sep = true
		}
		if s.Container != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"container":{"name":`...)
			dst = appendString(dst, s.Container)
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}
	if s.ContainerID != "" {
		dst = append(dst, `,"container":{"id":`...)
		dst = appendString(dst, s.ContainerID)
		dst = append(dst, '}')
	}
	return dst
}

func appendFlags(dst []byte, f event.Flags) []byte {
	dst = append(dst, `,"skiff":{`...)
	sep := false
	for _, fl := range [...]struct {
		flag event.Flags
		key  string
	}{
		{event.FlagParseError, `"parse_error":true`},
		{event.FlagTruncated, `"truncated":true`},
		{event.FlagInvalidUTF8, `"invalid_utf8":true`},
	} {
		if f&fl.flag == 0 {
			continue
		}
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, fl.key...)
		sep = true
	}
	return append(dst, '}')
}

// appendTime writes t in UTC as RFC 3339 with exactly digits (3 or 9) fractional digits,
// truncating like time.Format does.
func appendTime(dst []byte, t time.Time, digits int) []byte {
	const secsPerDay = 86400
	secs := t.Unix()
	days := secs / secsPerDay
	sod := secs % secsPerDay
	if sod < 0 {
		sod += secsPerDay
		days--
	}
	year, month, day := civilFromDays(days)
	if year < 0 || year > 9999 {
		if digits == 3 {
			return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		}
		return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000000Z07:00")
	}
	hour, minute, sec := int(sod/3600), int(sod/60%60), int(sod%60)

	var buf [30]byte
	b := buf[:0]
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append2(b, month)
	b = append(b, '-')
	b = append2(b, day)
	b = append(b, 'T')
	b = append2(b, hour)
	b = append(b, ':')
	b = append2(b, minute)
	b = append(b, ':')
	b = append2(b, sec)
	b = append(b, '.')
	ns := t.Nanosecond()
	var frac [9]byte
	for i := 8; i >= 0; i-- {
		frac[i] = byte('0' + ns%10)
		ns /= 10
	}
	b = append(b, frac[:digits]...)
	b = append(b, 'Z')
	return append(dst, b...)
}

func append2(b []byte, v int) []byte {
	return append(b, byte('0'+v/10), byte('0'+v%10))
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian date, using the
// era-based algorithm (400-year eras of 146097 days, years starting in March).
func civilFromDays(z int64) (year, month, day int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100) // [0, 365]
	mp := (5*doy + 2) / 153                  // [0, 11], March-based
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	if y < -1<<31 || y > 1<<31-1 {
		return -1, int(m), int(d)
	}
	return int(y), int(m), int(d)
}
