package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/internal/loggen"
)

// hostileMaxLine is the max_line_bytes of TestHostileInput.
const hostileMaxLine = 256 << 10

// TestHostileInput starts skiff on hostile input and state, and checks in Elasticsearch what
// each record became:
//   - a CRI file with NUL bytes inside a message (kept as they are), a line of nothing but NULs
//     (kept raw, parse_error), invalid UTF-8 (replaced by U+FFFD, invalid_utf8), a 100 MiB line
//     written over several seconds before its newline (its first max_line_bytes kept, truncated,
//     the cut bytes counted, skiff's peak RSS bounded) and a line after it (intact);
//   - a docker json-file with broken JSON lines between good ones (kept raw, parse_error,
//     counted);
//   - a spool file in data_dir whose last gzip member is torn, next to a sound one (the complete
//     members replayed, the torn file moved to spool/corrupt/ and reported);
//   - an unreadable positions file (moved aside with an error in the log; every file is then
//     started per its input's start_at: from the beginning, or for start_at: end only what is
//     written after the start).
func TestHostileInput(t *testing.T) {
	e := newEnv(t, true)
	base := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	ts := func(i int) string { return base.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano) }

	// The corrupt positions file and the spool files skiff finds at its start.
	if err := os.WriteFile(filepath.Join(e.dataDir, "positions.json"), []byte("{\"version\":1,\"files\":[{\"dev\":1,\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	spoolIndex := e.index + "-spool"
	spoolDir := filepath.Join(e.dataDir, "spool", "es-hostile")
	member := func(ids ...string) []byte {
		var bulk bytes.Buffer
		for _, id := range ids {
			fmt.Fprintf(&bulk, "{\"create\":{\"_index\":%q,\"_id\":%q}}\n{\"@timestamp\":%q,\"message\":%q}\n", spoolIndex, id, ts(0), "spooled "+id)
		}
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		if _, err := zw.Write(bulk.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return z.Bytes()
	}
	if err := os.MkdirAll(spoolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	torn := member("s-3", "s-4")
	now := time.Now().UnixNano()
	tornName := strconv.FormatInt(now, 10) + ".ndjson.gz"
	writeFile(t, filepath.Join(spoolDir, tornName), string(bytes.Join([][]byte{member("s-1"), member("s-2"), torn[:len(torn)/2]}, nil)))
	writeFile(t, filepath.Join(spoolDir, strconv.FormatInt(now+1, 10)+".ndjson.gz"), string(member("s-5", "s-6")))

	// The container logs.
	newContainer := func(root, name string, n int) (loggen.Container, *os.File) {
		c := loggen.Container{
			Namespace: "hostile", Pod: name + "-7d9f8b6c5-x00" + strconv.Itoa(n),
			UID: fmt.Sprintf("%08x-58a4-4c1e-9d0b-%012x", n, 7), Name: name, ID: fmt.Sprintf("%064x", n),
		}
		f, err := c.Create(root)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return c, f
	}
	write := func(f *os.File, s string) {
		t.Helper()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	_, cri := newContainer(e.root, "cri", 1)
	_, docker := newContainer(e.root, "docker", 2)
	lateRoot := filepath.Join(e.dir, "late-node")
	_, late := newContainer(lateRoot, "late", 3)

	nuls := strings.Repeat("\x00", 1000)
	cri1 := "seq=cri-1 before the hostile lines"
	cri2 := "seq=cri-2 NUL\x00inside\x00\x00the message"
	cri4raw := "seq=cri-4 invalid \xff\xfe UTF-8 \xc3"
	cri4 := "seq=cri-4 invalid \uFFFD\uFFFD UTF-8 \uFFFD"
	cri6 := "seq=cri-6 after the 100 MiB line"
	write(cri, ts(1)+" stdout F "+cri1+"\n")
	write(cri, ts(2)+" stderr F "+cri2+"\n")
	write(cri, nuls+"\n")
	write(cri, ts(4)+" stdout F "+cri4raw+"\n")

	dockerLine := func(i int, msg string) string {
		return fmt.Sprintf("{\"log\":%q,\"stream\":\"stdout\",\"time\":%q}\n", msg+"\n", ts(i))
	}
	docker2 := `{"log":"seq=docker-2 broken JSON, its end is lost`
	docker3 := "seq=docker-3 not JSON at all"
	write(docker, dockerLine(1, "seq=docker-1 good"))
	write(docker, docker2+"\n")
	write(docker, docker3+"\n")
	write(docker, dockerLine(4, "seq=docker-4 good again"))

	for i := range 5 {
		write(late, ts(i)+" stdout F seq=late-old-"+strconv.Itoa(i)+" written before skiff started\n")
	}

	cfg := e.config(e.esOutput("es-hostile"))
	inputs := cfg["inputs"].([]map[string]any)
	inputs[0]["max_line_bytes"] = strconv.Itoa(hostileMaxLine)
	cfg["inputs"] = append(inputs, map[string]any{
		"name":          "late",
		"type":          "containers",
		"paths":         []string{filepath.Join(lateRoot, "var/log/containers/*.log")},
		"start_at":      "end",
		"scan_interval": "500ms",
	})
	p := e.start(e.writeConfig("hostile.yaml", cfg))
	metric := func(name string, labels ...string) int {
		m, err := e.metrics()
		if err != nil {
			return -1
		}
		return int(metricSum(m, name, labels...))
	}
	e.waitFor("files open in the start_at: end input", 1, p, func() int { return metric("skiff_files_open", `input="late"`) })
	write(late, ts(10)+" stdout F seq=late-new-1 written after skiff started\n")

	// The 100 MiB line: written in 10 MiB pieces over about five seconds, then its newline.
	const longSize = 100 << 20
	longPrefix := ts(5) + " stdout F seq=cri-5 "
	write(cri, longPrefix)
	piece := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	for written := len(longPrefix); written < longSize; {
		n := min(len(piece), longSize-written)
		if _, err := cri.Write(piece[:n]); err != nil {
			t.Fatal(err)
		}
		written += n
		time.Sleep(500 * time.Millisecond)
	}
	write(cri, "\n")
	write(cri, ts(6)+" stdout F "+cri6+"\n")

	const want = 6 + 4 + 1 + 4 // cri, docker, late (new only), spool (s-1, s-2, s-5, s-6)
	e.waitFor("documents in Elasticsearch", want, p, func() int { return e.count(nil) })
	waitUntil(t, "the torn spool file moved to spool/corrupt/", p, func() bool {
		return len(findFiles(t, filepath.Join(e.dataDir, "spool", "corrupt"), ".ndjson.gz")) == 1
	})
	hwm := peakRSS(t, p.cmd.Process.Pid)
	metrics := map[string]int{}
	for _, name := range []string{"skiff_truncated_lines_total", "skiff_truncated_bytes_total", "skiff_invalid_utf8_records_total", "skiff_parse_errors_total"} {
		metrics[name] = metric(name, `input="containers"`)
	}
	p.term()

	docs := map[string]doc{}
	var spooled []string
	for _, h := range e.rawDocs() {
		var d doc
		if err := json.Unmarshal(h.Source, &d); err != nil {
			t.Fatalf("document %s/%s: %v", h.Index, h.ID, err)
		}
		d.where = h.Index + "/" + h.ID
		if h.Index == spoolIndex {
			spooled = append(spooled, h.ID)
			continue
		}
		key := d.Message
		if m := hostileSeqRe.FindString(d.Message); m != "" {
			key = m
		}
		if _, dup := docs[key]; dup {
			t.Errorf("two documents for %q: %s and %s", truncate(key, 40), docs[key].where, d.where)
		}
		docs[key] = d
	}
	type flags struct{ parse, trunc, utf8 bool }
	check := func(key, wantMsg, stream string, f flags) {
		t.Helper()
		d, ok := docs[key]
		if !ok {
			t.Errorf("no document for %q", truncate(key, 60))
			return
		}
		if wantMsg != "" && d.Message != wantMsg {
			t.Errorf("%s: message %q (%d bytes), want %q (%d bytes)", d.where, truncate(d.Message, 100), len(d.Message), truncate(wantMsg, 100), len(wantMsg))
		}
		if stream != "" && d.Stream != stream {
			t.Errorf("%s: stream %q, want %q", d.where, d.Stream, stream)
		}
		if got := (flags{d.Skiff.ParseError, d.Skiff.Truncated, d.Skiff.InvalidUTF8}); got != f {
			t.Errorf("%s (%q): flags parse_error/truncated/invalid_utf8 = %+v, want %+v", d.where, truncate(d.Message, 60), got, f)
		}
	}
	check("seq=cri-1", cri1, "stdout", flags{})
	check("seq=cri-2", cri2, "stderr", flags{})
	check(nuls, nuls, "", flags{parse: true})
	check("seq=cri-4", cri4, "stdout", flags{utf8: true})
	// The long line's first max_line_bytes are kept: its CRI prefix, then the message.
	longKept := hostileMaxLine - len(ts(5)+" stdout F ")
	check("seq=cri-5", "seq=cri-5 "+string(bytes.Repeat([]byte("0123456789abcdef"), longKept/16+1))[:longKept-len("seq=cri-5 ")], "stdout", flags{trunc: true})
	check("seq=cri-6", cri6, "stdout", flags{})
	check("seq=docker-1", "seq=docker-1 good", "stdout", flags{})
	check("seq=docker-2", docker2, "", flags{parse: true})
	check("seq=docker-3", docker3, "", flags{parse: true})
	check("seq=docker-4", "seq=docker-4 good again", "stdout", flags{})
	check("seq=late-new-1", "seq=late-new-1 written after skiff started", "stdout", flags{})
	for key := range docs {
		if strings.HasPrefix(key, "seq=late-old") {
			t.Errorf("%s: a line written before the start reached Elasticsearch although start_at is end", docs[key].where)
		}
	}
	if got, want := strings.Join(slices.Sorted(slices.Values(spooled)), ","), "s-1,s-2,s-5,s-6"; got != want {
		t.Errorf("documents replayed from the spool: %s, want %s (the complete members)", got, want)
	}

	// Counted: one truncated line, the bytes cut off it; parse errors; invalid UTF-8.
	cut := len(longPrefix) + (longSize - len(longPrefix)) - hostileMaxLine
	for name, want := range map[string]int{
		"skiff_truncated_lines_total":      1,
		"skiff_truncated_bytes_total":      cut,
		"skiff_invalid_utf8_records_total": 1,
		"skiff_parse_errors_total":         3,
	} {
		if metrics[name] != want {
			t.Errorf("%s{input=containers} = %d, want %d", name, metrics[name], want)
		}
	}
	const rssLimit = 150 << 20
	if hwm >= rssLimit {
		t.Errorf("skiff's peak RSS (VmHWM) was %d MiB reading a 100 MiB line, want < %d MiB", hwm>>20, rssLimit>>20)
	}
	t.Logf("peak RSS (VmHWM) %d MiB; %v", hwm>>20, metrics)

	// Reported: the positions file moved aside, the torn spool file.
	logText := readText(t, p.stderr)
	for _, want := range []string{"positions file is unreadable", "SPOOL FILE CORRUPT"} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	aside, _ := filepath.Glob(filepath.Join(e.dataDir, "positions.json.corrupt-*"))
	if len(aside) != 1 {
		t.Errorf("positions files moved aside: %v, want one", aside)
	}
	if _, ok := e.positions(); !ok {
		t.Error("no positions file written after the corrupt one was moved aside")
	}
}

// hostileSeqRe finds the sequence ids of TestHostileInput's lines.
var hostileSeqRe = regexp.MustCompile(`seq=[a-z]+-(?:old-|new-)?[0-9]+`)

// peakRSS returns the VmHWM of process pid in bytes.
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
