// Package parsers picks the line parser for a container log file.
package parsers

import (
	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/parsers/cri"
	"github.com/skiff-logs/skiff/parsers/docker"
)

// Parser is the agent's tail.Parser contract, repeated so that this package needs only
// agent/event: Parse turns one line at a byte offset into a complete record (true) or keeps it
// as a fragment (false); PendingFrom reports the earliest fragment's offset still held; Flush
// emits the earliest held fragment group as a record flagged event.FlagTruncated (true), or
// reports that nothing is held (false).
type Parser interface {
	Parse(line []byte, offset int64, r *event.Record) bool
	PendingFrom() (int64, bool)
	Flush(r *event.Record) bool
}

var (
	_ Parser = (*cri.Parser)(nil)
	_ Parser = (*docker.Parser)(nil)
)

// Detect returns a new parser for a file whose first line is firstLine: docker json-file when
// its first byte that is not white space is '{', else CRI. maxBytes caps joined messages (see
// cri.New and docker.New). firstLine is not parsed; the caller feeds it to Parse like any other.
func Detect(firstLine []byte, maxBytes int) Parser {
	for _, c := range firstLine {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return docker.New(maxBytes)
		}
		break
	}
	return cri.New(maxBytes)
}
