package document

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"

	"github.com/skiff-logs/skiff/agent/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testSource = &event.Source{
	Path:        "/var/log/containers/web-7d4_shop_nginx-abc123.log",
	Tag:         "kube.shop.web-7d4.nginx",
	IDPrefix:    "fd01-1234-5678",
	Namespace:   "shop",
	PodName:     "web-7d4",
	PodUID:      "0f0e0d0c-1111-2222-3333-444455556666",
	Container:   "nginx",
	ContainerID: "abc123",
}

// testKube is a full Kube: every field set, as the enricher builds it for an init container.
func testKube() *event.Kube {
	return &event.Kube{
		Namespace:       "shop",
		NamespaceLabels: map[string]string{"team": "checkout", "kubernetes_io/metadata_name": "shop"},
		PodName:         "web-7d4",
		PodUID:          "0f0e0d0c-1111-2222-3333-444455556666",
		PodIP:           "10.244.1.17",
		Labels:          map[string]string{"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "7d4"},
		Annotations:     map[string]string{"example_com/owner": "ops \"night\" shift"},
		ContainerName:   "migrate",
		ContainerImage:  "registry.example.com/shop/migrate:1.2.3",
		ContainerID:     "3f4e5d6c7b8a",
		NodeName:        "node-1",
		Init:            true,
	}
}

var testTime = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)

// goldenCases cover every optional part of a document; their output is in
// testdata/documents.golden.
func goldenCases() []struct {
	name string
	rec  event.Record
} {
	return []struct {
		name string
		rec  event.Record
	}{
		{"minimal", event.Record{Time: testTime, Message: []byte("hello"), Tag: "t"}},
		{"zero", event.Record{}},
		{"full source", event.Record{
			Time: testTime, Stream: "stdout", Message: []byte("GET / 200"),
			Tag: testSource.Tag, Source: testSource, Offset: 123,
		}},
		{"partial source", event.Record{
			Time: testTime.In(time.FixedZone("CET", 3600)), Stream: "stderr", Message: []byte("x"), Tag: "k",
			Source: &event.Source{Path: "/p", PodUID: "u"}, Offset: 0,
		}},
		{"source without path", event.Record{
			Time: testTime, Message: []byte("x"), Tag: "audit",
			Source: &event.Source{Namespace: "ns", Container: "c"}, Offset: 99,
		}},
		{"kube full", event.Record{
			Time: testTime, Stream: "stdout", Message: []byte("migrating"), Tag: testSource.Tag,
			Source: testSource, Offset: 5, Kube: testKube(),
		}},
		{"kube overrides source", event.Record{
			Time: testTime, Message: []byte("x"), Tag: "t", Source: testSource,
			Kube: &event.Kube{Namespace: "shop", PodName: "web-7d4", ContainerName: "nginx"},
		}},
		{"kube without source", event.Record{
			Time: testTime, Message: []byte("x"), Kube: &event.Kube{PodUID: "u", ContainerID: "cid", NodeName: "n"},
		}},
		{"kube empty", event.Record{Time: testTime, Message: []byte("x"), Source: testSource, Kube: &event.Kube{}}},
		{"container only", event.Record{Time: testTime, Message: []byte("x"), Source: &event.Source{ContainerID: "cid"}}},
		{"all flags", event.Record{
			Time: testTime, Message: []byte("raw"), Tag: "t",
			Flags: event.FlagParseError | event.FlagTruncated | event.FlagInvalidUTF8,
		}},
		{"one flag", event.Record{Time: testTime, Message: []byte("raw"), Flags: event.FlagTruncated}},
		{"escapes", event.Record{
			Time: testTime, Tag: "t\"q",
			Message: []byte("quote\" backslash\\ nl\n cr\r tab\t bs\b ff\f nul\x00 esc\x1b del\x7f é 日本 \u2028\u2029 </script>"),
		}},
		{"invalid utf8", event.Record{Time: testTime, Message: []byte("a\xffb\xc3(c\xed\xa0\x80d\xf0\x9f\x98")}},
		{"fields", event.Record{
			Time: testTime, Message: []byte("m"), Tag: "t", Source: testSource, Offset: 7,
			Fields: map[string]any{
				"level":    "info",
				"count":    float64(3),
				"ratio":    0.25,
				"tiny":     1e-9,
				"huge":     1e300,
				"int":      42,
				"int64":    int64(-7),
				"num":      json.Number("12.50"),
				"badnum":   json.Number("12x"),
				"ok":       true,
				"no":       false,
				"null":     nil,
				"nan":      math.NaN(),
				"list":     []any{"a", 1.5, nil, map[string]any{"z": 1, "a": 2}},
				"strs":     []string{"x", "y\n"},
				"labels":   map[string]string{"app": "web", "app.kubernetes.io/name": "web"},
				"nested":   map[string]any{"b": map[string]any{"c": "d"}, "a": []any{}},
				"bytes":    []byte("raw\tbytes"),
				"uint":     uint64(math.MaxUint64),
				"f32":      float32(0.1),
				"other":    struct{ A int }{A: 1},
				"dotted.k": "v",
			},
		}},
		{"colliding fields", event.Record{
			Time: testTime, Message: []byte("m"),
			Fields: map[string]any{
				"message": "inner", "log": map[string]any{"level": "warn"}, "@timestamp": "x",
				"stream": "s", "fields_stream": "taken", "kubernetes.labels": map[string]string{"a": "b"},
				"zzz": 1,
			},
		}},
		{"year 10000", event.Record{Time: time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC), Message: []byte("m")}},
		{"before 1970", event.Record{Time: time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), Message: []byte("m")}},
	}
}

func TestGolden(t *testing.T) {
	var out bytes.Buffer
	for _, c := range goldenCases() {
		doc := Append(nil, &c.rec)
		if !json.Valid(doc) {
			t.Errorf("%s: invalid JSON: %s", c.name, doc)
		}
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if dup := duplicateKey(doc); dup != "" {
			t.Errorf("%s: duplicate key %q in %s", c.name, dup, doc)
		}
		out.WriteString("# " + c.name + "\n")
		out.Write(doc)
		out.WriteByte('\n')
	}
	path := filepath.Join("testdata", "documents.golden")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		got := strings.Split(out.String(), "\n")
		exp := strings.Split(string(want), "\n")
		for i := range max(len(got), len(exp)) {
			var g, e string
			if i < len(got) {
				g = got[i]
			}
			if i < len(exp) {
				e = exp[i]
			}
			if g != e {
				t.Errorf("line %d:\n got %s\nwant %s", i+1, g, e)
			}
		}
	}
}

// duplicateKey returns a key that appears twice in one JSON object of doc, or "".
func duplicateKey(doc []byte) string {
	dec := json.NewDecoder(bytes.NewReader(doc))
	var walk func() string
	walk = func() string {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, _ := dec.Token()
				k, _ := kt.(string)
				if seen[k] {
					return k
				}
				seen[k] = true
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token()
		}
		return ""
	}
	return walk()
}

func TestTimestamps(t *testing.T) {
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Unix(-1, 0),
		time.Unix(-86400*365*400-1, 999),
		time.Date(2000, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(1900, 3, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2024, 12, 31, 12, 0, 0, 100000000, time.FixedZone("x", -7*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		times = append(times, time.Unix(rng.Int64N(400*365*86400)-200*365*86400, rng.Int64N(1e9)))
	}
	for _, tm := range times {
		for _, c := range []struct {
			digits int
			layout string
		}{
			{3, "2006-01-02T15:04:05.000Z07:00"},
			{9, "2006-01-02T15:04:05.000000000Z07:00"},
		} {
			got := string(appendTime(nil, tm, c.digits))
			want := tm.UTC().Format(c.layout)
			if got != want {
				t.Fatalf("appendTime(%v, %d) = %s, want %s", tm, c.digits, got, want)
			}
		}
	}
}

func TestStringEscaping(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain ascii", `"plain ascii"`},
		{"\"\\/", `"\"\\/"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"\x7f", "\"\x7f\""},
		{"é日本😀", `"é日本😀"`},
		{"\u2028x\u2029", `"\u2028x\u2029"`},
		{"a\xffb", "\"a\ufffdb\""},
		{"\xc3", "\"\ufffd\""},
		{"\xed\xa0\x80", "\"\ufffd\ufffd\ufffd\""}, // surrogate half
		{"\xf0\x9f\x98", "\"\ufffd\ufffd\ufffd\""}, // truncated 4-byte sequence
		{"<&>", `"<&>"`},
	}
	for _, tt := range tests {
		if got := string(appendString(nil, tt.in)); got != tt.want {
			t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestFieldsMatchEncodingJSON(t *testing.T) {
	fields := map[string]any{
		"a": 1.0, "b": 1e21, "c": 1e20, "d": 1e-7, "e": 123456789.125, "f": -0.0, "g": 5e-324,
		"h": []any{true, nil, "s"}, "i": map[string]any{"y": "z", "x": []any{map[string]any{}}},
		"j": "\x00\u2028<>&", "k": map[string]string{"b": "1", "a": "2"}, "l": []string{},
		"m": float32(3.4e38), "n": 1e-6, "o": 0.000001234,
	}
	got := appendObject(nil, fields, appendValue)
	var gotV, wantV any
	if err := json.Unmarshal(got, &gotV); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	want, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wantV); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotV, wantV) {
		t.Errorf("value mismatch:\n got %s\nwant %s", got, want)
	}
	// Number formatting is byte-identical to encoding/json.
	for _, f := range []float64{1, 1e21, 1e20, 1e-7, 123456789.125, 5e-324, 1e-6, 0.000001234, -2.5e-10, 1.7976931348623157e308} {
		w, _ := json.Marshal(f)
		if g := appendFloat(nil, f, 64); string(g) != string(w) {
			t.Errorf("appendFloat(%v) = %s, want %s", f, g, w)
		}
	}
}

func TestValidNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12": true, "1.5": true, "1e5": true, "1E+5": true, "-1.5e-3": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "1e": false, "1e+": false,
		"0x10": false, "NaN": false, "1 ": false, "+1": false,
	} {
		if got := validNumber(s); got != want {
			t.Errorf("validNumber(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestAppendKeepsDst(t *testing.T) {
	r := event.Record{Time: testTime, Message: []byte("m"), Source: testSource}
	dst := Append([]byte("prefix\n"), &r)
	if !bytes.HasPrefix(dst, []byte("prefix\n{")) {
		t.Fatalf("dst prefix lost: %s", dst)
	}
	if !json.Valid(dst[len("prefix\n"):]) {
		t.Fatalf("invalid: %s", dst)
	}
}

func TestAppendNoAllocs(t *testing.T) {
	r := benchRecord()
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = Append(buf[:0], r)
	})
	if allocs != 0 {
		t.Errorf("Append allocates %v times per record without Fields, want 0", allocs)
	}
	r.Kube = testKube()
	allocs = testing.AllocsPerRun(1000, func() {
		buf = Append(buf[:0], r)
	})
	if allocs != 0 {
		t.Errorf("Append allocates %v times per record with a Kube, want 0", allocs)
	}
}

func TestAppendKubeEncodedOnce(t *testing.T) {
	k := testKube()
	r := event.Record{Time: testTime, Message: []byte("m"), Source: testSource, Kube: k}
	first := Append(nil, &r)
	if k.Encoded() == nil {
		t.Fatal("the Kube's encoding was not kept")
	}
	// A kept encoding is what later documents carry, whatever the fields say now.
	k.SetEncoded([]byte(`,"kubernetes":{"namespace":"cached"}`))
	if doc := Append(nil, &r); !bytes.Contains(doc, []byte(`"namespace":"cached"`)) {
		t.Fatalf("encoding not reused: %s", doc)
	}
	var m struct {
		Kubernetes struct {
			Labels    map[string]string
			Container struct {
				Name string
				Init bool
			}
		}
		Container struct{ ID string }
	}
	if err := json.Unmarshal(first, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kubernetes.Labels["app_kubernetes_io/name"] != "web" || m.Kubernetes.Container.Name != "migrate" ||
		!m.Kubernetes.Container.Init || m.Container.ID != "3f4e5d6c7b8a" {
		t.Fatalf("decoded %+v from %s", m, first)
	}
}

func TestAppendKubeConcurrent(t *testing.T) {
	k := testKube()
	want := string(Append(nil, &event.Record{Time: testTime, Kube: testKube()}))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if got := string(Append(nil, &event.Record{Time: testTime, Kube: k})); got != want {
					t.Errorf("got %s, want %s", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzAppend(f *testing.F) {
	f.Add([]byte("hello"), "key", "value", int64(1704164645123456789))
	f.Add([]byte("a\xffb\n\"\\\u2028"), "message", "\x00", int64(-1))
	f.Add([]byte{}, "", "é", int64(0))
	f.Fuzz(func(t *testing.T, msg []byte, key, val string, nanos int64) {
		r := event.Record{
			Time: time.Unix(0, nanos), Message: msg, Stream: val, Tag: key, Source: testSource,
			Fields: map[string]any{key: val, "n": map[string]any{val: []any{key, 1.5}}},
		}
		doc := Append(nil, &r)
		if !json.Valid(doc) {
			t.Fatalf("invalid JSON for %q/%q/%q: %s", msg, key, val, doc)
		}
		if dup := duplicateKey(doc); dup != "" {
			t.Fatalf("duplicate key %q: %s", dup, doc)
		}
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if utf8.Valid(msg) && m["message"] != string(msg) {
			t.Fatalf("message %q decoded as %q", msg, m["message"])
		}
		if !utf8.Valid(msg) && m["message"] != strings.ToValidUTF8(string(msg), "\ufffd") && !utf8.ValidString(m["message"].(string)) {
			t.Fatalf("invalid message %q decoded as %q", msg, m["message"])
		}
		if utf8.ValidString(key) && utf8.ValidString(val) && !fixedKeys[key] && key != "n" {
			if m[key] != val {
				t.Fatalf("field %q = %q decoded as %q", key, val, m[key])
			}
		}
		r.Kube = &event.Kube{Namespace: val, Labels: map[string]string{key: val}, ContainerID: key, Init: len(val) > 2}
		doc = Append(nil, &r)
		if !json.Valid(doc) {
			t.Fatalf("invalid JSON for a Kube of %q/%q: %s", key, val, doc)
		}
		if dup := duplicateKey(doc); dup != "" {
			t.Fatalf("duplicate key %q: %s", dup, doc)
		}
	})
}

func benchRecord() *event.Record {
	// A typical access-log line: 317 bytes of message.
	msg := `10.244.1.17 - - [02/Jan/2024:03:04:05 +0000] "GET /api/v1/products/12345/reviews?page=2&sort=newest HTTP/1.1" 200 5123 "https://shop.example.com/products/12345" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36" rt=0.042 uct="0.001" uht="0.040" urt="0.041" up=MISS`
	return &event.Record{
		Time: testTime, Stream: "stdout", Message: []byte(msg), Tag: testSource.Tag,
		Source: testSource, Offset: 1 << 20,
	}
}

// BenchmarkAppendKube is BenchmarkAppend for a record with a full Kube, as every container
// record has once the enricher knows its pod.
func BenchmarkAppendKube(b *testing.B) {
	r := benchRecord()
	r.Kube = testKube()
	buf := make([]byte, 0, 4096)
	buf = Append(buf, r) // the Kube's encoding is made once, on first use
	b.ReportAllocs()
	b.SetBytes(int64(len(r.Message)))
	for b.Loop() {
		buf = Append(buf[:0], r)
	}
}

func BenchmarkAppend(b *testing.B) {
	r := benchRecord()
	if len(r.Message) != 317 {
		b.Fatalf("message is %d bytes, want 317", len(r.Message))
	}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(r.Message)))
	for b.Loop() {
		buf = Append(buf[:0], r)
	}
}

func benchFields() map[string]any {
	return map[string]any{
		"level": "info", "logger": "http.access", "status": float64(200), "duration_ms": 41.7,
		"request":  map[string]any{"method": "GET", "path": "/api/v1/products", "query": "page=2"},
		"user":     map[string]any{"id": "u-123", "roles": []any{"admin", "viewer"}},
		"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "ok": true,
	}
}

// BenchmarkFields compares the hand-written Fields encoder with json-iterator (configured like
// encoding/json, with sorted keys) on a typical structured-log field set.
func BenchmarkFields(b *testing.B) {
	fields := benchFields()
	b.Run("hand", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		b.ReportAllocs()
		for b.Loop() {
			buf = appendObject(buf[:0], fields, appendValue)
		}
	})
	b.Run("jsoniter", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		b.ReportAllocs()
		for b.Loop() {
			out, err := jsoniter.ConfigCompatibleWithStandardLibrary.Marshal(fields)
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], out...)
		}
	})
	b.Run("jsoniter-unsorted", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		b.ReportAllocs()
		for b.Loop() {
			out, err := jsoniter.ConfigFastest.Marshal(fields)
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], out...)
		}
	})
}
