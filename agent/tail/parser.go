package tail

import "github.com/skiff-logs/skiff/agent/event"

// Parser turns the lines of one file into records. There is one Parser per file; it is not safe
// for concurrent use.
type Parser interface {
	// Parse consumes one line, without its trailing newline, that starts at byte offset in the
	// file. It returns true when r now holds a complete record (Time, Stream, Message, Flags, and
	// Offset: the offset of its first fragment); r.Message may alias line or the parser's own
	// memory and is valid only until the next call. It returns false when the line was a
	// fragment the parser keeps until the rest arrives (CRI "P" lines, docker pieces without a
	// trailing "\n"); fragments are joined per stream, since stdout and stderr may interleave.
	// A malformed line is a complete record: the raw line as Message, with
	// event.FlagParseError set. Parse never panics, whatever the bytes.
	Parse(line []byte, offset int64, r *event.Record) bool
	// PendingFrom reports the offset of the earliest fragment still held, if any. The reader
	// never commits a position past it, so a crash re-reads the whole pending record.
	PendingFrom() (offset int64, ok bool)
	// Flush emits the earliest held fragment group (lowest offset) as a complete record, flagged
	// event.FlagTruncated (its end never arrived), and returns true; it returns false when
	// nothing is held, leaving r alone. The record is filled as by Parse (Time and Offset of its
	// first fragment; r.Message valid until the next call). The reader calls it repeatedly when
	// a file is finished for good (rotated away or deleted, and drained), so no fragment is
	// lost; once it returns false, PendingFrom reports nothing held.
	Flush(r *event.Record) bool
}

// NewParser chooses and creates the parser for a file from its first line (e.g. '{' → docker
// json-file, else CRI). maxBytes caps the length of a joined message: the rest is dropped and
// the record flagged event.FlagTruncated.
type NewParser func(firstLine []byte, maxBytes int) Parser
