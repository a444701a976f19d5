package loggen

import (
	"strings"
	"testing"
	"time"
)

func TestAppendLine(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)
	got := string(AppendLine(nil, CRI, ts, "stdout", "héllo world", []int{2, 6}))
	want := "2024-01-02T03:04:05.123456789Z stdout P h\xc3\n" +
		"2024-01-02T03:04:05.123456789Z stdout P \xa9llo\n" +
		"2024-01-02T03:04:05.123456789Z stdout F  world\n"
	if got != want {
		t.Errorf("CRI:\n%q\nwant\n%q", got, want)
	}
	got = string(AppendLine(nil, Docker, ts, "stderr", "a\"<b>\x01", nil))
	want = `{"log":"a\"\u003cb\u003e\u0001\n","stream":"stderr","time":"2024-01-02T03:04:05.123456789Z"}` + "\n"
	if got != want {
		t.Errorf("docker:\n%s\nwant\n%s", got, want)
	}
	long := strings.Repeat("x", DockerPiece+10)
	got = string(AppendLine(nil, Docker, ts, "stdout", long, nil))
	if n := strings.Count(got, "\n"); n != 2 {
		t.Errorf("long docker message in %d pieces, want 2", n)
	}
}
