package cri

import (
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/parsers/internal/parsertest"
)

type rec = parsertest.Rec

func TestParse(t *testing.T) {
	const ts = "2024-01-02T03:04:05.123456789Z"
	const ts2 = "2024-01-02T03:04:06Z"
	tests := []struct {
		name    string
		max     int
		input   string
		want    []rec
		pending int64
	}{
		{
			name:    "full line",
			input:   ts + " stdout F hello world\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "hello world"}},
			pending: -1,
		},
		{
			name:    "stderr and extra tags",
			input:   ts + " stderr F:x:y oops\n" + ts + " stdout P:z a\n" + ts2 + " stdout F b\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stderr", Message: "oops"}, {Offset: 49, Time: ts, Stream: "stdout", Message: "ab"}},
			pending: -1,
		},
		{
			name:  "empty messages",
			input: ts + " stdout F\n" + ts + " stdout F \n" + ts + " stderr F  two spaces\n",
			want: []rec{
				{Offset: 0, Time: ts, Stream: "stdout", Message: ""},
				{Offset: 40, Time: ts, Stream: "stdout", Message: ""},
				{Offset: 81, Time: ts, Stream: "stderr", Message: " two spaces"},
			},
			pending: -1,
		},
		{
			name: "partials joined with time and offset of the first",
			input: ts + " stdout P one \n" +
				ts2 + " stdout P two \n" +
				ts2 + " stdout F three\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "one two three"}},
			pending: -1,
		},
		{
			name: "interleaved stdout and stderr partials",
			input: ts + " stdout P out1-\n" + // 0
				ts + " stderr P err1-\n" + // 46
				ts2 + " stderr F err2\n" + // 92
				ts2 + " stdout P out2-\n" + // 127
				ts2 + " stderr P err3-\n" + // 163
				ts2 + " stdout F out3\n", // 199
			want: []rec{
				{Offset: 46, Time: ts, Stream: "stderr", Message: "err1-err2"},
				{Offset: 0, Time: ts, Stream: "stdout", Message: "out1-out2-out3"},
			},
			pending: 163,
		},
		{
			name:    "multi-byte character split between fragments",
			input:   ts + " stdout P caf\xc3\n" + ts + " stdout P \xa9 \xe2\x82\n" + ts + " stdout F \xac\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "café €"}},
			pending: -1,
		},
		{
			name:    "CR before the newline is kept",
			input:   ts + " stdout F windows\r\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "windows\r"}},
			pending: -1,
		},
		{
			name:    "zone offset converted to UTC",
			input:   "2024-01-02T03:04:05.5+02:00 stdout F x\n",
			want:    []rec{{Offset: 0, Time: "2024-01-02T01:04:05.5Z", Stream: "stdout", Message: "x"}},
			pending: -1,
		},
		{
			name:    "single line truncated",
			max:     10,
			input:   ts + " stdout F 0123456789abc\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "0123456789", Flags: []string{"truncated"}}},
			pending: -1,
		},
		{
			name:    "joined message truncated, rest of the fragments dropped",
			max:     10,
			input:   ts + " stdout P 012345\n" + ts + " stdout P 6789ab\n" + ts + " stdout P cdef\n" + ts + " stdout F gh\n" + ts + " stdout F next\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "0123456789", Flags: []string{"truncated"}}, {Offset: 182, Time: ts, Stream: "stdout", Message: "next"}},
			pending: -1,
		},
		{
			name:    "truncation does not split a UTF-8 sequence",
			max:     10,
			input:   ts + " stdout P 012345678\n" + ts + " stdout F €\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "012345678", Flags: []string{"truncated"}}},
			pending: -1,
		},
		{
			name: "malformed lines are raw records and leave pending fragments alone",
			input: ts + " stdout P kept-\n" + // 0
				"no spaces at all\n" + // 46
				"2024-13-02T03:04:05Z stdout F bad month\n" + // 63
				ts + " stdnot F bad stream\n" + // 103
				ts + " stdout X bad tag\n" + // 154
				ts + " stdout FF bad tag\n" + // 202
				ts + " stdout\n" + // 251
				ts + " stdout \n" + // 289
				"\n" + // 328
				ts + " stdout F done\n", // 329
			want: []rec{
				{Offset: 46, Message: "no spaces at all", Flags: []string{"parse_error"}},
				{Offset: 63, Message: "2024-13-02T03:04:05Z stdout F bad month", Flags: []string{"parse_error"}},
				{Offset: 103, Message: ts + " stdnot F bad stream", Flags: []string{"parse_error"}},
				{Offset: 154, Message: ts + " stdout X bad tag", Flags: []string{"parse_error"}},
				{Offset: 202, Message: ts + " stdout FF bad tag", Flags: []string{"parse_error"}},
				{Offset: 251, Message: ts + " stdout", Flags: []string{"parse_error"}},
				{Offset: 289, Message: ts + " stdout ", Flags: []string{"parse_error"}},
				{Offset: 328, Message: "", Flags: []string{"parse_error"}},
				{Offset: 0, Time: ts, Stream: "stdout", Message: "kept-done"},
			},
			pending: -1,
		},
		{
			name:    "malformed line truncated",
			max:     5,
			input:   "garbage line\n",
			want:    []rec{{Offset: 0, Message: "garba", Flags: []string{"parse_error", "truncated"}}},
			pending: -1,
		},
		{
			name:    "pending at end of input",
			input:   ts + " stdout F a\n" + ts + " stderr P b\n",
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "a"}},
			pending: 42,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1 << 10
			}
			got := parsertest.Run(New(max), []byte(tt.input))
			if !reflect.DeepEqual(got.Records, tt.want) {
				t.Errorf("records:\n got %+v\nwant %+v", got.Records, tt.want)
			}
			if got.PendingFrom != tt.pending {
				t.Errorf("PendingFrom = %d, want %d", got.PendingFrom, tt.pending)
			}
			parsertest.Check(t, New(max), []byte(tt.input), max)
		})
	}
}

// TestFlush: what a file ending for good leaves held comes out as truncated records, earliest
// first, and the Parser then holds nothing.
func TestFlush(t *testing.T) {
	const ts = "2024-01-02T03:04:05.123456789Z"
	const ts2 = "2024-01-02T03:04:06Z"
	tests := []struct {
		name  string
		input string
		want  []rec
	}{
		{
			name:  "nothing held",
			input: ts + " stdout P a\n" + ts + " stdout F b\n",
		},
		{
			name: "two streams pending, in offset order",
			input: ts + " stderr P err1-\n" + // 0
				ts2 + " stdout P out1-\n" + // 46
				ts2 + " stderr P err2\n" + // 82
				ts + " stdout P out2\n", // 117
			want: []rec{
				{Offset: 0, Time: ts, Stream: "stderr", Message: "err1-err2", Flags: []string{"truncated"}},
				{Offset: 46, Time: ts2, Stream: "stdout", Message: "out1-out2", Flags: []string{"truncated"}},
			},
		},
		{
			name:  "only the fragments after the last F line",
			input: ts + " stdout P a\n" + ts + " stdout F b\n" + ts2 + " stdout P c\n",
			want:  []rec{{Offset: 84, Time: ts2, Stream: "stdout", Message: "c", Flags: []string{"truncated"}}},
		},
		{
			name:  "split UTF-8 sequence at the end dropped",
			input: ts + " stdout P caf\xc3\n",
			want:  []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "caf", Flags: []string{"truncated"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(1 << 10)
			parsertest.Run(p, []byte(tt.input))
			if got := parsertest.FlushAll(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("flushed:\n got %+v\nwant %+v", got, tt.want)
			}
			if off, ok := p.PendingFrom(); ok {
				t.Errorf("PendingFrom = %d after Flush returned false", off)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	parsertest.Golden(t, func() parsertest.Parser { return New(1 << 10) })
}

// TestRecordFields checks the fields Render does not show: Stream uses the event constants and
// Parse leaves r alone for a fragment.
func TestRecordFields(t *testing.T) {
	p := New(0)
	r := event.Record{Tag: "keep", Message: []byte("old")}
	if p.Parse([]byte("2024-01-02T03:04:05Z stderr P x"), 0, &r) {
		t.Fatal("P line reported complete")
	}
	if string(r.Message) != "old" || r.Tag != "keep" {
		t.Fatalf("fragment changed the record: %+v", r)
	}
	if !p.Parse([]byte("2024-01-02T03:04:05Z stderr F y"), 32, &r) {
		t.Fatal("F line not complete")
	}
	if r.Stream != event.StreamStderr || string(r.Message) != "xy" || r.Tag != "keep" || r.Flags != 0 {
		t.Fatalf("record %+v", r)
	}
}

func TestParseAllocs(t *testing.T) {
	p := New(1 << 20)
	full := []byte(typicalLine)
	part := []byte("2024-01-02T03:04:05.123456789Z stderr P " + strings.Repeat("p", 200))
	var r event.Record
	// Warm the join buffer once; after that neither kind of line allocates.
	p.Parse(part, 0, &r)
	p.Parse(full, 1, &r)
	n := testing.AllocsPerRun(200, func() {
		p.Parse(full, 2, &r)
		p.Parse(part, 3, &r)
		p.Parse(full[:0], 4, &r) // malformed, empty
		p.Parse(full[:60], 5, &r)
	})
	if n != 0 {
		t.Fatalf("Parse allocates %v times per run", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(typicalLine+"\n"), uint16(400))
	f.Add([]byte("2024-01-02T03:04:05Z stdout P a\n2024-01-02T03:04:05Z stderr P b\n2024-01-02T03:04:05Z stdout F c\n"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		m := int(max) + 1
		parsertest.Check(t, New(m), data, m)
	})
}

// typicalLine is a 317-byte CRI line with a 270-byte message, about the median of a busy node.
var typicalLine = "2024-01-02T03:04:05.123456789Z stdout F " +
	`{"level":"info","ts":"2024-01-02T03:04:05.123Z","caller":"server/handler.go:142","msg":"request served","method":"GET","path":"/api/v1/orders/8d2f1c","status":200,"bytes":5123,"duration_ms":12.7,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user":"svc-checkout","region":"eu"}`

func BenchmarkParse(b *testing.B) {
	if len(typicalLine) != 317 {
		b.Fatalf("typical line is %d bytes", len(typicalLine))
	}
	b.Run("F", func(b *testing.B) { parsertest.Bench(b, New(1<<20), [][]byte{[]byte(typicalLine)}) })
	b.Run("PPF", func(b *testing.B) {
		part := []byte("2024-01-02T03:04:05.123456789Z stdout P " + strings.Repeat("x", 16<<10))
		parsertest.Bench(b, New(1<<20), [][]byte{part, part, []byte(typicalLine)})
	})
	b.Run("mixed", func(b *testing.B) {
		errPart := []byte("2024-01-02T03:04:05.123456789Z stderr P " + strings.Repeat("e", 100))
		errFull := []byte("2024-01-02T03:04:05.123456789Z stderr F " + strings.Repeat("f", 50))
		full := []byte(typicalLine)
		parsertest.Bench(b, New(1<<20), [][]byte{full, errPart, full, full, errFull, full, full, full})
	})
}
