package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/internal/loggen"
)

// workload writes container log files in the kubelet layout and remembers every message it wrote,
// so that a test can check that each arrived exactly once, byte for byte.
//
// Every message carries a sequence id "seq=<file>-<n>" (three and five digits) near its start;
// the rest is filler that never contains '=', so the first "seq=" of a message is its id.
type workload struct {
	t     testing.TB
	root  string
	rng   *rand.Rand
	base  time.Time
	files []*logFile
	// malformedPerMille is how many lines in a thousand are malformed (default 5).
	malformedPerMille int

	mu   sync.Mutex
	want map[string]*wantMsg // by sequence id
}

// logFile is one container's log, possibly rotated, truncated or deleted along the way.
type logFile struct {
	n      int
	c      loggen.Container
	format loggen.Format
	f      *os.File
	next   int // next message number
	// written counts the records written so far (what Elasticsearch must eventually hold).
	written int
	// fresh: the next line starts a file, so it must be well-formed (the parser is chosen by
	// the first line).
	fresh   bool
	deleted bool
	// rotated holds the paths it was renamed or copied to.
	rotated []string
}

// wantMsg is what one record's document must say.
type wantMsg struct {
	file      *logFile
	msg       string
	stream    string
	time      time.Time
	malformed bool
}

// tag is the record tag skiff derives from the file name.
func (f *logFile) tag() string {
	return "kube." + f.c.Namespace + "." + f.c.Pod + "." + f.c.Name
}

// newWorkload creates n containers (even ones CRI, odd ones docker json-file) under root.
func newWorkload(t testing.TB, root string, n int, seed uint64) *workload {
	t.Helper()
	w := &workload{
		t:    t,
		root: root,
		rng:  rand.New(rand.NewPCG(seed, seed^0x5eed)),
		// Record times are recent, so a date-based index name is today's.
		base: time.Now().Add(-10 * time.Minute).Truncate(time.Second),
		want: map[string]*wantMsg{},

		malformedPerMille: 5,
	}
	for i := range n {
		format := loggen.CRI
		if i%2 == 1 {
			format = loggen.Docker
		}
		c := loggen.Container{
			Namespace: fmt.Sprintf("ns-%d", i%3),
			Pod:       fmt.Sprintf("app-%03d-7d9f8b6c5-x%03d", i, i),
			UID:       fmt.Sprintf("%08x-58a4-4c1e-9d0b-%012x", i, seed&0xffffffffffff),
			Name:      fmt.Sprintf("ctr%d", i),
			ID:        fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15+seed),
		}
		f, err := c.Create(root)
		if err != nil {
			t.Fatal(err)
		}
		w.files = append(w.files, &logFile{n: i, c: c, format: format, f: f, fresh: true})
	}
	return w
}

// expected is the number of records written so far.
func (w *workload) expected() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.want)
}

// written is the number of records written so far into f (including rotated copies).
func (w *workload) written(f *logFile) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return f.written
}

// Filler: printable ASCII except '=' (so "seq=" stays unique), with characters JSON must escape
// (", \, and for docker <, >, &, tab), and multi-byte UTF-8 of 2, 3 and 4 bytes, some of which CRI
// cuts will split.
const asciiFiller = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/()[]{}!?*+#'\"\\<>&\t"

var multiFiller = []string{"é", "ß", "Ж", "€", "東", "京", "☕", "→", "\u2028", "😀", "🚢", "𝄞"}

// message builds one message of a random length (mostly short, some up to 4 KiB, about 1% over
// 16 KiB up to 64 KiB) that starts with its sequence id, and for CRI the byte positions where the
// runtime splits it into P fragments.
func (w *workload) message(f *logFile, seq string) (string, []int) {
	var size int
	switch r := w.rng.Float64(); {
	case r < 0.01:
		size = 16*1024 + 1 + w.rng.IntN(48*1024)
	case r < 0.10:
		size = 200 + w.rng.IntN(4096-200)
	default:
		size = 10 + w.rng.IntN(190)
	}
	b := make([]byte, 0, size+4)
	b = append(b, "seq="+seq+" "...)
	for len(b) < size {
		var piece string
		if w.rng.IntN(5) == 0 {
			piece = multiFiller[w.rng.IntN(len(multiFiller))]
		} else {
			i := w.rng.IntN(len(asciiFiller))
			piece = asciiFiller[i : i+1]
		}
		if f.format == loggen.Docker {
			// Docker splits at 16 KiB byte boundaries and encodes each piece on its own, so a
			// character across a boundary becomes U+FFFD in the file itself (real docker does the
			// same). Keep boundaries on character starts so the expected text is exact.
			if next := (len(b)/loggen.DockerPiece + 1) * loggen.DockerPiece; len(b)+len(piece) > next {
				for len(b) < next {
					b = append(b, 'x')
				}
				continue
			}
		}
		b = append(b, piece...)
	}
	msg := string(b)
	if f.format != loggen.CRI {
		return msg, nil
	}
	var cuts []int
	switch {
	case len(msg) > 16*1024:
		// Like containerd: a P line every 16 KiB, here jittered so some cuts split characters.
		for c := 16*1024 + w.rng.IntN(64) - 32; c < len(msg); c += 16*1024 + w.rng.IntN(64) - 32 {
			cuts = append(cuts, c)
		}
	case w.rng.IntN(10) == 0:
		for range 1 + w.rng.IntN(3) {
			cuts = append(cuts, 1+w.rng.IntN(len(msg)-1))
		}
		sort.Ints(cuts)
	}
	return msg, cuts
}

// malformedLine is a line that is not in f's format; it must arrive as the raw message with
// skiff.parse_error.
func (w *workload) malformedLine(f *logFile, seq string) string {
	if f.format == loggen.Docker {
		if w.rng.IntN(2) == 0 {
			return `{"log":"unterminated json seq=` + seq + ` lost its end`
		}
		return "plain text in a docker log seq=" + seq + " ok"
	}
	if w.rng.IntN(2) == 0 {
		return "malformed seq=" + seq + " this is not a CRI line"
	}
	return w.base.Format(time.RFC3339Nano) + " stdin F bad stream seq=" + seq
}

// encodeRound encodes the next n messages of f and records them as expected.
func (w *workload) encodeRound(f *logFile, n int) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	var buf []byte
	for i := 0; i < n; i++ {
		seq := fmt.Sprintf("%03d-%05d", f.n, f.next)
		f.next++
		f.written++
		if !f.fresh && w.rng.IntN(1000) < w.malformedPerMille {
			line := w.malformedLine(f, seq)
			buf = append(append(buf, line...), '\n')
			w.want[seq] = &wantMsg{file: f, msg: line, malformed: true}
			continue
		}
		f.fresh = false
		t := w.base.Add(time.Duration(f.next)*time.Millisecond + time.Duration(f.n)*time.Microsecond + time.Duration(w.rng.IntN(1000)))
		stream := "stdout"
		if w.rng.IntN(3) == 0 {
			stream = "stderr"
		}
		msg, cuts := w.message(f, seq)
		w.want[seq] = &wantMsg{file: f, msg: msg, stream: stream, time: t}
		if f.format == loggen.CRI && len(cuts) > 0 && i+1 < n && w.rng.IntN(3) == 0 {
			// The runtime writes stdout and stderr from separate goroutines: a line of the
			// other stream may land between the fragments of a split one.
			i++
			seq2 := fmt.Sprintf("%03d-%05d", f.n, f.next)
			f.next++
			f.written++
			other := "stderr"
			if stream == "stderr" {
				other = "stdout"
			}
			t2 := t.Add(time.Microsecond)
			msg2 := "seq=" + seq2 + " interleaved on " + other + " ☕"
			w.want[seq2] = &wantMsg{file: f, msg: msg2, stream: other, time: t2}
			lines := loggen.AppendLine(nil, f.format, t, stream, msg, cuts)
			firstP := bytes.IndexByte(lines, '\n') + 1
			buf = append(buf, lines[:firstP]...)
			buf = loggen.AppendLine(buf, f.format, t2, other, msg2, nil)
			buf = append(buf, lines[firstP:]...)
			continue
		}
		buf = loggen.AppendLine(buf, f.format, t, stream, msg, cuts)
	}
	return buf
}

// writeRound appends n messages to every file not deleted. Each file's text is written in two
// parts cut at a random byte, the second after all first parts, so skiff sees partial last lines.
func (w *workload) writeRound(n int) {
	w.t.Helper()
	type pending struct {
		f    *logFile
		rest []byte
	}
	var later []pending
	for _, f := range w.files {
		if f.deleted {
			continue
		}
		buf := w.encodeRound(f, n)
		cut := w.rng.IntN(len(buf))
		w.write(f, buf[:cut])
		later = append(later, pending{f, buf[cut:]})
	}
	time.Sleep(100 * time.Millisecond)
	for _, p := range later {
		w.write(p.f, p.rest)
	}
}

// writeTo appends n messages to f alone, in one write.
func (w *workload) writeTo(f *logFile, n int) {
	w.t.Helper()
	w.write(f, w.encodeRound(f, n))
}

func (w *workload) write(f *logFile, b []byte) {
	w.t.Helper()
	if _, err := f.f.Write(b); err != nil {
		w.t.Fatalf("write %s: %v", f.c.PodsPath(w.root), err)
	}
}

// rotate does what the kubelet does: rename 0.log to 0.log.<timestamp> and create a new 0.log at
// the same path (the /var/log/containers symlink now leads to it).
func (w *workload) rotate(f *logFile) {
	w.t.Helper()
	p := f.c.PodsPath(w.root)
	to := w.rotatedName(p)
	if err := f.f.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Rename(p, to); err != nil {
		w.t.Fatal(err)
	}
	nf, err := f.c.Create(w.root)
	if err != nil {
		w.t.Fatal(err)
	}
	f.f, f.fresh = nf, true
	f.rotated = append(f.rotated, to)
}

// rotatedName is the kubelet's name for a rotated p: p.<UTC time to the second>. When that name
// is taken (a second rotation within the second), it waits for the next second.
func (w *workload) rotatedName(p string) string {
	for {
		to := p + "." + time.Now().UTC().Format("20060102-150405")
		if _, err := os.Lstat(to); os.IsNotExist(err) {
			return to
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// copyTruncate copies 0.log to 0.log.<timestamp> and truncates 0.log to zero, as logrotate's
// copytruncate does; later writes start again at offset 0.
func (w *workload) copyTruncate(f *logFile) {
	w.t.Helper()
	p := f.c.PodsPath(w.root)
	to := w.rotatedName(p)
	src, err := os.Open(p)
	if err != nil {
		w.t.Fatal(err)
	}
	dst, err := os.Create(to)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		w.t.Fatal(err)
	}
	src.Close()
	if err := dst.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := f.f.Truncate(0); err != nil {
		w.t.Fatal(err)
	}
	f.fresh = true
	f.rotated = append(f.rotated, to)
}

// remove deletes the container's log file and its /var/log/containers symlink, as when the pod
// is removed.
func (w *workload) remove(f *logFile) {
	w.t.Helper()
	f.f.Close()
	for _, p := range []string{f.c.PodsPath(w.root), f.c.ContainersPath(w.root)} {
		if err := os.Remove(p); err != nil {
			w.t.Fatal(err)
		}
	}
	f.deleted = true
}

// closeAll closes the open log files (the test directory's cleanup needs no more).
func (w *workload) closeAll() {
	for _, f := range w.files {
		if !f.deleted {
			f.f.Close()
		}
	}
}

var seqRe = regexp.MustCompile(`seq=(\d{3}-\d{5})`)

// verify checks docs against everything written (see check) and fails the test on any problem.
// It returns the documents by sequence id.
func (w *workload) verify(docs []doc) map[string]doc {
	w.t.Helper()
	seen, problems := w.check(docs)
	if problems != "" {
		w.t.Error(problems)
	} else {
		w.t.Logf("all %d expected records present exactly once, byte-exact", len(seen))
	}
	return seen
}

// check compares docs with everything written: each expected record exactly once, byte-exact
// message, stream, time, tag and the Kubernetes fields the path tells; nothing unexpected. It
// returns the documents by sequence id and a description of the problems ("" if none).
func (w *workload) check(docs []doc) (map[string]doc, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := make(map[string]doc, len(docs))
	var problems []string
	counts := map[string]int{}
	report := func(kind, format string, args ...any) {
		counts[kind]++
		if counts[kind] <= 10 {
			problems = append(problems, kind+": "+fmt.Sprintf(format, args...))
		}
	}
	for _, d := range docs {
		m := seqRe.FindStringSubmatch(d.Message)
		if m == nil {
			report("unexpected", "%s has no sequence id: message %q", d.where, truncate(d.Message, 200))
			continue
		}
		seq := m[1]
		want := w.want[seq]
		if want == nil {
			report("unexpected", "%s: seq %s was never written: message %q", d.where, seq, truncate(d.Message, 200))
			continue
		}
		if prev, dup := seen[seq]; dup {
			report("duplicate", "seq %s in %s and %s (offsets %v, %v)", seq, prev.where, d.where, offset(prev), offset(d))
			continue
		}
		seen[seq] = d
		w.checkDoc(d, want, report)
	}
	for seq, want := range w.want {
		if _, ok := seen[seq]; !ok {
			kind := "missing"
			report(kind, "seq %s (%s, file %d %s, %d bytes, malformed %v, rotated %d times, deleted %v)",
				seq, formatName(want.file.format), want.file.n, want.file.c.PodsPath(w.root), len(want.msg), want.malformed, len(want.file.rotated), want.file.deleted)
		}
	}
	if len(problems) == 0 {
		return seen, ""
	}
	sort.Strings(problems)
	return seen, fmt.Sprintf("%d documents for %d expected records; problems %v (first ones below):\n%s",
		len(docs), len(w.want), counts, strings.Join(problems, "\n"))
}

func (w *workload) checkDoc(d doc, want *wantMsg, report func(kind, format string, args ...any)) {
	f := want.file
	if d.Message != want.msg {
		i := 0
		for i < len(d.Message) && i < len(want.msg) && d.Message[i] == want.msg[i] {
			i++
		}
		lo := max(0, i-20)
		report("message", "%s (%s): %d bytes, want %d; first difference at byte %d: got %q, want %q",
			d.where, formatName(f.format), len(d.Message), len(want.msg), i,
			d.Message[lo:min(len(d.Message), i+20)], want.msg[lo:min(len(want.msg), i+20)])
	}
	if want.malformed {
		if !d.Skiff.ParseError {
			report("flags", "%s: malformed line without skiff.parse_error", d.where)
		}
	} else {
		if d.Skiff.ParseError || d.Skiff.Truncated || d.Skiff.InvalidUTF8 {
			report("flags", "%s: unexpected skiff flags %+v", d.where, d.Skiff)
		}
		if d.Stream != want.stream {
			report("stream", "%s: stream %q, want %q", d.where, d.Stream, want.stream)
		}
		if wt := want.time.UTC().Format("2006-01-02T15:04:05.000000000Z"); d.TimestampNanos != wt {
			report("time", "%s: @timestamp_nanos %q, want %q", d.where, d.TimestampNanos, wt)
		}
		if wt := want.time.UTC().Format("2006-01-02T15:04:05.000Z"); d.Timestamp != wt {
			report("time", "%s: @timestamp %q, want %q", d.where, d.Timestamp, wt)
		}
	}
	if d.Tag != f.tag() {
		report("tag", "%s: tag %q, want %q", d.where, d.Tag, f.tag())
	}
	k := d.Kubernetes
	if k.Namespace != f.c.Namespace || k.Pod.Name != f.c.Pod || k.Container.Name != f.c.Name ||
		(k.Pod.UID != "" && k.Pod.UID != f.c.UID) || (d.Container.ID != "" && d.Container.ID != f.c.ID) ||
		(k.Pod.UID == "" && d.Container.ID == "") {
		report("kubernetes", "%s: kubernetes %+v container.id %q, want namespace %q pod %q uid %q container %q id %q",
			d.where, k, d.Container.ID, f.c.Namespace, f.c.Pod, f.c.UID, f.c.Name, f.c.ID)
	}
	if p := d.Log.File.Path; p != f.c.ContainersPath(w.root) && !strings.HasPrefix(p, f.c.PodsPath(w.root)) {
		report("path", "%s: log.file.path %q, want %q or %q", d.where, p, f.c.ContainersPath(w.root), f.c.PodsPath(w.root))
	}
	if d.Log.Offset == nil || *d.Log.Offset < 0 {
		report("offset", "%s: log.offset %v", d.where, offset(d))
	}
}

func offset(d doc) any {
	if d.Log.Offset == nil {
		return nil
	}
	return *d.Log.Offset
}

func formatName(f loggen.Format) string {
	if f == loggen.Docker {
		return "docker"
	}
	return "cri"
}
