package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/internal/loggen"
	"github.com/skiff-logs/skiff/parsers"
)

// The tests in this file check the harness itself, without skiff or Elasticsearch, so that a
// failing end-to-end test points at skiff and not at the generator or the checker.

// TestWorkloadSelfCheck: the files the workload writes, read back with skiff's own parsers,
// hold exactly the records the workload expects, and the workload exercises what it claims
// (long messages, P fragments splitting a character, interleaved streams, malformed lines).
func TestWorkloadSelfCheck(t *testing.T) {
	root := t.TempDir()
	w := newWorkload(t, root, 6, 9)
	w.malformedPerMille = 20
	w.writeRound(300)
	w.rotate(w.files[0])
	w.writeRound(300)
	w.copyTruncate(w.files[1])
	w.writeRound(300)
	w.closeAll()

	var docs []doc
	splitRunes := 0
	for _, f := range w.files {
		// Rotated and copied files first, then what 0.log holds now.
		paths := append(append([]string{}, f.rotated...), f.c.PodsPath(root))
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if f.format == loggen.CRI {
				for _, line := range bytes.Split(data, []byte("\n")) {
					if fields := bytes.SplitN(line, []byte(" "), 4); len(fields) == 4 && string(fields[2]) == "P" && !utf8.Valid(fields[3]) {
						splitRunes++
					}
				}
			}
			docs = append(docs, parseFile(t, w, f, data)...)
		}
	}
	if _, problems := w.check(docs); problems != "" {
		t.Fatal(problems)
	}
	malformed, long, interleaved := 0, 0, 0
	for _, m := range w.want {
		switch {
		case m.malformed:
			malformed++
		case len(m.msg) > 16*1024:
			long++
		case strings.Contains(m.msg, " interleaved on "):
			interleaved++
		}
	}
	t.Logf("%d records: %d malformed, %d over 16 KiB, %d interleaved, %d P fragments ending inside a character",
		len(w.want), malformed, long, interleaved, splitRunes)
	if malformed == 0 || long == 0 || interleaved == 0 || splitRunes == 0 {
		t.Error("the workload does not exercise every case it claims to")
	}
}

// parseFile parses one file's bytes with skiff's parser and makes the documents skiff would.
func parseFile(t *testing.T, w *workload, f *logFile, data []byte) []doc {
	t.Helper()
	var docs []doc
	var p parsers.Parser
	var off int64
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			t.Fatalf("%s: last line has no newline", f.c.PodsPath(w.root))
		}
		line := data[:i]
		if p == nil {
			p = parsers.Detect(line, 1<<20)
		}
		var r event.Record
		if p.Parse(line, off, &r) {
			d := w.perfectDoc(f)
			d.Message, d.Stream = string(r.Message), r.Stream
			d.TimestampNanos = r.Time.UTC().Format("2006-01-02T15:04:05.000000000Z")
			d.Timestamp = r.Time.UTC().Format("2006-01-02T15:04:05.000Z")
			d.Skiff.ParseError = r.Flags&event.FlagParseError != 0
			o := r.Offset
			d.Log.Offset = &o
			docs = append(docs, d)
		}
		off += int64(i + 1)
		data = data[i+1:]
	}
	return docs
}

// perfectDoc is a document with f's path-derived fields, as skiff writes them.
func (w *workload) perfectDoc(f *logFile) doc {
	var d doc
	d.Tag = f.tag()
	d.Kubernetes.Namespace, d.Kubernetes.Pod.Name, d.Kubernetes.Container.Name = f.c.Namespace, f.c.Pod, f.c.Name
	d.Container.ID = f.c.ID
	d.Log.File.Path = f.c.ContainersPath(w.root)
	d.where = f.c.ContainersPath(w.root)
	zero := int64(0)
	d.Log.Offset = &zero
	return d
}

// TestCheckFindsProblems: the checker reports every kind of wrong document.
func TestCheckFindsProblems(t *testing.T) {
	w := newWorkload(t, t.TempDir(), 2, 10)
	w.malformedPerMille = 0 // so that stream and time are checked on every document
	w.writeRound(40)
	w.closeAll()
	good := func() []doc {
		var docs []doc
		for _, m := range w.want {
			d := w.perfectDoc(m.file)
			d.Message, d.Stream, d.Skiff.ParseError = m.msg, m.stream, m.malformed
			d.TimestampNanos = m.time.UTC().Format("2006-01-02T15:04:05.000000000Z")
			d.Timestamp = m.time.UTC().Format("2006-01-02T15:04:05.000Z")
			docs = append(docs, d)
		}
		return docs
	}
	if _, problems := w.check(good()); problems != "" {
		t.Fatalf("perfect documents: %s", problems)
	}
	tests := []struct {
		kind   string
		mutate func(docs []doc) []doc
	}{
		{"message", func(d []doc) []doc { d[0].Message += "x"; return d }},
		{"message", func(d []doc) []doc { d[0].Message = strings.Replace(d[0].Message, " ", "\ufffd", 1); return d }},
		{"stream", func(d []doc) []doc { d[0].Stream = "stdin"; d[0].Skiff.ParseError = false; return d }},
		{"time", func(d []doc) []doc { d[0].TimestampNanos = "2001-01-01T00:00:00.000000000Z"; return d }},
		{"duplicate", func(d []doc) []doc { return append(d, d[3]) }},
		{"missing", func(d []doc) []doc { return d[1:] }},
		{"unexpected", func(d []doc) []doc { x := d[0]; x.Message = "no id"; return append(d, x) }},
		{"unexpected", func(d []doc) []doc { x := d[0]; x.Message = "seq=999-99999 never written"; return append(d, x) }},
		{"tag", func(d []doc) []doc { d[0].Tag = "kube.other"; return d }},
		{"kubernetes", func(d []doc) []doc { d[0].Kubernetes.Pod.Name = "other"; return d }},
		{"kubernetes", func(d []doc) []doc { d[0].Container.ID = ""; return d }},
		{"flags", func(d []doc) []doc { d[0].Skiff.ParseError = !d[0].Skiff.ParseError; return d }},
		{"path", func(d []doc) []doc { d[0].Log.File.Path = "/elsewhere"; return d }},
		{"offset", func(d []doc) []doc { d[0].Log.Offset = nil; return d }},
	}
	for _, tc := range tests {
		_, problems := w.check(tc.mutate(good()))
		if !strings.Contains(problems, "\n"+tc.kind+": ") {
			t.Errorf("a %s problem was not reported; report: %q", tc.kind, problems)
		}
	}
}
