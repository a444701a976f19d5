// Package cri parses the container log files the kubelet's runtime (containerd, CRI-O) writes:
//
//	<RFC 3339 timestamp> <stdout|stderr> <tag> <message>
//
// where tag is "P" for a partial line (the runtime split a long line; more follows) or "F" for
// the full line or its last part, optionally followed by ":"-separated extra tags, which are
// ignored. The message may be empty, with or without the space before it.
package cri

import (
	"bytes"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/parsers/internal/join"
	"github.com/skiff-logs/skiff/parsers/internal/timefmt"
)

// Parser parses the lines of one CRI log file. It implements the agent's tail.Parser contract.
// It is not safe for concurrent use.
type Parser struct {
	j join.Joiner
}

// New returns a Parser whose joined messages are capped at maxBytes (1 MiB when maxBytes <= 0):
// the rest of a longer message is dropped and the record flagged event.FlagTruncated.
func New(maxBytes int) *Parser {
	return &Parser{j: join.New(maxBytes)}
}

// Parse consumes one line, without its newline, that starts at offset. It returns true when r
// holds a complete record and false when the line was a "P" fragment kept until its stream's
// "F" line arrives (stdout and stderr are joined separately).
//
// A complete record has the Time of its first fragment (the moment the application started the
// line), the Offset of its first fragment, Stream event.StreamStdout or event.StreamStderr, and
// Message the fragments' messages joined byte for byte (a UTF-8 sequence split between fragments
// comes out whole; the message is not checked for valid UTF-8 here). A "\r" before the newline is
// part of the message, as the runtime wrote it. r.Message aliases line or the Parser's buffer
// and is valid until the next call.
//
// A line that does not match the format (timestamp, stream, tag, or missing fields) is a
// complete record on its own: the raw line as Message, event.FlagParseError, zero Time and empty
// Stream; fragments pending on either stream stay pending.
func (p *Parser) Parse(line []byte, offset int64, r *event.Record) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		p.j.Malformed(line, offset, r)
		return true
	}
	t, ok := timefmt.Parse(line[:sp])
	rest := line[sp+1:]
	if !ok || len(rest) < len("stdout F") || rest[6] != ' ' {
		p.j.Malformed(line, offset, r)
		return true
	}
	var s join.Stream
	switch string(rest[:6]) {
	case event.StreamStdout:
		s = join.Stdout
	case event.StreamStderr:
		s = join.Stderr
	default:
		p.j.Malformed(line, offset, r)
		return true
	}
	rest = rest[7:]
	// The tag is rest[0] (P or F), then optional ":extra" tags up to the space before the message.
	var msg []byte
	if end := bytes.IndexByte(rest, ' '); end >= 0 {
		rest, msg = rest[:end], rest[end+1:]
	} else {
		msg = rest[len(rest):]
	}
	if len(rest) == 0 || len(rest) > 1 && rest[1] != ':' || rest[0] != 'F' && rest[0] != 'P' {
		p.j.Malformed(line, offset, r)
		return true
	}
	return p.j.Add(s, msg, rest[0] == 'F', offset, t, 0, r)
}

// PendingFrom reports the offset of the earliest "P" fragment still held, if any.
func (p *Parser) PendingFrom() (offset int64, ok bool) {
	return p.j.PendingFrom()
}

// Flush emits the "P" fragments held for the stream whose first fragment has the lowest offset
// as a complete record flagged event.FlagTruncated (its "F" line never arrived), with the Time and
// Offset of its first fragment, and returns true; it returns false when nothing is held. The
// reader calls it until it returns false when the file ends for good, so no fragment is lost.
// r.Message aliases the Parser's buffer and is valid until the next call.
func (p *Parser) Flush(r *event.Record) bool {
	return p.j.Flush(r)
}
