// Package join holds what the CRI and docker parsers share: joining a stream's fragments into one
// record (CRI "P" lines, docker's 16 KiB pieces), capping messages at maxBytes, and the raw
// record for a line that does not parse.
package join

import (
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

// DefaultMaxBytes is the message cap used when a parser is given maxBytes <= 0.
const DefaultMaxBytes = 1 << 20

// keepCap is the largest join buffer kept between records; a bigger one (left by an unusually
// long joined record) is dropped so that one huge line does not pin its memory forever.
const keepCap = 64 << 10

// Stream names one of the two output streams of a container.
type Stream uint8

// The streams, in the order the Joiner keeps their pending fragments.
const (
	Stdout Stream = iota
	Stderr
)

// Name returns the event.StreamStdout or event.StreamStderr constant (no allocation).
func (s Stream) Name() string {
	if s == Stderr {
		return event.StreamStderr
	}
	return event.StreamStdout
}

// Joiner joins the fragments of one file's records, separately per stream. The zero value is
// not usable; call New. A Joiner is not safe for concurrent use.
type Joiner struct {
	max     int
	pending [2]pending
}

type pending struct {
	buf    []byte
	offset int64
	time   time.Time
	flags  event.Flags
	active bool
}

// New returns a Joiner that caps joined messages at maxBytes (DefaultMaxBytes when <= 0).
func New(maxBytes int) Joiner {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return Joiner{max: maxBytes}
}

// Add takes one piece of stream s read from the line at offset, with the time that line
// carries and the flags its parsing raised. When last is false the piece is kept (up to the cap)
// and Add returns false, leaving r alone. When last is true Add fills r's Time, Stream, Message,
// Flags and Offset with the joined record and returns true: Time and Offset are those of the
// record's first piece, Flags the union of its pieces' flags plus event.FlagTruncated if the cap
// cut it. r.Message aliases piece (a record of one piece) or the Joiner's buffer, and is valid
// until the next call.
func (j *Joiner) Add(s Stream, piece []byte, last bool, offset int64, t time.Time, flags event.Flags, r *event.Record) bool {
	p := &j.pending[s&1]
	if !p.active {
		if last {
			msg, cut := Cap(piece, j.max)
			if cut {
				flags |= event.FlagTruncated
			}
			fill(r, t, s.Name(), msg, flags, offset)
			return true
		}
		p.active, p.offset, p.time, p.flags, p.buf = true, offset, t, 0, p.buf[:0]
	}
	p.flags |= flags
	if room := j.max - len(p.buf); len(piece) > room {
		piece = piece[:room]
		p.flags |= event.FlagTruncated
	}
	p.buf = append(p.buf, piece...)
	if !last {
		return false
	}
	j.complete(s, r)
	return true
}

// complete fills r with the record of stream s's held pieces and forgets them.
func (j *Joiner) complete(s Stream, r *event.Record) {
	p := &j.pending[s&1]
	msg := p.buf
	if p.flags&event.FlagTruncated != 0 {
		msg = trimIncomplete(msg)
	}
	fill(r, p.time, s.Name(), msg, p.flags, p.offset)
	p.active = false
	if cap(p.buf) > keepCap {
		p.buf = nil // r.Message still holds the array until the caller is done with it
	}
}

// earliest returns the stream whose held pieces start first in the file, if any is held.
func (j *Joiner) earliest() (Stream, bool) {
	a, b := &j.pending[Stdout], &j.pending[Stderr]
	switch {
	case a.active && (!b.active || a.offset <= b.offset):
		return Stdout, true
	case b.active:
		return Stderr, true
	}
	return Stdout, false
}

// PendingFrom reports the offset of the earliest piece still held, if any.
func (j *Joiner) PendingFrom() (offset int64, ok bool) {
	s, ok := j.earliest()
	if !ok {
		return 0, false
	}
	return j.pending[s].offset, true
}

// Flush fills r with the held pieces of the stream whose first piece has the lowest offset, as
// a complete record whose end never arrived: Time and Offset of its first piece, the pieces
// joined as Message (a UTF-8 sequence left incomplete at its end is dropped), Flags the union of
// its pieces' flags plus event.FlagTruncated. It returns true, or false when nothing is held
// (r is then left alone). r.Message aliases the Joiner's buffer and is valid until the next
// call. Called until it returns false, it empties the Joiner in offset order.
func (j *Joiner) Flush(r *event.Record) bool {
	s, ok := j.earliest()
	if !ok {
		return false
	}
	j.pending[s].flags |= event.FlagTruncated
	j.complete(s, r)
	return true
}

// Malformed fills r with the record for a line that did not parse: the raw line (capped at
// the Joiner's maximum, flagged event.FlagTruncated if cut) as Message, event.FlagParseError, zero Time (the
// reader sets the read time), empty Stream, and the line's offset. Pending fragments are not
// affected.
func (j *Joiner) Malformed(line []byte, offset int64, r *event.Record) {
	msg, cut := Cap(line, j.max)
	flags := event.FlagParseError
	if cut {
		flags |= event.FlagTruncated
	}
	fill(r, time.Time{}, "", msg, flags, offset)
}

func fill(r *event.Record, t time.Time, stream string, msg []byte, flags event.Flags, offset int64) {
	r.Time, r.Stream, r.Message, r.Flags, r.Offset = t, stream, msg, flags, offset
}

// Cap returns b cut to at most maxBytes and whether it was cut. A cut never splits a UTF-8
// sequence: it backs off to the sequence's first byte, so the result may be up to 3 bytes shorter
// than maxBytes.
func Cap(b []byte, maxBytes int) ([]byte, bool) {
	if len(b) <= maxBytes {
		return b, false
	}
	return trimIncomplete(b[:max(maxBytes, 0)]), true
}

// trimIncomplete drops a UTF-8 sequence left incomplete at the end of b by a cut. Bytes that
// are invalid UTF-8 anyway are left for the reader to replace.
func trimIncomplete(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		c := b[i]
		switch {
		case c < 0x80:
			return b
		case c < 0xC0:
			continue // continuation byte: look for its lead
		case c < 0xE0:
			return cutIfShort(b, i, 2)
		case c < 0xF0:
			return cutIfShort(b, i, 3)
		default:
			return cutIfShort(b, i, 4)
		}
	}
	return b
}

func cutIfShort(b []byte, lead, need int) []byte {
	if len(b)-lead < need {
		return b[:lead]
	}
	return b
}
