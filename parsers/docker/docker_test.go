package docker

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/parsers/internal/parsertest"
)

type rec = parsertest.Rec

const ts = "2024-01-02T03:04:05.123456789Z"

// line builds a json-file line the way docker writes it.
func line(log, stream string) string {
	b, err := json.Marshal(struct {
		Log    string `json:"log"`
		Stream string `json:"stream"`
		Time   string `json:"time"`
	}{log, stream, ts})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParse(t *testing.T) {
	piece := strings.Repeat("a", 16<<10)
	tests := []struct {
		name  string
		max   int
		lines []string
		// want's Offset fields are indexes into lines, turned into byte offsets by the test.
		want    []rec
		pending int // index of the line PendingFrom points at, -1 for none
	}{
		{
			name:    "plain line",
			lines:   []string{line("hello world\n", "stdout")},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "hello world"}},
			pending: -1,
		},
		{
			name: "keys in any order, other keys skipped, white space",
			lines: []string{
				` { "time" : "2024-01-02T03:04:05Z" , "attrs":{"a":[1,-2.5e+3,true,false,null,{"x":"}\"]"}],"b":{}},"stream":"stderr", "log":"x\n", "n":[] } `,
				`{"stream":"stdout","extra":"s","log":"y\n","time":"2024-01-02T03:04:05+01:00","z":0.5}`,
			},
			want: []rec{
				{Offset: 0, Time: "2024-01-02T03:04:05Z", Stream: "stderr", Message: "x"},
				{Offset: 1, Time: "2024-01-02T02:04:05Z", Stream: "stdout", Message: "y"},
			},
			pending: -1,
		},
		{
			name: "escapes",
			lines: []string{
				`{"log":"q\" b\\ s\/ \b\f\n\r\t \u003cp\u003e \u00e9 \u20ac \ud83d\ude80 \uD83D\uDE80\n","stream":"stdout","time":"` + ts + `"}`,
				`{"l\u006fg":"escaped key\n","stream":"std\u006fut","time":"` + ts + `"}`,
				`{"log":"k\n","str\u0065am":"stderr","ti\u006de":"2024-01-02T03:04:05Z"}`,
			},
			want: []rec{
				{Offset: 0, Time: ts, Stream: "stdout", Message: "q\" b\\ s/ \b\f\n\r\t <p> é € 🚀 🚀"},
				{Offset: 1, Time: ts, Stream: "stdout", Message: "escaped key"},
				{Offset: 2, Time: "2024-01-02T03:04:05Z", Stream: "stderr", Message: "k"},
			},
			pending: -1,
		},
		{
			name: "lone surrogates become U+FFFD",
			lines: []string{
				`{"log":"a\ud800b \udc00 \ud800\u0041\n","stream":"stdout","time":"` + ts + `"}`,
			},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "a\uFFFDb \uFFFD \uFFFDA", Flags: []string{"invalid_utf8"}}},
			pending: -1,
		},
		{
			name:    "CRLF keeps the CR",
			lines:   []string{line("windows\r\n", "stdout")},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "windows\r"}},
			pending: -1,
		},
		{
			name:    "empty message",
			lines:   []string{line("\n", "stderr")},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stderr", Message: ""}},
			pending: -1,
		},
		{
			name:    "16 KiB pieces joined",
			lines:   []string{line(piece, "stdout"), line(piece, "stdout"), line("end\n", "stdout")},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: piece + piece + "end"}},
			pending: -1,
		},
		{
			name: "interleaved stdout and stderr pieces",
			lines: []string{
				line("out1-", "stdout"), line("err1-", "stderr"), line("err2\n", "stderr"),
				line("out2-", "stdout"), line("err3-", "stderr"), line("out3\n", "stdout"),
			},
			want: []rec{
				{Offset: 1, Time: ts, Stream: "stderr", Message: "err1-err2"},
				{Offset: 0, Time: ts, Stream: "stdout", Message: "out1-out2-out3"},
			},
			pending: 4,
		},
		{
			name:    "multi-byte character split between pieces",
			lines:   []string{`{"log":"caf` + "\xc3" + `","stream":"stdout","time":"` + ts + `"}`, `{"log":"` + "\xa9" + `\n","stream":"stdout","time":"` + ts + `"}`},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "café"}},
			pending: -1,
		},
		{
			name:    "joined pieces truncated",
			max:     20000,
			lines:   []string{line(piece, "stdout"), line(piece, "stdout"), line("end\n", "stdout"), line("next\n", "stdout")},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: piece + piece[:20000-len(piece)], Flags: []string{"truncated"}}, {Offset: 3, Time: ts, Stream: "stdout", Message: "next"}},
			pending: -1,
		},
		{
			name:    "single line truncated without splitting UTF-8",
			max:     6,
			lines:   []string{line("abcde€\n", "stdout")},
			want:    []rec{{Offset: 0, Time: ts, Stream: "stdout", Message: "abcde", Flags: []string{"truncated"}}},
			pending: -1,
		},
		{
			name: "malformed lines are raw records and leave pending pieces alone",
			lines: []string{
				line("kept-", "stdout"),
				`not json`,
				`{"log":"x\n","stream":"stdout"}`,
				`{"log":"x\n","time":"` + ts + `"}`,
				`{"stream":"stdout","time":"` + ts + `"}`,
				`{"log":"x\n","stream":"stdin","time":"` + ts + `"}`,
				`{"log":"x\n","stream":"stdout","time":"yesterday"}`,
				`{"log":1,"stream":"stdout","time":"` + ts + `"}`,
				`{"log":"bad \x escape","stream":"stdout","time":"` + ts + `"}`,
				`{"log":"bad \u12g4 escape","stream":"stdout","time":"` + ts + `"}`,
				`{"log":"raw` + "\t" + `tab","stream":"stdout","time":"` + ts + `"}`,
				`{"log":"x\n","stream":"stdout","time":"` + ts + `"} trailing`,
				`{"log":"x\n","stream":"stdout","time":"` + ts + `",}`,
				`{"log":"x\n","stream":"stdout","time":"` + ts + `","a":[1,]}`,
				`{"log":"x\n","stream":"stdout","time":"` + ts + `","a":01}`,
				`{"log":"x\n","stream":"stdout","time":"` + ts + `","a":tru}`,
				`{"log":"unterminated`,
				`{}`,
				``,
				line("done\n", "stdout"),
			},
			want: []rec{
				{Offset: 1, Message: `not json`, Flags: []string{"parse_error"}},
				{Offset: 2, Message: `{"log":"x\n","stream":"stdout"}`, Flags: []string{"parse_error"}},
				{Offset: 3, Message: `{"log":"x\n","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 4, Message: `{"stream":"stdout","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 5, Message: `{"log":"x\n","stream":"stdin","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 6, Message: `{"log":"x\n","stream":"stdout","time":"yesterday"}`, Flags: []string{"parse_error"}},
				{Offset: 7, Message: `{"log":1,"stream":"stdout","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 8, Message: `{"log":"bad \x escape","stream":"stdout","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 9, Message: `{"log":"bad \u12g4 escape","stream":"stdout","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 10, Message: `{"log":"raw` + "\t" + `tab","stream":"stdout","time":"` + ts + `"}`, Flags: []string{"parse_error"}},
				{Offset: 11, Message: `{"log":"x\n","stream":"stdout","time":"` + ts + `"} trailing`, Flags: []string{"parse_error"}},
				{Offset: 12, Message: `{"log":"x\n","stream":"stdout","time":"` + ts + `",}`, Flags: []string{"parse_error"}},
				{Offset: 13, Message: `{"log":"x\n","stream":"stdout","time":"` + ts + `","a":[1,]}`, Flags: []string{"parse_error"}},
				{Offset: 14, Message: `{"log":"x\n","stream":"stdout","time":"` + ts + `","a":01}`, Flags: []string{"parse_error"}},
				{Offset: 15, Message: `{"log":"x\n","stream":"stdout","time":"` + ts + `","a":tru}`, Flags: []string{"parse_error"}},
				{Offset: 16, Message: `{"log":"unterminated`, Flags: []string{"parse_error"}},
				{Offset: 17, Message: `{}`, Flags: []string{"parse_error"}},
				{Offset: 18, Message: ``, Flags: []string{"parse_error"}},
				{Offset: 0, Time: ts, Stream: "stdout", Message: "kept-done"},
			},
			pending: -1,
		},
		{
			name:    "too deeply nested",
			lines:   []string{`{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"log":"x\n","stream":"stdout","time":"` + ts + `"}`},
			want:    []rec{{Offset: 0, Message: `{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"log":"x\n","stream":"stdout","time":"` + ts + `"}`, Flags: []string{"parse_error"}}},
			pending: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1 << 20
			}
			offsets := make([]int64, len(tt.lines))
			var input strings.Builder
			for i, l := range tt.lines {
				offsets[i] = int64(input.Len())
				input.WriteString(l + "\n")
			}
			want := append([]rec(nil), tt.want...)
			for i := range want {
				want[i].Offset = offsets[want[i].Offset]
			}
			wantPending := int64(-1)
			if tt.pending >= 0 {
				wantPending = offsets[tt.pending]
			}
			got := parsertest.Run(New(max), []byte(input.String()))
			if !reflect.DeepEqual(got.Records, want) {
				t.Errorf("records:\n got %.500v\nwant %.500v", got.Records, want)
			}
			if got.PendingFrom != wantPending {
				t.Errorf("PendingFrom = %d, want %d", got.PendingFrom, wantPending)
			}
			parsertest.Check(t, New(max), []byte(input.String()), max)
		})
	}
}

// TestFlush: pieces a file ending for good leaves held come out as truncated records, earliest
// first, and the Parser then holds nothing.
func TestFlush(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		// want's Offset fields are indexes into lines, turned into byte offsets by the test.
		want []rec
	}{
		{
			name:  "nothing held",
			lines: []string{line("a", "stdout"), line("b\n", "stdout")},
		},
		{
			name: "two streams pending, in offset order",
			lines: []string{
				line("err1-", "stderr"), line("out1-", "stdout"), line("err2", "stderr"), line("out2", "stdout"),
			},
			want: []rec{
				{Offset: 0, Time: ts, Stream: "stderr", Message: "err1-err2", Flags: []string{"truncated"}},
				{Offset: 1, Time: ts, Stream: "stdout", Message: "out1-out2", Flags: []string{"truncated"}},
			},
		},
		{
			name: "piece flags kept",
			lines: []string{
				line("a", "stdout"), line("b\n", "stdout"), `{"log":"c\ud800","stream":"stdout","time":"` + ts + `"}`,
			},
			want: []rec{{Offset: 2, Time: ts, Stream: "stdout", Message: "c\uFFFD", Flags: []string{"truncated", "invalid_utf8"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var input strings.Builder
			var offsets []int64
			for _, l := range tt.lines {
				offsets = append(offsets, int64(input.Len()))
				input.WriteString(l + "\n")
			}
			want := append([]rec(nil), tt.want...)
			for i := range want {
				want[i].Offset = offsets[want[i].Offset]
			}
			p := New(1 << 10)
			parsertest.Run(p, []byte(input.String()))
			if got := parsertest.FlushAll(p); !reflect.DeepEqual(got, want) {
				t.Errorf("flushed:\n got %+v\nwant %+v", got, want)
			}
			if off, ok := p.PendingFrom(); ok {
				t.Errorf("PendingFrom = %d after Flush returned false", off)
			}
		})
	}
}

// TestUnescapeMatchesEncodingJSON checks readString against encoding/json on valid strings.
func TestUnescapeMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`""`, `"plain"`, `"\u0000\u001f\u007f"`, `"\"\\\/\b\f\n\r\t"`, `"\ud83d\ude00x"`,
		`"\ud83dx"`, `"\ude00\ud83d"`, `"\uDBFF\uDFFF"`, `"é€🚀"`, `"a\u00e9b"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("encoding/json %s: %v", s, err)
		}
		got, _, next, _, ok := readString([]byte(s), 0, nil)
		if !ok || string(got) != want || next != len(s) {
			t.Errorf("readString(%s) = %q, %d, %v; want %q", s, got, next, ok, want)
		}
	}
}

// FuzzReadString checks readString against encoding/json on strings of valid UTF-8 (where
// encoding/json would replace invalid bytes, readString keeps them for the reader to handle).
func FuzzReadString(f *testing.F) {
	for _, s := range []string{`"a\u00e9\n"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\x"`, `"abc`, `"\u12"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || !strings.HasPrefix(s, `"`) {
			return
		}
		got, _, next, _, ok := readString([]byte(s), 0, nil)
		var want string
		err := json.Unmarshal([]byte(s), &want)
		switch {
		case !ok && err == nil:
			t.Fatalf("readString(%s) rejected what encoding/json reads as %q", s, want)
		case ok && strings.TrimLeft(s[next:], " \t\r\n") == "" && (err != nil || string(got) != want):
			t.Fatalf("readString(%s) = %q; encoding/json: %q, %v", s, got, want, err)
		}
	})
}

func TestGolden(t *testing.T) {
	parsertest.Golden(t, func() parsertest.Parser { return New(1 << 10) })
}

func TestParseAllocs(t *testing.T) {
	p := New(1 << 20)
	lines := [][]byte{
		[]byte(typicalLine),
		[]byte(line(strings.Repeat("p", 300), "stderr")),
		[]byte(line("end\n", "stderr")),
		[]byte(`{"log":"x\n","stream":"stdout","time":"` + ts + `","attrs":{"tag":"` + strings.Repeat("k", 40) + `"},"` + strings.Repeat("k", 40) + `":1}`),
		[]byte(`not json`),
	}
	var r event.Record
	for i, l := range lines {
		p.Parse(l, int64(i), &r) // warm the buffers
	}
	n := testing.AllocsPerRun(200, func() {
		for i, l := range lines {
			p.Parse(l, int64(i), &r)
		}
	})
	if n != 0 {
		t.Fatalf("Parse allocates %v times per run", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(typicalLine+"\n"), uint16(400))
	f.Add([]byte(line("a", "stdout")+"\n"+line("b", "stderr")+"\n"+line("c\n", "stdout")+"\n"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		m := int(max) + 1
		parsertest.Check(t, New(m), data, m)
	})
}

// typicalLine is a docker json-file line with the escapes docker writes (quotes inside a JSON
// message, HTML characters as \u003c…, and the final \n).
var typicalLine = `{"log":"{\"level\":\"info\",\"ts\":\"2024-01-02T03:04:05.123Z\",\"caller\":\"server/handler.go:142\",\"msg\":\"request served \u003c200\u003e\",\"method\":\"GET\",\"path\":\"/api/v1/orders/8d2f1c\",\"status\":200,\"duration_ms\":12.7,\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`

func BenchmarkParse(b *testing.B) {
	b.Run("escaped", func(b *testing.B) { parsertest.Bench(b, New(1<<20), [][]byte{[]byte(typicalLine)}) })
	b.Run("plain", func(b *testing.B) {
		parsertest.Bench(b, New(1<<20), [][]byte{[]byte(line(strings.Repeat("x", 260)+"\n", "stdout"))})
	})
	b.Run("16KiB-pieces", func(b *testing.B) {
		part := []byte(line(strings.Repeat("x", 16<<10), "stdout"))
		parsertest.Bench(b, New(1<<20), [][]byte{part, part, []byte(typicalLine)})
	})
}
