package elasticsearch

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

func TestHandleResponse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		response  string
		wantRetry []int // offsets left to retry, in order
		rejected  int
	}{
		{"no errors", 3, `{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}},{"create":{"status":201}}]}`, nil, 0},
		{"no errors, items not read", 3, `{"errors":false,"items":[this is never parsed`, nil, 0},
		{"mixed", 5, `{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}},{"create":{"status":503}},{"create":{"status":200}}]}`, []int{1, 3}, 0},
		{"unknown fields skipped", 2, `{"took":3,"errors":true,"items":[{"create":{"_index":"x","status":201,"extra":[1,{"a":"}"}]}},{"index":{"status":500,"error":"boom"}}],"more":null}`, []int{1}, 0},
		{"items before errors", 2, `{"items":[{"create":{"status":201}},{"create":{"status":502}}],"errors":true}`, []int{1}, 0},
		{"truncated", 4, `{"errors":true,"items":[{"create":{"status":201}},{"create":{"sta`, []int{1, 2, 3}, 0},
		{"fewer items than sent", 3, `{"errors":true,"items":[{"create":{"status":201}}]}`, []int{1, 2}, 0},
		{"not JSON", 2, `<html>bad gateway</html>`, []int{0, 1}, 0},
		{"empty", 2, ``, []int{0, 1}, 0},
		{"no status", 2, `{"errors":true,"items":[{"create":{}},{"create":{"status":201}}]}`, []int{0}, 0},
		{"rejects", 4, `{"errors":true,"items":[{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"x"}}},{"create":{"status":429}},{"create":{"status":201}},{"create":{"status":404,"error":{"type":"index_not_found_exception"}}}]}`, []int{1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := New(Config{Name: "resp", Hosts: []string{"http://127.0.0.1:1"}, DataDir: t.TempDir(), Index: "resp", Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			s := newSink(t, "resp")
			w := newWorker(o)
			j := &job{b: s.batch(0, tc.n, nil), left: tc.n, next: tc.n}
			var pending []item
			for i, r := range j.b.Records {
				off := len(w.body)
				w.body = w.enc.appendItem(w.body, r)
				pending = append(pending, item{j: j, i: i, off: off, end: len(w.body)})
			}
			segments := map[int][]byte{}
			for _, p := range pending {
				segments[p.i] = append([]byte(nil), w.body[p.off:p.end]...)
			}

			rest := w.handleResponse(pending, strings.NewReader(tc.response))
			var got []int
			for k, p := range rest {
				got = append(got, p.i)
				if !bytes.Equal(w.body[p.off:p.end], segments[p.i]) {
					t.Errorf("retry item %d: segment %q, want %q", p.i, w.body[p.off:p.end], segments[p.i])
				}
				if k > 0 && rest[k-1].end != p.off {
					t.Errorf("retry items not contiguous")
				}
			}
			if !equalInts(got, tc.wantRetry) {
				t.Errorf("retry %v, want %v", got, tc.wantRetry)
			}
			if len(rest) > 0 && rest[0].off != 0 {
				t.Errorf("retry body does not start at the range start")
			}
			if j.left != len(tc.wantRetry) {
				t.Errorf("%d records unfinished, want %d", j.left, len(tc.wantRetry))
			}
			rejected := 0
			for _, st := range j.state {
				if st == event.Rejected {
					rejected++
				}
			}
			if rejected != tc.rejected {
				t.Errorf("%d rejected, want %d", rejected, tc.rejected)
			}
			if n := len(readDeadLetters(t, o)); n != tc.rejected {
				t.Errorf("%d dead letters, want %d", n, tc.rejected)
			}
			// Finish the rest so the batch is done exactly once.
			w.finishItems(rest, event.Failed)
			s.wait(0)
			o.dead.close(o.cfg.Logger)
		})
	}
}

func TestAppendBulkItemEscapesID(t *testing.T) {
	o, err := New(Config{Name: "esc", Hosts: []string{"http://127.0.0.1:1"}, DataDir: t.TempDir(), Index: "esc-{kubernetes.namespace}"})
	if err != nil {
		t.Fatal(err)
	}
	r := &event.Record{ID: "a\"b\\c\nd", Time: testTime, Source: &event.Source{Namespace: "Kube System"}}
	got := newEncoder(o.index).appendItem(nil, r)
	items := parseBulk(t, got)
	if len(items) != 1 || items[0].ID != r.ID || items[0].Index != "esc-kube_system" {
		t.Errorf("bulk item %q parsed as %+v", got, items)
	}
	if doc := documentOf(got); !bytes.HasPrefix(doc, []byte(`{"@timestamp"`)) || bytes.HasSuffix(doc, []byte("\n")) {
		t.Errorf("documentOf = %q", doc)
	}
}

func TestEncoderIndexCache(t *testing.T) {
	for _, tc := range []struct {
		index string
		want  []string
	}{
		{"logs-%Y.%m.%d", []string{"logs-2024.12.31", "logs-2024.12.31", "logs-2025.01.01", "logs-2024.12.31"}},
		{"logs-%H%M%S", []string{"logs-235959", "logs-235959", "logs-000000", "logs-235959"}},
		{"logs-{stream}-%Y", []string{"logs-stdout-2024", "logs-stderr-2024", "logs-stdout-2025", "logs-stdout-2024"}},
	} {
		t.Run(tc.index, func(t *testing.T) {
			o, err := New(Config{Name: "cache", Hosts: []string{"http://127.0.0.1:1"}, DataDir: t.TempDir(), Index: tc.index})
			if err != nil {
				t.Fatal(err)
			}
			enc := newEncoder(o.index)
			end := time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)
			recs := []event.Record{
				{Time: end.Add(100 * time.Millisecond), Stream: "stdout"},
				{Time: end.Add(900 * time.Millisecond), Stream: "stderr"},
				{Time: end.Add(1100 * time.Millisecond), Stream: "stdout"},
				{Time: end, Stream: "stdout"},
			}
			var body []byte
			for i := range recs {
				body = enc.appendItem(body, &recs[i])
			}
			items := parseBulk(t, body)
			for i, it := range items {
				if it.Index != tc.want[i] {
					t.Errorf("record %d: index %q, want %q", i, it.Index, tc.want[i])
				}
			}
		})
	}
}
