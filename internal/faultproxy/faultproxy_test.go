package faultproxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeES is an upstream that records the ids of the _bulk items it received and answers each
// with 201, except ids listed in conflict (409).
type fakeES struct {
	name     string
	mu       sync.Mutex
	got      []string
	paths    []string
	conflict map[string]bool
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths = append(f.paths, r.URL.RequestURI())
	if !strings.HasSuffix(r.URL.Path, "/_bulk") {
		fmt.Fprintf(w, `{"name":%q}`, f.name)
		return
	}
	body, _ := io.ReadAll(r.Body)
	items, err := splitBulk(body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	var out []map[string]any
	errs := false
	for _, it := range items {
		var a map[string]struct {
			ID string `json:"_id"`
		}
		_ = json.Unmarshal(bytes.SplitN(it.lines, []byte("\n"), 2)[0], &a)
		id := a[it.action].ID
		f.got = append(f.got, id)
		st := 201
		if f.conflict[id] {
			st, errs = 409, true
		}
		out = append(out, map[string]any{it.action: map[string]any{"_id": id, "status": st}})
	}
	b, _ := json.Marshal(map[string]any{"errors": errs, "items": out})
	_, _ = w.Write(b)
}

func bulkBody(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"create":{"_index":"x","_id":"id%d"}}`+"\n"+`{"message":"m%d"}`+"\n", i, i)
	}
	return b.Bytes()
}

type bulkAnswer struct {
	Errors bool `json:"errors"`
	Items  []map[string]struct {
		ID     string `json:"_id"`
		Status int    `json:"status"`
		Error  struct {
			Type string `json:"type"`
		} `json:"error"`
	} `json:"items"`
}

func post(t *testing.T, url string, body []byte, gz bool) (*http.Response, []byte, error) {
	t.Helper()
	if gz {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(body)
		_ = w.Close()
		body = z.Bytes()
	}
	req, err := http.NewRequest(http.MethodPost, url+"/_bulk?filter_path=errors,items.*.status", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

func TestStorm(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      StormConfig
		gz       bool
		conflict map[string]bool
		// wantWhole: the whole request is answered 429 and nothing reaches the upstream.
		wantWhole bool
		// wantAllForwarded: no item is rejected.
		wantAllForwarded bool
	}{
		{name: "whole requests", cfg: StormConfig{RequestFraction: 1}, wantWhole: true},
		{name: "no rejection", cfg: StormConfig{}, wantAllForwarded: true},
		{name: "every item", cfg: StormConfig{ItemFraction: 1}},
		{name: "half the items", cfg: StormConfig{ItemFraction: 0.5}},
		{name: "half the items gzipped", cfg: StormConfig{ItemFraction: 0.5}, gz: true},
		{name: "upstream conflicts kept", cfg: StormConfig{ItemFraction: 0.3}, conflict: map[string]bool{"id3": true, "id7": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &fakeES{conflict: tc.conflict}
			us := httptest.NewServer(up)
			defer us.Close()
			p, err := New(us.URL, 7)
			if err != nil {
				t.Fatal(err)
			}
			p.SetMode(Storm)
			p.SetStorm(tc.cfg)
			ps := httptest.NewServer(p)
			defer ps.Close()

			const n = 40
			res, b, err := post(t, ps.URL, bulkBody(n), tc.gz)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantWhole {
				if res.StatusCode != 429 || len(up.got) != 0 || !bytes.Contains(b, []byte("es_rejected_execution_exception")) {
					t.Fatalf("status %d, upstream got %d items, body %s; want a whole 429 and nothing forwarded", res.StatusCode, len(up.got), b)
				}
				if s := p.Stats(); s.BulkRejected != 1 {
					t.Errorf("stats %+v, want BulkRejected 1", s)
				}
				return
			}
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			var ans bulkAnswer
			if err := json.Unmarshal(b, &ans); err != nil {
				t.Fatal(err)
			}
			if len(ans.Items) != n {
				t.Fatalf("%d items answered, want %d", len(ans.Items), n)
			}
			// The upstream must have received exactly the items not answered 429, in order, and
			// each forwarded item's answer must be the upstream's own for that item.
			var forwarded []string
			rejected := 0
			for i, it := range ans.Items {
				c, ok := it["create"]
				if !ok {
					t.Fatalf("item %d: %v, want a create answer", i, it)
				}
				id := fmt.Sprintf("id%d", i)
				switch c.Status {
				case 429:
					rejected++
					if c.Error.Type != "es_rejected_execution_exception" {
						t.Errorf("item %d: 429 with error type %q", i, c.Error.Type)
					}
				case 201, 409:
					if c.ID != id {
						t.Errorf("item %d: answer of %q, want %q (merged out of order)", i, c.ID, id)
					}
					if want := map[bool]int{true: 409, false: 201}[tc.conflict[id]]; c.Status != want {
						t.Errorf("item %d: status %d, want %d", i, c.Status, want)
					}
					forwarded = append(forwarded, id)
				default:
					t.Errorf("item %d: status %d", i, c.Status)
				}
			}
			if strings.Join(forwarded, ",") != strings.Join(up.got, ",") {
				t.Errorf("answered as forwarded %v, upstream got %v", forwarded, up.got)
			}
			if tc.wantAllForwarded && rejected != 0 {
				t.Errorf("%d items rejected, want none", rejected)
			}
			if tc.cfg.ItemFraction == 1 && rejected != n {
				t.Errorf("%d items rejected, want all %d", rejected, n)
			}
			if tc.cfg.ItemFraction == 0.5 && (rejected == 0 || rejected == n) {
				t.Errorf("%d of %d items rejected at fraction 0.5", rejected, n)
			}
			wantErrors := rejected > 0 || len(tc.conflict) > 0 && len(forwarded) > 0
			if ans.Errors != wantErrors {
				t.Errorf("errors %v, want %v", ans.Errors, wantErrors)
			}
			if s := p.Stats(); s.ItemsRejected != int64(rejected) || s.ItemsForwarded != int64(len(forwarded)) {
				t.Errorf("stats %+v, want %d rejected, %d forwarded", s, rejected, len(forwarded))
			}
		})
	}
}

func TestModesAndUpstream(t *testing.T) {
	a, b := &fakeES{name: "a"}, &fakeES{name: "b"}
	as, bs := httptest.NewServer(a), httptest.NewServer(b)
	defer as.Close()
	defer bs.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	p, err := New(as.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	defer ps.Close()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	for _, step := range []struct {
		name     string
		mode     Mode
		upstream string
		want     string // the answer's body, or "" for a closed connection
	}{
		{"pass to a", Pass, as.URL, `{"name":"a"}`},
		{"down", Down, as.URL, ""},
		{"pass to b", Pass, bs.URL, `{"name":"b"}`},
		{"storm passes other requests", Storm, bs.URL, `{"name":"b"}`},
		{"upstream unreachable", Pass, deadURL, ""},
		{"back to a", Pass, as.URL, `{"name":"a"}`},
	} {
		p.SetMode(step.mode)
		if err := p.SetUpstream(step.upstream); err != nil {
			t.Fatal(err)
		}
		res, err := c.Get(ps.URL + "/_cluster/health?filter_path=status")
		if step.want == "" {
			if err == nil {
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				t.Errorf("%s: got %d %s, want the connection closed", step.name, res.StatusCode, body)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", step.name, err)
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != step.want {
			t.Errorf("%s: body %s, want %s", step.name, body, step.want)
		}
	}
	if got := strings.Join(a.paths, " "); got != "/_cluster/health?filter_path=status /_cluster/health?filter_path=status" {
		t.Errorf("upstream a saw %q", got)
	}
	if s := p.Stats(); s.Requests != 6 || s.Closed != 2 {
		t.Errorf("stats %+v, want 6 requests, 2 closed", s)
	}
}

func TestSplitBulk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		actions string
		wantErr bool
	}{
		{"create and delete", "{\"create\":{}}\n{\"a\":1}\n{\"delete\":{\"_id\":\"x\"}}\n{\"index\":{}}\n{\"b\":2}\n", "create,delete,index", false},
		{"no final newline", "{\"create\":{}}\n{\"a\":1}", "create", false},
		{"blank lines", "\n{\"create\":{}}\n{\"a\":1}\n\n", "create", false},
		{"missing source", "{\"create\":{}}\n", "", true},
		{"not json", "create\n{}\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := splitBulk([]byte(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			var names []string
			var all []byte
			for _, it := range items {
				names = append(names, it.action)
				all = append(all, it.lines...)
			}
			if got := strings.Join(names, ","); got != tc.actions {
				t.Errorf("actions %q, want %q", got, tc.actions)
			}
			if !tc.wantErr && string(all) != strings.ReplaceAll(strings.TrimLeft(tc.body, "\n"), "\n\n", "\n") {
				t.Errorf("items' lines %q do not reassemble the body %q", all, tc.body)
			}
		})
	}
}
