package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"
)

// FuzzWebhookBody feeds arbitrary bodies to the body handler. It must never panic; a 200 must
// mean the spool grew by exactly the list's items, each one line holding the same JSON object
// (plus kind and apiVersion); anything else must leave the spool as it was.
func FuzzWebhookBody(f *testing.F) {
	f.Add(eventList(f, "seed", 2))
	for _, s := range []string{
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","a":"\u2028\n"},{"b":[1,{"c":"}"}]}]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[1]}`,
		`{"k\u0069nd":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"\u006bind":"Event"}]}`,
		`{"kind":"EventList"`, `[]`, `"x"`, ``, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":1}]}`,
	} {
		f.Add([]byte(s))
	}
	s := newTestSpool(f, f.TempDir(), 1<<40, 0)
	s.fileAge = 1000 * time.Hour
	in := &Input{cfg: Config{Name: "fuzz"}, spool: s, m: newInputMetrics("fuzz"), log: quiet}
	bufs := &buffers{}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := s.size
		cur := s.current()
		code, msg := in.write(bufs, body)
		if code != http.StatusOK {
			if code != http.StatusBadRequest || msg == "" {
				t.Fatalf("status %d %q, want 200 or 400 with a message", code, msg)
			}
			if s.current() != cur || s.size != before {
				t.Fatal("a refused body changed the spool")
			}
			return
		}
		// The reference reading: exact key matches, as the walk does (a struct would match
		// keys case-insensitively).
		var env map[string]json.RawMessage
		var list struct {
			Kind, APIVersion string
			Items            []json.RawMessage
		}
		err := json.Unmarshal(body, &env)
		if err == nil {
			err = json.Unmarshal(env["kind"], &list.Kind)
		}
		if err == nil {
			err = json.Unmarshal(env["apiVersion"], &list.APIVersion)
		}
		if raw, ok := env["items"]; ok && err == nil {
			err = json.Unmarshal(raw, &list.Items)
		}
		if err != nil || list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
			t.Fatalf("accepted a body encoding/json reads as %+v, %v", list, err)
		}
		var added []byte
		if len(list.Items) > 0 {
			if s.current() != cur {
				before = 0
			}
			b, err := os.ReadFile(s.current())
			if err != nil {
				t.Fatal(err)
			}
			added = b[before:]
		} else if s.size != before {
			t.Fatal("an empty list wrote to the spool")
		}
		lines := bytes.SplitAfter(added, []byte("\n"))
		if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if len(lines) != len(list.Items) {
			t.Fatalf("spooled %d lines for %d items", len(lines), len(list.Items))
		}
		for i, l := range lines {
			if bytes.IndexByte(l, '\n') != len(l)-1 {
				t.Fatalf("line %d is not one line: %q", i, l)
			}
			var got, want map[string]any
			if err := json.Unmarshal(l, &got); err != nil {
				t.Fatalf("line %d is not a JSON object: %v: %q", i, err, l)
			}
			if err := json.Unmarshal(list.Items[i], &want); err != nil || want == nil {
				t.Fatalf("item %d was accepted but is not an object: %v", i, err)
			}
			if got["kind"] != "Event" || got["apiVersion"] != "audit.k8s.io/v1" {
				t.Fatalf("line %d lacks kind or apiVersion: %q", i, l)
			}
			want["kind"], want["apiVersion"] = "Event", "audit.k8s.io/v1"
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("line %d is %q, item was %q", i, l, list.Items[i])
			}
		}
	})
}
