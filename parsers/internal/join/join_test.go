package join

import (
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

func TestCap(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"abc", 3, "abc", false},
		{"abc", 5, "abc", false},
		{"abcd", 3, "abc", true},
		{"ab€", 4, "ab", true},                          // € is 3 bytes: cut inside it
		{"ab€", 5, "ab€", false},                        // fits
		{"ab€x", 5, "ab€", true},                        // cut after it
		{"a🚀", 4, "a", true},                            // 4-byte sequence cut after 3
		{"a🚀", 2, "a", true},                            // cut after its lead byte
		{"é", 1, "", true},                              // nothing left
		{"a\x80\x80\x80\x80", 4, "a\x80\x80\x80", true}, // invalid bytes are left alone
		{"ab\xff", 2, "ab", true},
		{"", 0, "", false},
	}
	for _, tt := range tests {
		got, cut := Cap([]byte(tt.in), tt.max)
		if string(got) != tt.want || cut != tt.cut {
			t.Errorf("Cap(%q, %d) = %q, %v; want %q, %v", tt.in, tt.max, got, cut, tt.want, tt.cut)
		}
	}
}

func TestJoiner(t *testing.T) {
	t0 := time.Unix(100, 0).UTC()
	t1 := time.Unix(200, 0).UTC()
	j := New(8)
	var r event.Record
	if _, ok := j.PendingFrom(); ok {
		t.Fatal("new Joiner reports pending fragments")
	}
	if j.Add(Stdout, []byte("abc"), false, 10, t0, 0, &r) {
		t.Fatal("fragment completed a record")
	}
	if j.Add(Stderr, []byte("x"), false, 20, t1, event.FlagInvalidUTF8, &r) {
		t.Fatal("fragment completed a record")
	}
	if off, ok := j.PendingFrom(); !ok || off != 10 {
		t.Fatalf("PendingFrom = %d, %v; want 10", off, ok)
	}
	if !j.Add(Stdout, []byte("defghij"), true, 30, t1, 0, &r) {
		t.Fatal("last piece did not complete the record")
	}
	if string(r.Message) != "abcdefgh" || r.Offset != 10 || !r.Time.Equal(t0) || r.Stream != event.StreamStdout || r.Flags != event.FlagTruncated {
		t.Fatalf("record %+v", r)
	}
	if off, ok := j.PendingFrom(); !ok || off != 20 {
		t.Fatalf("PendingFrom = %d, %v; want 20", off, ok)
	}
	if !j.Add(Stderr, []byte("y"), true, 40, t0, 0, &r) {
		t.Fatal("last piece did not complete the record")
	}
	if string(r.Message) != "xy" || r.Offset != 20 || !r.Time.Equal(t1) || r.Stream != event.StreamStderr || r.Flags != event.FlagInvalidUTF8 {
		t.Fatalf("record %+v", r)
	}
	if _, ok := j.PendingFrom(); ok {
		t.Fatal("PendingFrom reports fragments after both records completed")
	}
	j.Malformed([]byte("0123456789"), 50, &r)
	if string(r.Message) != "01234567" || r.Offset != 50 || !r.Time.IsZero() || r.Stream != "" || r.Flags != event.FlagParseError|event.FlagTruncated {
		t.Fatalf("malformed record %+v", r)
	}
	if d := New(0); d.max != DefaultMaxBytes {
		t.Fatalf("New(0) caps at %d", d.max)
	}
}

func TestJoinerFlush(t *testing.T) {
	t0 := time.Unix(100, 0).UTC()
	t1 := time.Unix(200, 0).UTC()
	type piece struct {
		s     Stream
		text  string
		last  bool
		off   int64
		t     time.Time
		flags event.Flags
	}
	type want struct {
		msg    string
		off    int64
		t      time.Time
		stream string
		flags  event.Flags
	}
	tests := []struct {
		name   string
		max    int
		pieces []piece
		want   []want
	}{
		{
			name: "nothing held",
			pieces: []piece{
				{Stdout, "done", true, 0, t0, 0},
			},
		},
		{
			name: "two streams in offset order, stderr first",
			pieces: []piece{
				{Stderr, "e1-", false, 5, t0, 0},
				{Stdout, "o1-", false, 10, t1, 0},
				{Stderr, "e2", false, 20, t1, event.FlagInvalidUTF8},
				{Stdout, "o2", false, 30, t0, 0},
			},
			want: []want{
				{"e1-e2", 5, t0, event.StreamStderr, event.FlagInvalidUTF8 | event.FlagTruncated},
				{"o1-o2", 10, t1, event.StreamStdout, event.FlagTruncated},
			},
		},
		{
			name: "a completed record is not flushed again",
			pieces: []piece{
				{Stdout, "a", false, 0, t0, 0},
				{Stdout, "b", true, 10, t0, 0},
				{Stdout, "c", false, 20, t1, 0},
			},
			want: []want{{"c", 20, t1, event.StreamStdout, event.FlagTruncated}},
		},
		{
			name: "incomplete UTF-8 sequence at the end dropped",
			pieces: []piece{
				{Stdout, "caf\xc3", false, 0, t0, 0},
			},
			want: []want{{"caf", 0, t0, event.StreamStdout, event.FlagTruncated}},
		},
		{
			name: "cut at the cap",
			max:  4,
			pieces: []piece{
				{Stderr, "abc", false, 7, t0, 0},
				{Stderr, "def", false, 9, t0, 0},
			},
			want: []want{{"abcd", 7, t0, event.StreamStderr, event.FlagTruncated}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := New(tt.max)
			var r event.Record
			for _, p := range tt.pieces {
				j.Add(p.s, []byte(p.text), p.last, p.off, p.t, p.flags, &r)
			}
			for i, w := range tt.want {
				if off, ok := j.PendingFrom(); !ok || off != w.off {
					t.Fatalf("record %d: PendingFrom = %d, %v; want %d", i, off, ok, w.off)
				}
				if !j.Flush(&r) {
					t.Fatalf("record %d: Flush returned false", i)
				}
				if string(r.Message) != w.msg || r.Offset != w.off || !r.Time.Equal(w.t) || r.Stream != w.stream || r.Flags != w.flags {
					t.Fatalf("record %d: %+v; want %+v", i, r, w)
				}
			}
			r = event.Record{Tag: "keep"}
			if j.Flush(&r) || r.Tag != "keep" || r.Message != nil {
				t.Fatalf("Flush with nothing held: record %+v", r)
			}
			if off, ok := j.PendingFrom(); ok {
				t.Fatalf("PendingFrom = %d after Flush emptied the Joiner", off)
			}
			// The Joiner joins anew after a Flush.
			if j.Add(Stdout, []byte("x"), false, 100, t0, 0, &r) || !j.Add(Stdout, []byte("y"), true, 110, t1, 0, &r) {
				t.Fatal("pieces after a Flush not joined")
			}
			if string(r.Message) != "xy" || r.Offset != 100 || r.Flags != 0 {
				t.Fatalf("record after a Flush %+v", r)
			}
		})
	}
}
