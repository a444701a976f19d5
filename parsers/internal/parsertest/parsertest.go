// Package parsertest holds the test harness the line parsers share: feeding a file's lines with
// their offsets, golden files, and the invariants every fuzz test checks. Only tests import it.
package parsertest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Parser is the tail.Parser contract (repeated here so tests need not import agent/tail).
type Parser interface {
	Parse(line []byte, offset int64, r *event.Record) bool
	PendingFrom() (int64, bool)
	Flush(r *event.Record) bool
}

// Rec is the readable rendering of a record used by table tests and golden files.
type Rec struct {
	Offset  int64    `json:"offset"`
	Time    string   `json:"time,omitempty"`
	Stream  string   `json:"stream,omitempty"`
	Message string   `json:"message"`
	Flags   []string `json:"flags,omitempty"`
}

// Result is what a parser made of a whole input.
type Result struct {
	Records []Rec `json:"records"`
	// PendingFrom is the parser's PendingFrom after the last line, or -1 when nothing is held.
	PendingFrom int64 `json:"pending_from"`
}

// Render turns r into a Rec. Time is written in UTC with RFC3339Nano, empty when zero.
func Render(r *event.Record) Rec {
	out := Rec{Offset: r.Offset, Stream: r.Stream, Message: string(r.Message)}
	if !r.Time.IsZero() {
		out.Time = r.Time.UTC().Format(time.RFC3339Nano)
	}
	for _, f := range []struct {
		bit  event.Flags
		name string
	}{{event.FlagParseError, "parse_error"}, {event.FlagTruncated, "truncated"}, {event.FlagInvalidUTF8, "invalid_utf8"}} {
		if r.Flags&f.bit != 0 {
			out.Flags = append(out.Flags, f.name)
		}
	}
	return out
}

// Run feeds input to p line by line as a file reader would: lines end at '\n', which is not
// passed, offsets count from 0, and a last line without '\n' is not fed (a reader waits for it).
func Run(p Parser, input []byte) Result {
	var res Result
	var r event.Record
	var off int64
	for {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			break
		}
		if p.Parse(input[:i], off, &r) {
			res.Records = append(res.Records, Render(&r))
		}
		off += int64(i) + 1
		input = input[i+1:]
	}
	res.PendingFrom = -1
	if o, ok := p.PendingFrom(); ok {
		res.PendingFrom = o
	}
	return res
}

// FlushAll calls p.Flush until it returns false and returns the records it emitted.
func FlushAll(p Parser) []Rec {
	var out []Rec
	var r event.Record
	for p.Flush(&r) {
		out = append(out, Render(&r))
	}
	return out
}

// Golden runs every testdata/*.log through a new parser and compares the result with
// testdata/<name>.golden.json; with -update it rewrites the golden files instead.
func Golden(t *testing.T, newParser func() Parser) {
	t.Helper()
	GoldenFiles(t, func(t *testing.T, data []byte) any { return Run(newParser(), data) })
}

// GoldenFiles renders every testdata/*.log with render and compares the indented JSON with
// testdata/<name>.golden.json; with -update it rewrites the golden files instead. Parsers whose
// records carry more than Rec shows (ids, fields) use it with their own rendering.
func GoldenFiles(t *testing.T, render func(t *testing.T, data []byte) any) {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.log inputs")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			if err := enc.Encode(render(t, data)); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := strings.TrimSuffix(in, ".log") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run with -update if the change is intended):\n%s", in, golden, got)
			}
		})
	}
}

// Check feeds data, split into lines as Run does, to p, whose message cap is maxBytes, and fails
// t when a Parser contract invariant breaks:
//   - PendingFrom never moves backwards while fragments are held, and is at most the offset of
//     the line just parsed;
//   - a complete record's Offset is at most its line's offset, and not before the pending
//     offset reported before that line when it belongs to a pending join;
//   - len(Message) <= maxBytes, and only records flagged truncated were cut (by at most 3 bytes
//     below the cap, to keep UTF-8 sequences whole);
//   - a parse-error record is its own line: Offset is the line's, Message the raw line (up to
//     the cap), Stream empty and Time zero;
//   - after the last line, Flush emits the held fragment groups at the offset PendingFrom
//     reported before each call (so in increasing offset order), flagged truncated and not
//     parse errors, with a stream and at most maxBytes; once it returns false, PendingFrom
//     reports nothing held and Flush keeps returning false.
func Check(t *testing.T, p Parser, data []byte, maxBytes int) {
	t.Helper()
	var r event.Record
	var off int64
	lastPending, hadPending := int64(0), false
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			i = len(data)
		}
		line := data[:i]
		complete := p.Parse(line, off, &r)
		if complete {
			if r.Offset > off || r.Offset < 0 {
				t.Fatalf("line at %d: record offset %d", off, r.Offset)
			}
			if r.Offset < off && (!hadPending || r.Offset < lastPending) {
				t.Fatalf("line at %d: record offset %d, but pending was %d (held %v)", off, r.Offset, lastPending, hadPending)
			}
			if len(r.Message) > maxBytes {
				t.Fatalf("line at %d: message of %d bytes, cap %d", off, len(r.Message), maxBytes)
			}
			if r.Flags&event.FlagTruncated != 0 && len(r.Message) < maxBytes-3 {
				t.Fatalf("line at %d: truncated message of %d bytes, cap %d", off, len(r.Message), maxBytes)
			}
			if r.Flags&event.FlagParseError != 0 {
				if r.Offset != off || r.Stream != "" || !r.Time.IsZero() {
					t.Fatalf("line at %d: parse-error record %+v", off, Render(&r))
				}
				want := line
				if r.Flags&event.FlagTruncated != 0 {
					if len(line) <= maxBytes {
						t.Fatalf("line at %d: %d bytes flagged truncated, cap %d", off, len(line), maxBytes)
					}
					want = line[:len(r.Message)]
				}
				if !bytes.Equal(r.Message, want) {
					t.Fatalf("line at %d: parse-error message %q, line %q", off, r.Message, line)
				}
			} else if r.Stream != event.StreamStdout && r.Stream != event.StreamStderr {
				t.Fatalf("line at %d: stream %q", off, r.Stream)
			}
		}
		pend, ok := p.PendingFrom()
		if ok {
			if pend > off || hadPending && pend < lastPending {
				t.Fatalf("line at %d: PendingFrom %d, before it %d (held %v)", off, pend, lastPending, hadPending)
			}
		}
		if !complete && !ok {
			t.Fatalf("line at %d: Parse kept a fragment but PendingFrom reports none", off)
		}
		lastPending, hadPending = pend, ok
		off += int64(i) + 1
		data = data[min(i+1, len(data)):]
	}
	checkFlush(t, p, maxBytes)
}

// checkFlush empties p with Flush and checks the records it emits (see Check).
func checkFlush(t *testing.T, p Parser, maxBytes int) {
	t.Helper()
	var r event.Record
	prev := int64(-1)
	for {
		pend, held := p.PendingFrom()
		if !p.Flush(&r) {
			if held {
				t.Fatalf("Flush returned false while PendingFrom reports %d", pend)
			}
			break
		}
		if !held || r.Offset != pend || r.Offset <= prev {
			t.Fatalf("flushed record at %d; PendingFrom was %d (held %v), previous flushed at %d", r.Offset, pend, held, prev)
		}
		if r.Flags&event.FlagTruncated == 0 || r.Flags&event.FlagParseError != 0 {
			t.Fatalf("flushed record %+v: want truncated, not a parse error", Render(&r))
		}
		if len(r.Message) > maxBytes || r.Stream != event.StreamStdout && r.Stream != event.StreamStderr {
			t.Fatalf("flushed record %+v, cap %d", Render(&r), maxBytes)
		}
		prev = r.Offset
	}
	if pend, ok := p.PendingFrom(); ok {
		t.Fatalf("PendingFrom %d after Flush returned false", pend)
	}
	if p.Flush(&r) {
		t.Fatal("Flush returned true after returning false")
	}
}

// Bench parses lines round and round with p and reports allocations, bytes per line and
// complete records per second (metric "records/s").
func Bench(b *testing.B, p Parser, lines [][]byte) {
	var r event.Record
	var size int
	for _, l := range lines {
		size += len(l) + 1
	}
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	records, i := 0, 0
	for b.Loop() {
		if p.Parse(lines[i], int64(i), &r) {
			records++
		}
		if i++; i == len(lines) {
			i = 0
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}
