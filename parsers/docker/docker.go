// Package docker parses the files of docker's json-file logging driver, one JSON object a line:
//
//	{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}
//
// Keys may come in any order; other keys (such as "attrs") are skipped whatever their value.
// Docker splits a long line into 16 KiB pieces and only the last piece's "log" ends with "\n",
// so pieces are joined per stream until one ends with "\n".
package docker

import (
	"encoding/binary"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/parsers/internal/join"
	"github.com/skiff-logs/skiff/parsers/internal/timefmt"
)

// maxDepth bounds the nesting of skipped values, so a hostile line cannot exhaust the stack.
const maxDepth = 64

// Parser parses the lines of one json-file log. It implements the agent's tail.Parser contract.
// It is not safe for concurrent use.
type Parser struct {
	j   join.Joiner
	log []byte // the unescaped "log" value, when it had escapes
	aux []byte // unescaped keys and other strings, used and forgotten at once
}

// New returns a Parser whose joined messages are capped at maxBytes (1 MiB when maxBytes <= 0):
// the rest of a longer message is dropped and the record flagged event.FlagTruncated.
func New(maxBytes int) *Parser {
	return &Parser{j: join.New(maxBytes)}
}

// Parse consumes one line, without its newline, that starts at offset. It returns true when r
// holds a complete record and false when the line was a piece whose "log" does not end with
// "\n", kept until its stream's last piece arrives (stdout and stderr are joined separately).
//
// A complete record has the Time of its first piece, the Offset of its first piece, Stream
// event.StreamStdout or event.StreamStderr, and Message the unescaped "log" values joined, without
// the final "\n" (a "\r" before it is kept, as in the CRI parser, so the same application logs
// the same message under either runtime). A \u escape of a lone UTF-16 surrogate becomes U+FFFD
// and flags the record event.FlagInvalidUTF8, as encoding/json would replace it. r.Message
// aliases line or the Parser's buffers and is valid until the next call.
//
// A line that is not a JSON object with string "log", "stream" ("stdout" or "stderr") and "time"
// (RFC 3339) members, or has anything but white space after it, is a complete record on its
// own: the raw line as Message, event.FlagParseError, zero Time and empty Stream; pieces
// pending on either stream stay pending.
func (p *Parser) Parse(line []byte, offset int64, r *event.Record) bool {
	d, ok := p.decode(line)
	if !ok {
		p.j.Malformed(line, offset, r)
		return true
	}
	msg := d.log
	last := len(msg) > 0 && msg[len(msg)-1] == '\n'
	if last {
		msg = msg[:len(msg)-1]
	}
	return p.j.Add(d.stream, msg, last, offset, d.time, d.flags, r)
}

// PendingFrom reports the offset of the earliest piece still held, if any.
func (p *Parser) PendingFrom() (offset int64, ok bool) {
	return p.j.PendingFrom()
}

// Flush emits the pieces held for the stream whose first piece has the lowest offset as a
// complete record flagged event.FlagTruncated (the piece ending with "\n" never arrived), with
// the Time and Offset of its first piece, and returns true; it returns false when nothing is
// held. The reader calls it until it returns false when the file ends for good, so no piece is
// lost. r.Message aliases the Parser's buffer and is valid until the next call.
func (p *Parser) Flush(r *event.Record) bool {
	return p.j.Flush(r)
}

type decoded struct {
	log    []byte
	stream join.Stream
	time   time.Time
	flags  event.Flags
}

func (p *Parser) decode(b []byte) (d decoded, ok bool) {
	var haveLog, haveStream, haveTime bool
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return d, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return d, false // no members, so none of the three we need
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return d, false
		}
		var key []byte
		key, p.aux, i, _, ok = readString(b, i, p.aux)
		if !ok {
			return d, false
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
			return d, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return d, false
		}
		switch {
		case string(key) == "log":
			if b[i] != '"' {
				return d, false
			}
			var repl bool
			d.log, p.log, i, repl, ok = readString(b, i, p.log)
			d.flags = 0
			if repl {
				d.flags = event.FlagInvalidUTF8
			}
			haveLog = true
		case string(key) == "stream" || string(key) == "time":
			isStream := key[0] == 's' // read now: key may alias p.aux, which v overwrites
			var v []byte
			if b[i] != '"' {
				return d, false
			}
			if v, p.aux, i, _, ok = readString(b, i, p.aux); !ok {
				return d, false
			}
			switch {
			case !isStream:
				d.time, ok = timefmt.Parse(v)
				haveTime = ok
			case string(v) == event.StreamStdout:
				d.stream, haveStream = join.Stdout, true
			case string(v) == event.StreamStderr:
				d.stream, haveStream = join.Stderr, true
			default:
				return d, false
			}
		default:
			i, ok = p.skipValue(b, i, 0)
		}
		if !ok {
			return d, false
		}
		if i = skipSpace(b, i); i >= len(b) {
			return d, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return d, false
		}
		i = skipSpace(b, i+1)
	}
	if skipSpace(b, i+1) != len(b) {
		return d, false
	}
	return d, haveLog && haveStream && haveTime
}

// skipValue checks the JSON value at b[i] and returns the index just after it.
func (p *Parser) skipValue(b []byte, i, depth int) (int, bool) {
	switch c := b[i]; c {
	case '"':
		var ok bool
		_, p.aux, i, _, ok = readString(b, i, p.aux)
		return i, ok
	case '{', '[':
		if depth >= maxDepth {
			return i, false
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == closer {
			return i + 1, true
		}
		for {
			if i >= len(b) {
				return i, false
			}
			if c == '{' {
				if b[i] != '"' {
					return i, false
				}
				var ok bool
				if _, p.aux, i, _, ok = readString(b, i, p.aux); !ok {
					return i, false
				}
				if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
					return i, false
				}
				if i = skipSpace(b, i+1); i >= len(b) {
					return i, false
				}
			}
			var ok bool
			if i, ok = p.skipValue(b, i, depth+1); !ok {
				return i, false
			}
			if i = skipSpace(b, i); i >= len(b) {
				return i, false
			}
			if b[i] == closer {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipSpace(b, i+1)
		}
	case 't':
		return skipLiteral(b, i, "true")
	case 'f':
		return skipLiteral(b, i, "false")
	case 'n':
		return skipLiteral(b, i, "null")
	}
	return skipNumber(b, i)
}

func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// skipNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func skipNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i]-'0' <= 9 {
		i++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// special marks the bytes that end a run of plain string content: the quote, the backslash and
// the control characters JSON forbids unescaped.
var special = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// plainRun returns the index of the first special byte in b[i:], or len(b). It tests eight bytes
// at a time (SWAR): a word holds a special byte when one of its bytes is below 0x20, or equal to
// '"' or '\\' (zero after XOR). The "has zero byte" test is exact about whether a word has one,
// so a word that reports one is rescanned byte by byte.
func plainRun(b []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ ('"' * ones)
		bs := x ^ ('\\' * ones)
		if ((x-0x20*ones)&^x|(q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
			break
		}
	}
	for i < len(b) && !special[b[i]] {
		i++
	}
	return i
}

// readString reads the JSON string whose opening quote is b[i]. It returns its value, which
// aliases b when the string has no escapes and is otherwise decoded into buf[:0]; buf, possibly
// grown; the index after the closing quote; whether a lone surrogate was replaced by U+FFFD; and
// false if the string is not valid JSON (unterminated, a control character, a bad escape).
func readString(b []byte, i int, buf []byte) (val, bufOut []byte, next int, repl, ok bool) {
	start := i + 1
	j := plainRun(b, start)
	if j < len(b) && b[j] == '"' {
		return b[start:j], buf, j + 1, false, true
	}
	buf = append(buf[:0], b[start:j]...)
	for j < len(b) {
		switch c := b[j]; {
		case c == '"':
			return buf, buf, j + 1, repl, true
		case c < 0x20:
			return nil, buf, j, false, false
		case c != '\\':
			k := plainRun(b, j+1)
			buf = append(buf, b[j:k]...)
			j = k
			continue
		}
		if j+1 >= len(b) {
			return nil, buf, j, false, false
		}
		switch e := b[j+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(b, j+2)
			if !ok {
				return nil, buf, j, false, false
			}
			j += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(0), false
				if j+1 < len(b) && b[j] == '\\' && b[j+1] == 'u' {
					r2, ok2 = hex4(b, j+2)
				}
				if ok2 {
					if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
						r = pair
						j += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
				if r == utf8.RuneError {
					repl = true
				}
			}
			buf = utf8.AppendRune(buf, r)
			continue
		default:
			return nil, buf, j, false, false
		}
		j += 2
	}
	return nil, buf, j, false, false
}

// hex4 reads the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if len(b)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
