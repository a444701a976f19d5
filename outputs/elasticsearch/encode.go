package elasticsearch

import (
	"encoding/json"
	"strings"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/outputs/document"
	"github.com/skiff-logs/skiff/outputs/template"
)

// encoder builds bulk items. One per worker: it caches the last index name.
type encoder struct {
	index *template.Template
	// timeOnly: the index template has no {…} placeholder, so the name depends on the record
	// time alone, and at most to the second; records of the same second share it.
	timeOnly bool
	cached   bool
	sec      int64
	name     []byte
}

func newEncoder(index *template.Template) *encoder {
	return &encoder{index: index, timeOnly: !strings.Contains(index.String(), "{")}
}

// appendItem appends r's two bulk lines to dst:
//
//	{"create":{"_index":"<index>","_id":"<id>"}}
//	<document>
//
// create (not index) makes a replayed record a 409 instead of a second copy.
func (e *encoder) appendItem(dst []byte, r *event.Record) []byte {
	dst = append(dst, `{"create":{"_index":"`...)
	if e.timeOnly {
		if sec := r.Time.Unix(); !e.cached || sec != e.sec {
			e.name = e.index.Append(e.name[:0], r)
			e.sec, e.cached = sec, true
		}
		dst = append(dst, e.name...)
	} else {
		dst = e.index.Append(dst, r)
	}
	dst = append(dst, `","_id":`...)
	dst = appendRecordID(dst, r)
	dst = append(dst, "}}\n"...)
	dst = document.Append(dst, r)
	return append(dst, '\n')
}

// appendRecordID appends r's document id as a JSON string. Ids derived from file identity and
// offset never need escaping; an explicit Record.ID might, which takes the slow path.
func appendRecordID(dst []byte, r *event.Record) []byte {
	dst = append(dst, '"')
	start := len(dst)
	dst = r.AppendID(dst)
	for _, c := range dst[start:] {
		if c < 0x20 || c == '"' || c == '\\' {
			return appendQuoted(dst[:start-1], string(dst[start:]))
		}
	}
	return append(dst, '"')
}

// appendQuoted appends s as a JSON string. It allocates: for rare and slow paths only.
func appendQuoted(dst []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(dst, q...)
}

// documentOf returns the document line of an encoded bulk item (its second line, without the
// newline).
func documentOf(item []byte) []byte {
	for i, c := range item {
		if c == '\n' {
			return item[i+1 : len(item)-1]
		}
	}
	return nil
}

// actionOf returns the action line of an encoded bulk item (its first line, without the
// newline).
func actionOf(item []byte) []byte {
	for i, c := range item {
		if c == '\n' {
			return item[:i]
		}
	}
	return item
}
