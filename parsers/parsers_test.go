package parsers

import (
	"testing"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/parsers/cri"
	"github.com/skiff-logs/skiff/parsers/docker"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		first  string
		docker bool
	}{
		{`{"log":"x\n","stream":"stdout","time":"2024-01-02T03:04:05Z"}`, true},
		{" \t{\"log\":", true},
		{"2024-01-02T03:04:05Z stdout F x", false},
		{"", false},
		{"   ", false},
		{"x{", false},
		{"[{}]", false},
	}
	for _, tt := range tests {
		p := Detect([]byte(tt.first), 100)
		_, isDocker := p.(*docker.Parser)
		_, isCRI := p.(*cri.Parser)
		if isDocker != tt.docker || isCRI == tt.docker {
			t.Errorf("Detect(%q) = %T, want docker %v", tt.first, p, tt.docker)
		}
	}
}

// TestDetectedParsersWork feeds each detected parser its own first line.
func TestDetectedParsersWork(t *testing.T) {
	for _, first := range []string{
		`{"log":"hello\n","stream":"stdout","time":"2024-01-02T03:04:05Z"}`,
		"2024-01-02T03:04:05Z stdout F hello",
	} {
		var r event.Record
		p := Detect([]byte(first), 3)
		if !p.Parse([]byte(first), 0, &r) {
			t.Fatalf("%T: first line not complete", p)
		}
		if string(r.Message) != "hel" || r.Flags != event.FlagTruncated || r.Stream != event.StreamStdout {
			t.Errorf("%T: record %+v", p, r)
		}
	}
}
