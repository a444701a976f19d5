package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileOutput: a file output next to the Elasticsearch output writes the same documents, one
// JSON line each, into gzip files (every member readable) under its path template, exactly once.
// The Elasticsearch index it creates has skiff's template mapping.
func TestFileOutput(t *testing.T) {
	e := newEnv(t, true)
	w := newWorkload(t, e.root, 10, 5)
	defer w.closeAll()
	outDir := filepath.Join(e.dir, "out")
	cfg := e.writeConfig("skiff.yaml", e.config(e.esOutput("es-file"), map[string]any{
		"name":           "archive",
		"type":           "file",
		"match":          []string{"**"},
		"path":           filepath.Join(outDir, "{tag}/%Y%m%d%H.log.gz"),
		"flush_interval": "200ms",
	}))
	p := e.start(cfg)
	for range 3 {
		w.writeRound(200)
	}
	e.waitFor("documents in Elasticsearch", w.expected(), p, func() int { return e.count(nil) })
	e.checkMapping()
	e.waitFor("lines in gzip files", w.expected(), p, func() int {
		l, _ := readGzipLines(t, findFiles(t, outDir, ".log.gz"), false)
		return len(l)
	})
	p.term()

	files := findFiles(t, outDir, ".log.gz")
	lines, where := readGzipLines(t, files, true)
	fileDocs := make([]doc, 0, len(lines))
	for i, l := range lines {
		var d doc
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Errorf("%s: not a JSON document: %v: %s", where[i], err, truncate(l, 300))
			continue
		}
		d.where = where[i]
		// The path template puts each record under its tag's directory.
		if dir := filepath.Base(filepath.Dir(strings.SplitN(where[i], ":", 2)[0])); dir != d.Tag {
			t.Errorf("%s: document with tag %q in directory %q", where[i], d.Tag, dir)
		}
		fileDocs = append(fileDocs, d)
	}
	t.Log("file output:")
	inFiles := w.verify(fileDocs)
	t.Log("elasticsearch output:")
	inES := w.verify(e.allDocs())
	diff := 0
	for seq, fd := range inFiles {
		ed, ok := inES[seq]
		if !ok {
			continue // reported by verify
		}
		fd.where, ed.where = "", ""
		if !equalDocs(fd, ed) {
			if diff++; diff <= 5 {
				t.Errorf("seq %s: the file and Elasticsearch documents differ:\nfile %+v\nes   %+v", seq, fd, ed)
			}
		}
	}
}

func equalDocs(a, b doc) bool {
	ao, bo := a.Log.Offset, b.Log.Offset
	a.Log.Offset, b.Log.Offset = nil, nil
	if (ao == nil) != (bo == nil) || ao != nil && *ao != *bo {
		return false
	}
	return a == b
}
