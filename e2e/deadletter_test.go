package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deadLetters reads the dead-letter files under data_dir (tolerating a member being written
// unless strict) and returns their lines.
func (e *env) deadLetters(strict bool) (lines, where []string) {
	e.t.Helper()
	files := findFiles(e.t, filepath.Join(e.dataDir, "deadletter"), ".json.gz")
	return readGzipLines(e.t, files, strict)
}

// documentIn finds the skiff document inside a dead-letter entry: an object (or a string holding
// one) that has "message" and "@timestamp".
func documentIn(v any) (json.RawMessage, bool) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["message"]; ok {
			if _, ok := x["@timestamp"]; ok {
				b, err := json.Marshal(x)
				return b, err == nil
			}
		}
		for _, c := range x {
			if d, ok := documentIn(c); ok {
				return d, true
			}
		}
	case []any:
		for _, c := range x {
			if d, ok := documentIn(c); ok {
				return d, true
			}
		}
	case string:
		s := strings.TrimSpace(x)
		if strings.HasPrefix(s, "{") {
			var inner any
			if json.Unmarshal([]byte(s), &inner) == nil {
				return documentIn(inner)
			}
		}
	}
	return nil, false
}

// TestDeadLetter: the test creates the output's index beforehand with a mapping that conflicts
// with skiff's documents for malformed lines (skiff.parse_error is a date there), so
// Elasticsearch rejects exactly those with a 400. They must land in
// <data_dir>/deadletter/*.json.gz with the reason, the rest must be delivered, skiff must not
// retry the rejected ones, and after a restart nothing is sent again.
func TestDeadLetter(t *testing.T) {
	e := newEnv(t, true)
	index := e.index + "-conflict"
	esJSON(t, http.MethodPut, "/"+index, map[string]any{
		"mappings": map[string]any{"properties": map[string]any{
			"skiff": map[string]any{"properties": map[string]any{
				"parse_error": map[string]any{"type": "date"},
			}},
		}},
	}, nil)

	w := newWorkload(t, e.root, 4, 3)
	defer w.closeAll()
	w.malformedPerMille = 40
	w.writeRound(300)
	malformed := map[string]bool{}
	for seq, m := range w.want {
		if m.malformed {
			malformed[seq] = true
		}
	}
	if len(malformed) == 0 {
		t.Fatal("the workload wrote no malformed lines")
	}
	t.Logf("%d records written, %d of them malformed (to be rejected)", w.expected(), len(malformed))

	out := e.esOutput("es-dead")
	out["index"] = index
	cfg := e.writeConfig("skiff.yaml", e.config(out))
	p := e.start(cfg)
	e.waitFor("documents in Elasticsearch", w.expected()-len(malformed), p, func() int { return e.count(nil) })
	e.waitFor("dead letters", len(malformed), p, func() int { l, _ := e.deadLetters(false); return len(l) })

	// Nothing loops: with everything finished, the request and retry counters stand still.
	m1, err := e.metrics()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	m2, err := e.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"skiff_output_requests_total", "skiff_output_retried_records_total"} {
		if a, b := metricSum(m1, name, `output="es-dead"`), metricSum(m2, name, `output="es-dead"`); a != b {
			t.Errorf("%s grew from %g to %g while there was nothing to send", name, a, b)
		}
	}
	if r := metricSum(m2, "skiff_output_records_total", `output="es-dead"`, `status="rejected"`); int(r) != len(malformed) {
		t.Errorf(`skiff_output_records_total{status="rejected"} = %g, want %d`, r, len(malformed))
	}
	p.mustRun()
	p.term()

	lines, where := e.deadLetters(true)
	checkDeadLetters(t, lines, where, malformed)
	if len(lines) > 0 {
		t.Logf("a dead letter: %s", truncate(lines[0], 600))
	}

	// Restart: positions are past the rejected lines, so nothing is sent or dead-lettered again.
	// New lines are the barrier that shows skiff is reading again.
	w.malformedPerMille = 0
	w.writeRound(5)
	p = e.start(cfg)
	e.waitFor("documents in Elasticsearch after restart", w.expected()-len(malformed), p, func() int { return e.count(nil) })
	time.Sleep(2 * time.Second)
	p.term()
	lines2, where2 := e.deadLetters(true)
	if len(lines2) != len(lines) {
		t.Errorf("dead letters grew from %d to %d lines after the restart", len(lines), len(lines2))
	}

	docs := e.allDocs()
	for i, l := range lines2 {
		var v any
		if json.Unmarshal([]byte(l), &v) != nil {
			continue // reported by checkDeadLetters
		}
		raw, ok := documentIn(v)
		if !ok {
			continue
		}
		var d doc
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("%s: document: %v", where2[i], err)
			continue
		}
		d.where = where2[i]
		docs = append(docs, d)
	}
	w.verify(docs)
}

// checkDeadLetters checks that the dead-letter lines are JSON, one per rejected record, each with
// the document and Elasticsearch's reason.
func checkDeadLetters(t *testing.T, lines, where []string, rejected map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for i, l := range lines {
		var v any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("%s: not JSON: %v: %s", where[i], err, truncate(l, 300))
			continue
		}
		if _, ok := documentIn(v); !ok {
			t.Errorf("%s: no document (an object with message and @timestamp) in %s", where[i], truncate(l, 300))
		}
		if !strings.Contains(l, "failed to parse field [skiff.parse_error]") {
			t.Errorf("%s: Elasticsearch's reason (failed to parse field [skiff.parse_error] …) missing: %s", where[i], truncate(l, 500))
		}
		m := seqRe.FindStringSubmatch(l)
		switch {
		case m == nil:
			t.Errorf("%s: no sequence id: %s", where[i], truncate(l, 300))
		case !rejected[m[1]]:
			t.Errorf("%s: seq %s was not a rejected record", where[i], m[1])
		case seen[m[1]]:
			t.Errorf("%s: seq %s dead-lettered twice", where[i], m[1])
		default:
			seen[m[1]] = true
		}
	}
	if len(seen) != len(rejected) {
		t.Errorf("%d rejected records in the dead-letter files, want %d", len(seen), len(rejected))
	}
}
