package timefmt

import (
	"regexp"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // RFC3339Nano in UTC; empty means not accepted
	}{
		{"2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.123456789Z"},
		{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"},
		{"2024-01-02T03:04:05.1Z", "2024-01-02T03:04:05.1Z"},
		{"2024-01-02T03:04:05.000000001Z", "2024-01-02T03:04:05.000000001Z"},
		{"2024-01-02T03:04:05.5+02:00", "2024-01-02T01:04:05.5Z"},
		{"2024-01-02T03:04:05-05:30", "2024-01-02T08:34:05Z"},
		{"2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00Z"},
		{"2024-02-29T23:59:59Z", "2024-02-29T23:59:59Z"},
		{"2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z"},
		{"1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"},
		{"1969-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999999999Z"},
		{"0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"},
		{"9999-12-31T23:59:59+23:59", "9999-12-31T00:00:59Z"},
		{"2023-02-29T00:00:00Z", ""},
		{"1900-02-29T00:00:00Z", ""},
		{"2024-04-31T00:00:00Z", ""},
		{"2024-13-01T00:00:00Z", ""},
		{"2024-00-01T00:00:00Z", ""},
		{"2024-01-00T00:00:00Z", ""},
		{"2024-01-01T24:00:00Z", ""},
		{"2024-01-01T00:60:00Z", ""},
		{"2024-01-01T00:00:60Z", ""},
		{"2024-01-01T00:00:00.Z", ""},
		{"2024-01-01T00:00:00.1234567891Z", ""},
		{"2024-01-01T00:00:00,5Z", ""},
		{"2024-01-01T00:00:00", ""},
		{"2024-01-01T00:00:00z", ""},
		{"2024-01-01t00:00:00Z", ""},
		{"2024-01-01 00:00:00Z", ""},
		{"2024-01-01T00:00:00+24:00", ""},
		{"2024-01-01T00:00:00+01:60", ""},
		{"2024-01-01T00:00:00+0100", ""},
		{"2024-01-01T00:00:00+01:00Z", ""},
		{"2024-01-01T00:00:00ZZ", ""},
		{"2024-1-01T00:00:00Z", ""},
		{"+024-01-01T00:00:00Z", ""},
		{"", ""},
		{"2024-01-01T00:00:0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := Parse([]byte(tt.in))
			if tt.want == "" {
				if ok {
					t.Fatalf("Parse(%q) = %v, want rejection", tt.in, got)
				}
				return
			}
			if !ok {
				t.Fatalf("Parse(%q) rejected", tt.in)
			}
			if s := got.Format(time.RFC3339Nano); s != tt.want {
				t.Fatalf("Parse(%q) = %s, want %s", tt.in, s, tt.want)
			}
			if got.Location() != time.UTC {
				t.Fatalf("Parse(%q) location %v, want UTC", tt.in, got.Location())
			}
			std, err := time.Parse(time.RFC3339Nano, tt.in)
			if err != nil || !std.Equal(got) {
				t.Fatalf("time.Parse(%q) = %v, %v; Parse = %v", tt.in, std, err, got)
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	b := []byte("2024-01-02T03:04:05.123456789+01:00")
	if n := testing.AllocsPerRun(100, func() { Parse(b) }); n != 0 {
		t.Fatalf("Parse allocates %v times", n)
	}
}

// grammar is the subset of RFC 3339 that Parse promises to accept when the fields are in range.
var grammar = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-](\d\d):(\d\d))$`)

// FuzzParse checks Parse against time.Parse: whatever Parse accepts, time.Parse accepts with the
// same instant; whatever time.Parse accepts in Parse's grammar (with an offset in range), Parse
// accepts too.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05Z", "2024-02-29T03:04:05.5+02:00",
		"2024-01-02T03:04:05-23:59", "1999-12-31T23:59:59.999Z", "2024-01-02T03:04:05.1234567890Z",
		"2024-01-02T03:04:05+24:00", "0000-02-29T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Parse([]byte(s))
		std, err := time.Parse(time.RFC3339Nano, s)
		if ok {
			if err != nil {
				t.Fatalf("Parse(%q) accepted, time.Parse: %v", s, err)
			}
			if !std.Equal(got) {
				t.Fatalf("Parse(%q) = %v, time.Parse = %v", s, got, std)
			}
			return
		}
		m := grammar.FindStringSubmatch(s)
		if err == nil && m != nil && (m[3] == "" || m[3] <= "23" && m[4] <= "59") {
			t.Fatalf("Parse(%q) rejected what time.Parse accepts: %v", s, std)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	in := []byte("2024-01-02T03:04:05.123456789Z")
	b.ReportAllocs()
	for b.Loop() {
		Parse(in)
	}
}

func BenchmarkTimeParse(b *testing.B) {
	in := "2024-01-02T03:04:05.123456789Z"
	b.ReportAllocs()
	for b.Loop() {
		_, _ = time.Parse(time.RFC3339Nano, in)
	}
}
