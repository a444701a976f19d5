package elasticsearch

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/internal/estest"
)

// Tests against a real Elasticsearch (internal/estest).

// esConfig is a config for the real server, writing to indices "<prefix>-YYYY.MM.DD".
func esConfig(t *testing.T, prefix string) Config {
	url := estest.URL(t)
	estest.Do(t, "DELETE", "/"+prefix+"-*", nil)
	return Config{
		Hosts:            []string{url},
		Index:            prefix + "-%Y.%m.%d",
		FlushInterval:    20 * time.Millisecond,
		InstallTemplates: boolp(false),
	}
}

func esCount(t *testing.T, index string) int {
	t.Helper()
	estest.Do(t, "POST", "/"+index+"/_refresh", nil)
	status, body := estest.Do(t, "GET", "/"+index+"/_count", nil)
	if status != 200 {
		t.Fatalf("count %s: %d %s", index, status, body)
	}
	var c struct{ Count int }
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	return c.Count
}

func TestESDeliverExactlyOnce(t *testing.T) {
	const n = 1500
	cfg := esConfig(t, "skiff-once")
	cfg.FlushBytes = 64 << 10 // several requests, several workers
	cfg.Workers = 3
	s := newSink(t, "once")
	o := start(t, cfg)
	for i := 0; i < n; i += 100 {
		send(t, o, s.batch(i, 100, nil))
	}
	if err := closeOutput(t, o, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s.wait(time.Second)
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed", got)
	}
	index := "skiff-once-2024.01.02"
	if got := esCount(t, index); got != n {
		t.Fatalf("%s has %d documents, want %d", index, got, n)
	}
	status, body := estest.Do(t, "GET", "/"+index+"/_doc/"+s.id(42), nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", s.id(42), status, body)
	}
	var doc struct {
		Source struct {
			Message   string
			Timestamp string `json:"@timestamp"`
			Log       struct{ Offset int }
		} `json:"_source"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Source.Message != "line 42" || doc.Source.Log.Offset != 42 || doc.Source.Timestamp != "2024-01-02T03:04:05.165Z" {
		t.Errorf("document %s: %s", s.id(42), body)
	}
	if got := counter(t, o.m.delivered); got != n {
		t.Errorf("delivered = %v, want %d", got, n)
	}

	// A replay (the same records again, as after a crash before positions were saved) is all
	// 409s: delivered, and no duplicates.
	s2 := newSink(t, "once")
	cfg.Name = uniq("once-replay")
	cfg.Compression = true
	o2 := start(t, cfg)
	for i := 0; i < n; i += 500 {
		send(t, o2, s2.batch(i, 500, nil))
	}
	if err := closeOutput(t, o2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s2.wait(time.Second)
	if got := s2.failed(); got != 0 {
		t.Fatalf("replay: %d records failed", got)
	}
	if got := esCount(t, index); got != n {
		t.Fatalf("after the replay %s has %d documents, want %d", index, got, n)
	}
	if got := counter(t, o2.m.delivered); got != n {
		t.Errorf("replay delivered = %v, want %d", got, n)
	}
	if got := counter(t, o2.m.retries); got != 0 {
		t.Errorf("replay retried %v records", got)
	}
	if lines := readDeadLetters(t, o2); len(lines) != 0 {
		t.Errorf("replay wrote %d dead letters", len(lines))
	}
}

func TestESMappingConflictDeadLetter(t *testing.T) {
	cfg := esConfig(t, "skiff-conflict")
	index := "skiff-conflict-2024.01.02"
	if status, body := estest.Do(t, "PUT", "/"+index, []byte(`{"mappings":{"properties":{"code":{"type":"long"}}}}`)); status != 200 {
		t.Fatalf("create %s: %d %s", index, status, body)
	}
	s := newSink(t, "conflict")
	o := start(t, cfg)
	bad := map[int]bool{3: true, 7: true}
	send(t, o, s.batch(0, 10, func(i int) map[string]any {
		if bad[i] {
			return map[string]any{"code": "not-a-number"}
		}
		return map[string]any{"code": i}
	}))
	if err := closeOutput(t, o, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s.wait(time.Second)
	if got := s.failed(); got != 0 {
		t.Fatalf("%d records failed", got)
	}
	if got := esCount(t, index); got != 8 {
		t.Errorf("%s has %d documents, want the 8 good ones", index, got)
	}
	lines := readDeadLetters(t, o)
	if len(lines) != 2 {
		t.Fatalf("%d dead letters, want 2", len(lines))
	}
	for _, l := range lines {
		var off int
		if _, err := fmt.Sscanf(strings.TrimPrefix(l.ID, "conflict-"), "%x", &off); err != nil || !bad[off] {
			t.Errorf("dead letter for %s, want one of the bad records", l.ID)
		}
		var e struct{ Type, Reason string }
		if err := json.Unmarshal(l.Error, &e); err != nil {
			t.Fatalf("dead letter error %s: %v", l.Error, err)
		}
		if l.Status != 400 || !strings.Contains(e.Type, "parsing_exception") || !strings.Contains(e.Reason, "code") {
			t.Errorf("dead letter status %d error %s, want 400 and a parsing exception about code", l.Status, l.Error)
		}
		var doc struct{ Code string }
		if err := json.Unmarshal(l.Document, &doc); err != nil || doc.Code != "not-a-number" {
			t.Errorf("dead letter document %s (%v)", l.Document, err)
		}
		if l.Index != index || l.Output != o.cfg.Name {
			t.Errorf("dead letter index %q output %q", l.Index, l.Output)
		}
	}
	// Nothing looped: one request settled everything.
	if got := counter(t, o.m.reqOK) + counter(t, o.m.reqErr); got != 1 {
		t.Errorf("%v bulk requests, want 1", got)
	}
	if got := counter(t, o.m.rejected); got != 2 {
		t.Errorf("rejected = %v, want 2", got)
	}
	if got := counter(t, o.m.delivered); got != 8 {
		t.Errorf("delivered = %v, want 8", got)
	}
}

func TestESInvalidIDSplitsRequest(t *testing.T) {
	// An _id over 512 bytes fails the whole bulk request (action_request_validation_exception):
	// the request is halved until that record is alone, which goes to the dead-letter file.
	cfg := esConfig(t, "skiff-longid")
	s := newSink(t, "longid")
	o := start(t, cfg)
	b := s.batch(0, 6, nil)
	long := strings.Repeat("x", 600)
	b.Records[2].ID = long
	send(t, o, b)
	if err := closeOutput(t, o, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s.wait(time.Second)
	if got := esCount(t, "skiff-longid-2024.01.02"); got != 5 {
		t.Errorf("%d documents indexed, want 5", got)
	}
	lines := readDeadLetters(t, o)
	if len(lines) != 1 || lines[0].ID != long || lines[0].Status != 400 || !strings.Contains(string(lines[0].Error), "action_request_validation_exception") {
		t.Fatalf("dead letters %+v, want the record with the long id", lines)
	}
	// 6 → 3+3, 3 → 1+2, 2 → 1+1.
	if got := counter(t, o.m.reqOK) + counter(t, o.m.reqErr); got != 7 {
		t.Errorf("%v requests, want 7", got)
	}
}

func TestESIndexTemplate(t *testing.T) {
	cfg := esConfig(t, "skiff-tpl")
	cfg.InstallTemplates = nil // the default: install
	cfg.Name = "tpl"
	estest.Do(t, "DELETE", "/_index_template/skiff-tpl", nil)
	s := newSink(t, "tpl")
	o := start(t, cfg)
	send(t, o, s.batch(0, 3, func(i int) map[string]any {
		return map[string]any{
			"kubernetes.labels": map[string]string{"app": "web", "released": "2024-01-02"},
			// Values date detection would take for dates: mapped as keywords all the same.
			"kubernetes.annotations":      map[string]string{"kubectl_kubernetes_io/restartedAt": "2024-01-02T03:04:05Z"},
			"kubernetes.namespace_labels": map[string]string{"created": "2024/01/02"},
		}
	}))
	if err := closeOutput(t, o, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s.wait(time.Second)

	status, body := estest.Do(t, "GET", "/_index_template/skiff-tpl", nil)
	if status != 200 {
		t.Fatalf("template not installed: %d %s", status, body)
	}
	var tpl struct {
		IndexTemplates []struct {
			IndexTemplate struct {
				IndexPatterns []string `json:"index_patterns"`
				Priority      int
				Template      struct {
					Settings map[string]any
				}
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	if err := json.Unmarshal(body, &tpl); err != nil || len(tpl.IndexTemplates) != 1 {
		t.Fatalf("template %s (%v)", body, err)
	}
	it := tpl.IndexTemplates[0].IndexTemplate
	if len(it.IndexPatterns) != 1 || it.IndexPatterns[0] != "skiff-tpl-*" || it.Priority != templatePriority {
		t.Errorf("template patterns %v priority %d", it.IndexPatterns, it.Priority)
	}
	if len(it.Template.Settings) != 0 {
		t.Errorf("template sets index settings %v; shards and replicas are not ours to choose", it.Template.Settings)
	}

	index := "skiff-tpl-2024.01.02"
	status, body = estest.Do(t, "GET", "/"+index+"/_mapping", nil)
	if status != 200 {
		t.Fatalf("mapping: %d %s", status, body)
	}
	var m map[string]struct {
		Mappings json.RawMessage
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	var props map[string]any
	if err := json.Unmarshal(m[index].Mappings, &props); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"@timestamp":                 "date",
		"@timestamp_nanos":           "date_nanos",
		"message":                    "text",
		"stream":                     "keyword",
		"tag":                        "keyword",
		"log.file.path":              "keyword",
		"log.offset":                 "long",
		"container.id":               "keyword",
		"kubernetes.namespace":       "keyword",
		"kubernetes.pod.name":        "keyword",
		"kubernetes.container.name":  "keyword",
		"kubernetes.labels.app":      "keyword",
		"kubernetes.labels.released": "keyword",
		"kubernetes.annotations.kubectl_kubernetes_io/restartedAt": "keyword",
		"kubernetes.namespace_labels.created":                      "keyword",
	} {
		if got := mappingType(props, path); got != want {
			t.Errorf("%s is mapped as %q, want %q", path, got, want)
		}
	}
}

// mappingType finds the type of a dotted field path in a mapping's properties.
func mappingType(m map[string]any, path string) string {
	for _, name := range strings.Split(path, ".") {
		props, _ := m["properties"].(map[string]any)
		m, _ = props[name].(map[string]any)
	}
	t, _ := m["type"].(string)
	return t
}

func TestESUnreachableAtStart(t *testing.T) {
	// Nothing listens: New and Run do not fail, Send takes batches until the queue is full,
	// and Close with a short deadline finishes them Failed.
	cfg := Config{Hosts: []string{closedPort(t)}, QueueRecords: 4, FlushInterval: 10 * time.Millisecond}
	s := newSink(t, "down")
	o := start(t, cfg)
	send(t, o, s.batch(0, 4, nil))
	send(t, o, s.batch(4, 4, nil))
	send(t, o, s.batch(8, 4, nil))
	if err := closeOutput(t, o, 500*time.Millisecond); err == nil {
		t.Fatal("Close succeeded with nothing delivered")
	}
	s.wait(time.Second)
	if got := s.failed(); got != 12 {
		t.Errorf("%d records failed, want 12", got)
	}
}
