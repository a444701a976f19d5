// Package event holds the types every stage of skiff shares: the Record that flows forward, the
// Ack that carries delivery back to the positions tracker, and the Batch an output receives.
//
// It imports nothing of skiff's own, so parsers and outputs depend only on it.
package event

import (
	"time"
)

// Flags mark what happened to a record on its way in. They are written into documents so that a
// reader in Kibana can find lines skiff had to change.
type Flags uint8

const (
	// FlagParseError: the line did not match its format; Message holds the raw line.
	FlagParseError Flags = 1 << iota
	// FlagTruncated: the line was longer than max_line_bytes; Message holds its first part.
	FlagTruncated
	// FlagInvalidUTF8: invalid UTF-8 sequences in Message were replaced by U+FFFD.
	FlagInvalidUTF8
)

// Source describes the file a record was read from. One Source is shared, read-only, by all
// records of a reader, so it must never be modified after the reader is created.
type Source struct {
	// Path is the path the file was discovered under (log.file.path).
	Path string
	// Tag is the record's initial tag, e.g. kube.<namespace>.<pod>.<container>.
	Tag string
	// IDPrefix makes document ids unique per file identity (device, inode, fingerprint and
	// truncation generation); a record's id is IDPrefix + "-" + hex(Offset).
	IDPrefix string

	// Kubernetes facts known from the file's path alone; empty when the path does not say.
	Namespace   string
	PodName     string
	PodUID      string
	Container   string
	ContainerID string
}

// Stream values as written by the kubelet.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Record is one log event on its way from a file (or another input) to the outputs.
//
// A Record is owned by the Chunk it was read into. Outputs may read it until they call
// Batch.Done, and must not keep references to it (or to Message) afterwards.
type Record struct {
	// Time is the time the log line carries (or the read time when it carries none).
	Time time.Time
	// Stream is "stdout", "stderr" or empty.
	Stream string
	// Message is the log line's text, valid UTF-8 after the reader has checked it.
	Message []byte
	Flags   Flags
	// Tag routes the record; it starts as Source.Tag and rewrite rules may change it.
	Tag    string
	Source *Source
	// Kube, when set, is the container's metadata from the Kubernetes API; it supersedes the
	// Kubernetes facts of Source. Shared by many records: read-only.
	Kube *Kube
	// Offset is the byte offset of the record's first line in its file (log.offset).
	Offset int64
	// ID, when set, is the document id to use instead of the one derived from Source and
	// Offset (audit events use auditID + stage).
	ID string
	// Fields holds structured fields beyond the fixed ones (parsed JSON, audit events, fields set
	// by record rules). Keys may be dotted paths only as produced by Set. Nil for plain lines.
	Fields map[string]any
	// Ack is completed once per output the record was given to.
	Ack *Ack
}

// AppendID appends the record's deterministic document id to dst: r.ID when set, else
// Source.IDPrefix, '-', and Offset in lower-case hex. The same line of the same file always gets
// the same id, so a replay is recognised by Elasticsearch (409 on create) instead of duplicated.
func (r *Record) AppendID(dst []byte) []byte {
	if r.ID != "" {
		return append(dst, r.ID...)
	}
	if r.Source != nil {
		dst = append(dst, r.Source.IDPrefix...)
	}
	dst = append(dst, '-')
	return appendHex(dst, uint64(r.Offset))
}

func appendHex(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	var buf [16]byte
	i := len(buf)
	for {
		i--
		buf[i] = digits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}

// Chunk is a group of consecutive records read from one file together, with the Ack that tracks
// their delivery. Its records are in file order.
type Chunk struct {
	Records []Record
	Ack     *Ack
}
