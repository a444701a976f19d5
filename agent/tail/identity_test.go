package tail

import (
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-logs/skiff/agent/positions"
)

func openContent(t *testing.T, content string) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, content)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func fnv64a(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func TestFingerprint(t *testing.T) {
	long := strings.Repeat("z", 300)
	for _, tc := range []struct {
		name, content string
		ok            bool
		hashed        string
	}{
		{"empty", "", false, ""},
		{"first line incomplete", "no newline yet", false, ""},
		{"first line complete", "first\nsecond\n", true, "first\n"},
		{"only the first line counts", "first\nother\n", true, "first\n"},
		{"long first line: 256 bytes", long, true, long[:256]},
		{"newline at 256", strings.Repeat("y", 255) + "\nmore", true, strings.Repeat("y", 255) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, ok, err := fingerprint(openContent(t, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.ok || (ok && fp != fnv64a(tc.hashed)) {
				t.Errorf("fingerprint = %x, %v; want %v of %q", fp, ok, tc.ok, abbrev(tc.hashed))
			}
		})
	}
}

func TestLastLineEnd(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		max           int
		want          int64
	}{
		{"ends with newline", "a\nbb\n", 100, 5},
		{"partial last line", "a\nbb\nccc", 100, 5},
		{"no newline at all", "abc", 100, 0},
		{"last line longer than max, within one read back", "a\n" + strings.Repeat("x", 200), 100, 2},
		{"last line longer than max and a read back", "a\n" + strings.Repeat("x", 70000), 100, 70002},
		{"long file", strings.Repeat("line\n", 30000) + "tail", 1 << 20, 150000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lastLineEnd(openContent(t, tc.content), int64(len(tc.content)), tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("lastLineEnd = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFirstLine(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		max           int
		want          string
	}{
		{"short", "{\"log\":1}\nx\n", 100, "{\"log\":1}"},
		{"capped", strings.Repeat("a", 10000) + "\n", 5000, strings.Repeat("a", 5000)},
		{"beyond the first read", strings.Repeat("b", 9000) + "\n", 1 << 20, strings.Repeat("b", 9000)},
		{"no newline", "abc", 100, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := firstLine(openContent(t, tc.content), tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("firstLine = %q, want %q", abbrev(string(got)), abbrev(tc.want))
			}
		})
	}
}

func TestIDPrefix(t *testing.T) {
	k := positions.Key{Dev: 1, Ino: 2}
	a := idPrefix(k, 3, 0)
	if len(a) != 16 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("idPrefix %q: want 16 lower-case hex digits", a)
	}
	if idPrefix(k, 3, 0) != a {
		t.Error("idPrefix is not deterministic")
	}
	for _, other := range []string{
		idPrefix(positions.Key{Dev: 2, Ino: 2}, 3, 0),
		idPrefix(positions.Key{Dev: 1, Ino: 3}, 3, 0),
		idPrefix(k, 4, 0),
		idPrefix(k, 3, 1),
	} {
		if other == a {
			t.Errorf("idPrefix %q repeats for a different identity", a)
		}
	}
}
