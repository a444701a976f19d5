package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/parsers/internal/parsertest"
)

// rendered is the readable form of a record in golden files: parsertest's, plus the id and
// the fields.
type rendered struct {
	parsertest.Rec
	ID     string         `json:"id,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
}

func render(r *event.Record) rendered {
	return rendered{Rec: parsertest.Render(r), ID: r.ID, Fields: r.Fields}
}

// run feeds input's lines to p as a file reader would and checks the contract every line must
// keep: each line is one complete record at its own offset, nothing is ever held.
func run(t testing.TB, p *Parser, input []byte) []rendered {
	var out []rendered
	var off int64
	for len(input) > 0 {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			i = len(input)
		}
		var r event.Record
		if !p.Parse(input[:i], off, &r) {
			t.Fatalf("line at %d: Parse returned false", off)
		}
		if r.Offset != off {
			t.Fatalf("line at %d: record offset %d", off, r.Offset)
		}
		if _, ok := p.PendingFrom(); ok {
			t.Fatalf("line at %d: PendingFrom reports a fragment", off)
		}
		out = append(out, render(&r))
		off += int64(i) + 1
		input = input[min(i+1, len(input)):]
	}
	var r event.Record
	if p.Flush(&r) {
		t.Fatal("Flush returned true")
	}
	return out
}

func TestGolden(t *testing.T) {
	parsertest.GoldenFiles(t, func(t *testing.T, data []byte) any { return run(t, New(0), data) })
}

// TestRecord checks the parts of a record the golden files show only as text: Go types of the
// Fields values (which the document encoder and templates rely on), time, id and message.
func TestRecord(t *testing.T) {
	line := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"id-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps/c","verb":"update","user":{"username":"alice","groups":["dev"],"extra":{"a.b/c":["x"]}},"sourceIPs":["10.0.0.1","::1"],"objectRef":{"resource":"configmaps","namespace":"shop","name":"c","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"data":{"k.e.y":"v"}},"responseObject":null,"requestReceivedTimestamp":"2024-06-11T09:14:05.120033Z","stageTimestamp":"2024-06-11T09:14:05.131207+02:00","annotations":{"authorization.k8s.io/decision":"allow","plain":"yes"}}`)
	r := event.Record{Tag: "keep", Message: []byte("old")}
	if !New(0).Parse(line, 42, &r) {
		t.Fatal("Parse returned false")
	}
	if want := time.Date(2024, 6, 11, 7, 14, 5, 131207000, time.UTC); !r.Time.Equal(want) {
		t.Errorf("Time = %v, want %v", r.Time, want)
	}
	if r.ID != "id-1-ResponseComplete" || r.Offset != 42 || r.Tag != "keep" || r.Stream != "" || r.Flags != 0 {
		t.Errorf("record %+v", r)
	}
	if got, want := string(r.Message), "update configmaps/c in shop by alice → 200"; got != want {
		t.Errorf("Message = %q, want %q", got, want)
	}
	want := map[string]any{
		"auditID": "id-1", "stage": "ResponseComplete", "level": "RequestResponse", "verb": "update",
		"requestURI":               "/api/v1/namespaces/shop/configmaps/c",
		"user":                     map[string]any{"username": "alice", "groups": []string{"dev"}, "extra": map[string]any{"a_b/c": []string{"x"}}},
		"sourceIPs":                []string{"10.0.0.1", "::1"},
		"objectRef":                map[string]any{"resource": "configmaps", "namespace": "shop", "name": "c", "apiVersion": "v1"},
		"responseStatus":           map[string]any{"code": 200},
		"requestObject_json":       `{"data":{"k.e.y":"v"}}`,
		"requestReceivedTimestamp": "2024-06-11T09:14:05.120033Z",
		"stageTimestamp":           "2024-06-11T09:14:05.131207+02:00",
		"annotations":              map[string]string{"authorization_k8s_io/decision": "allow", "plain": "yes"},
	}
	if !reflect.DeepEqual(r.Fields, want) {
		t.Errorf("Fields:\n got %#v\nwant %#v", r.Fields, want)
	}
}

func TestTimeFallback(t *testing.T) {
	tests := []struct {
		line string
		want time.Time
	}{
		{`{"auditID":"a","stage":"s","requestReceivedTimestamp":"2024-01-02T03:04:05.000001Z"}`, time.Date(2024, 1, 2, 3, 4, 5, 1000, time.UTC)},
		{`{"auditID":"a","stage":"s","stageTimestamp":"bad","requestReceivedTimestamp":"2024-01-02T03:04:05Z"}`, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{`{"auditID":"a","stage":"s"}`, time.Time{}},
	}
	for _, tt := range tests {
		var r event.Record
		New(0).Parse([]byte(tt.line), 0, &r)
		if !r.Time.Equal(tt.want) || r.Flags != 0 {
			t.Errorf("%s: Time %v flags %v, want %v", tt.line, r.Time, r.Flags, tt.want)
		}
	}
}

// bigEvent returns a RequestResponse event whose request and response objects are each about
// objBytes long, with annotations of annBytes.
func bigEvent(id string, objBytes, annBytes int) []byte {
	obj := func(kind string) string {
		return `{"kind":"` + kind + `","apiVersion":"v1","metadata":{"name":"big","namespace":"shop"},"data":{"blob":"` + strings.Repeat("x", objBytes) + `"}}`
	}
	return []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"` + id + `","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps","verb":"create","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":"configmaps","namespace":"shop","name":"big","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":` + obj("ConfigMap") + `,"responseObject":` + obj("ConfigMap") + `,"requestReceivedTimestamp":"2024-06-11T09:14:05.120033Z","stageTimestamp":"2024-06-11T09:14:05.131207Z","annotations":{"big":"` + strings.Repeat("a", annBytes) + `"}}`)
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name     string
		max      int
		line     []byte
		wantCut  []string
		wantKeep []string
	}{
		{"fits", 1 << 20, bigEvent("a", 1000, 100), nil, []string{RequestObjectField, ResponseObjectField, "annotations"}},
		{"response object first", 3000, bigEvent("a", 2000, 100), []string{"responseObject"}, []string{RequestObjectField, "annotations"}},
		{"then request object, even when annotations are larger", 3000, bigEvent("a", 1000, 2000), []string{"responseObject", "requestObject"}, []string{"annotations"}},
		{"then the largest other member", 1000, bigEvent("a", 1000, 1500), []string{"responseObject", "requestObject", "annotations"}, []string{"user", "requestURI", "sourceIPs"}},
		{"identity is never removed", 10, bigEvent("a", 10, 10), []string{"responseObject", "requestObject", "requestURI", "user.groups", "annotations", "sourceIPs", "userAgent"}, []string{"auditID", "stage", "verb", "objectRef", "user", "stageTimestamp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := new(metrics.Counter)
			p := New(tt.max)
			p.Truncated = c
			var r event.Record
			p.Parse(tt.line, 0, &r)
			cut, _ := r.Fields[TruncatedField].([]string)
			if !reflect.DeepEqual(cut, tt.wantCut) {
				t.Errorf("cut %v, want %v", cut, tt.wantCut)
			}
			truncated := r.Flags&event.FlagTruncated != 0
			if truncated != (len(tt.wantCut) > 0) || r.Flags&event.FlagParseError != 0 {
				t.Errorf("flags %v", r.Flags)
			}
			if n := metrics.Value(c); n != float64(len(cut)/max(len(cut), 1)) {
				t.Errorf("counted %v truncations", n)
			}
			for _, k := range tt.wantKeep {
				if _, ok := r.Fields[k]; !ok {
					t.Errorf("field %s removed", k)
				}
			}
			if u, ok := r.Fields["user"].(map[string]any); ok && u["username"] != "alice" {
				t.Errorf("user %v", u)
			}
			if truncated && tt.max >= 1000 {
				delete(r.Fields, TruncatedField)
				if size := jsonSize(r.Fields); size > tt.max {
					t.Errorf("kept %d bytes, cap %d", size, tt.max)
				}
			}
		})
	}
}

// TestMalformedCapped: a line that does not parse is kept raw up to the size cap.
func TestMalformedCapped(t *testing.T) {
	var r event.Record
	r.ID, r.Fields = "stale", map[string]any{"x": 1}
	New(8).Parse([]byte(`{"auditID": broken`), 7, &r)
	if string(r.Message) != `{"auditI` || r.Flags != event.FlagParseError|event.FlagTruncated || r.Offset != 7 || r.ID != "" || r.Fields != nil || !r.Time.IsZero() {
		t.Fatalf("record %+v", r)
	}
}

// TestObjects: requestObject and responseObject come out as written, whatever their strings hold,
// and members of the same name nested inside other values are left alone.
func TestObjects(t *testing.T) {
	tests := []struct {
		name, line   string
		req, resp    string
		parseError   bool
		wantNotField string
	}{
		{name: "tricky strings", line: `{"auditID":"a","stage":"s","requestObject" : {"a":"}\"{[","b":[1,-2.5e+3,true,false,null,{}],"c":{"d":[]}} ,"verb":"get"}`,
			req: `{"a":"}\"{[","b":[1,-2.5e+3,true,false,null,{}],"c":{"d":[]}}`},
		{name: "null and scalar objects", line: `{"auditID":"a","stage":"s","requestObject":null,"responseObject":"text"}`, resp: `"text"`},
		{name: "last of duplicates", line: `{"auditID":"a","stage":"s","responseObject":{"x":1},"responseObject":{"y":2}}`, resp: `{"y":2}`},
		{name: "nested names are not members", line: `{"auditID":"a","stage":"s","annotations":{"requestObject":"x"},"userAgent":"responseObject\""}`, wantNotField: "annotations"},
		{name: "unterminated object", line: `{"auditID":"a","stage":"s","requestObject":{"a":1}`, parseError: true},
		{name: "bad nesting", line: `{"auditID":"a","stage":"s","requestObject":{"a":[1}]}`, parseError: true},
		{name: "missing colon", line: `{"auditID":"a","stage":"s","requestObject" {}}`, parseError: true},
		{name: "bad member after the objects", line: `{"requestObject":{},"auditID":"a","stage":1}`, parseError: true},
		{name: "too deep", line: `{"auditID":"a","stage":"s","requestObject":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, parseError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r event.Record
			New(0).Parse([]byte(tt.line), 0, &r)
			if got := r.Flags&event.FlagParseError != 0; got != tt.parseError {
				t.Fatalf("parse error %v, want %v: %+v", got, tt.parseError, render(&r))
			}
			if tt.parseError {
				return
			}
			req, _ := r.Fields[RequestObjectField].(string)
			resp, _ := r.Fields[ResponseObjectField].(string)
			if req != tt.req || resp != tt.resp {
				t.Errorf("objects %q, %q; want %q, %q", req, resp, tt.req, tt.resp)
			}
			if tt.wantNotField != "" && r.Fields[tt.wantNotField] == nil {
				t.Errorf("field %s lost: %v", tt.wantNotField, r.Fields)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"apiserver.log", "malformed.log"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		for line := range bytes.SplitSeq(data, []byte{'\n'}) {
			f.Add(line, uint16(2000))
		}
	}
	f.Add(bigEvent("a", 100, 100), uint16(300))
	f.Fuzz(func(t *testing.T, line []byte, max uint16) {
		m := int(max) + 1
		p := New(m)
		for range 2 { // twice: the scratch buffer is reused
			var r event.Record
			if !p.Parse(line, 5, &r) || r.Offset != 5 {
				t.Fatalf("Parse: complete=false or offset %d", r.Offset)
			}
			if r.Flags&event.FlagParseError != 0 {
				if r.ID != "" || r.Fields != nil || len(r.Message) > m || !bytes.HasPrefix(line, r.Message) {
					t.Fatalf("parse-error record %+v", render(&r))
				}
				continue
			}
			id, _ := r.Fields["auditID"].(string)
			stage, _ := r.Fields["stage"].(string)
			if id == "" || stage == "" || r.ID != id+"-"+stage {
				t.Fatalf("ID %q, auditID %q, stage %q", r.ID, id, stage)
			}
			cut, _ := r.Fields[TruncatedField].([]string)
			if (len(cut) > 0) != (r.Flags&event.FlagTruncated != 0) {
				t.Fatalf("cut %v, flags %v", cut, r.Flags)
			}
			if _, err := json.Marshal(r.Fields); err != nil {
				t.Fatalf("fields do not encode: %v", err)
			}
			// Of a valid JSON line, the objects are cut exactly.
			for _, k := range []string{RequestObjectField, ResponseObjectField} {
				if v, ok := r.Fields[k].(string); ok && json.Valid(line) && !json.Valid([]byte(v)) {
					t.Fatalf("%s of a valid line is not JSON: %q", k, v)
				}
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "apiserver.log"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte{'\n'})
	for _, bc := range []struct {
		name  string
		lines [][]byte
		max   int
	}{
		{"apiserver-mix", lines, 0},
		{"2KiB", [][]byte{bigEvent("a", 600, 100)}, 0},
		{"200KiB", [][]byte{bigEvent("a", 100<<10, 100)}, 1 << 20},
		{"200KiB-truncated", [][]byte{bigEvent("a", 100<<10, 100)}, 100 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var size int
			for _, l := range bc.lines {
				size += len(l) + 1
			}
			b.SetBytes(int64(size / len(bc.lines)))
			b.ReportAllocs()
			p := New(bc.max)
			var r event.Record
			i := 0
			for b.Loop() {
				p.Parse(bc.lines[i], int64(i), &r)
				if r.Flags&event.FlagParseError != 0 {
					b.Fatalf("parse error: %s", r.Message)
				}
				if i++; i == len(bc.lines) {
					i = 0
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// ExampleParser shows the record made from one line of the apiserver's audit log.
func ExampleParser() {
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"7e0c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets/db","verb":"get","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"stageTimestamp":"2024-06-11T09:14:02.335912Z"}`
	var r event.Record
	New(0).Parse([]byte(line), 0, &r)
	fmt.Println(r.ID)
	fmt.Println(string(r.Message))
	fmt.Println(r.Time)
	// Output:
	// 7e0c-ResponseComplete
	// get secrets/db in shop by alice → 200
	// 2024-06-11 09:14:02.335912 +0000 UTC
}
