// Package reliability is skiff's reliability suite (issue 5): the built binary against a real
// Elasticsearch of the suite's own, behind a fault-injecting proxy (internal/faultproxy), under
// SIGKILLs, an Elasticsearch outage, a 429 storm, fast kubelet rotation, a read-only block and a
// long outage with a full spool. Every scenario counts the lines written, the documents in
// Elasticsearch, the lines lost and duplicated, skiff's peak RSS and the time to drain, asserts
// that nothing was lost or duplicated, and adds a row to one table printed at the end.
//
// By default (CI, `go test ./e2e/...`) every scenario runs in a short form of a few minutes in
// all; SKIFF_RELIABILITY=full (`make reliability`) runs the full durations. The table is also
// written as markdown to the file named by SKIFF_RELIABILITY_TABLE, when set.
//
// The suite starts and restarts its own Elasticsearch with scripts/elasticsearch.sh in a
// temporary directory; it never uses the shared instance of $SKIFF_ES_URL, which it must stop.
package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	binDir    string
	buildOnce sync.Once
	skiffBin  string
	buildErr  error
	// full is true for SKIFF_RELIABILITY=full.
	full = os.Getenv("SKIFF_RELIABILITY") == "full"
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "skiff-reliability-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(1)
	}
	start := time.Now()
	code := m.Run()
	stopSuite()
	_ = os.RemoveAll(binDir)
	if err := printTable(time.Since(start)); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// binary builds cmd/skiff on first use and returns its path, failing t when it does not build.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		skiffBin = filepath.Join(binDir, "skiff")
		// The test's working directory is e2e/reliability.
		if out, err := exec.Command("go", "build", "-o", skiffBin, "../../cmd/skiff").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/skiff: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return skiffBin
}

// pick returns short, or long with SKIFF_RELIABILITY=full.
func pick[T any](short, long T) T {
	if full {
		return long
	}
	return short
}

// row is one scenario's line of the table.
type row struct {
	scenario string
	written  int
	docs     int
	lost     int
	dup      int
	peakRSS  uint64
	drain    time.Duration
	note     string
	failed   bool
}

var (
	rowsMu sync.Mutex
	rows   []*row
)

// addRow registers r for the table; the scenario fills it in as it goes, and its result is
// taken from t when the test ends.
func addRow(t *testing.T, scenario string) *row {
	r := &row{scenario: scenario}
	rowsMu.Lock()
	rows = append(rows, r)
	rowsMu.Unlock()
	t.Cleanup(func() {
		r.failed = t.Failed()
		if r.note != "" {
			t.Log(r.note)
		}
	})
	return r
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// table renders the rows as markdown.
func table() string {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	var b strings.Builder
	b.WriteString("| scenario | lines written | documents in Elasticsearch | lost | duplicated | peak RSS | time to drain | result | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rows {
		res := "pass"
		if r.failed {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %s | %s |\n", r.scenario, r.written, r.docs, r.lost, r.dup,
			mib(r.peakRSS), r.drain.Round(100*time.Millisecond), res, strings.ReplaceAll(r.note, "|", "/"))
	}
	return b.String()
}

// printTable prints the table and writes it to $SKIFF_RELIABILITY_TABLE when set.
func printTable(elapsed time.Duration) error {
	rowsMu.Lock()
	n := len(rows)
	rowsMu.Unlock()
	if n == 0 {
		return nil
	}
	form := "short form, `go test -v ./e2e/reliability/`"
	if full {
		form = "full form, `make reliability` (`SKIFF_RELIABILITY=full go test -v ./e2e/reliability/`)"
	}
	head := fmt.Sprintf("skiff reliability suite, %s; %s UTC, %s, %v in all.\n\n", form,
		time.Now().UTC().Format("2006-01-02 15:04"), revision(), elapsed.Round(time.Second))
	t := head + table()
	fmt.Print("\n" + t)
	if p := os.Getenv("SKIFF_RELIABILITY_TABLE"); p != "" {
		if err := os.WriteFile(p, []byte(t), 0o644); err != nil {
			return fmt.Errorf("write table %s: %w", p, err)
		}
	}
	return nil
}

// revision is the checkout's commit, "-dirty" when it has changes.
func revision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "commit unknown"
	}
	return "commit " + strings.TrimSpace(string(out))
}
