package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

func TestReplayCommand(t *testing.T) {
	var mu sync.Mutex
	var bulk []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/_bulk" {
			mu.Lock()
			bulk = append(bulk, string(body))
			mu.Unlock()
			_, _ = io.WriteString(w, `{"errors":false}`)
			return
		}
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "skiff.yaml")
	cfg := "data_dir: " + filepath.Join(dir, "data") + `
inputs: [{name: c, paths: ["/var/log/containers/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, hosts: ["` + srv.URL + `"]}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(path string, members ...string) {
		f, err := gzipfile.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if err := f.WriteMember([]byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(dir, "spool")
	write(filepath.Join(spool, "1.ndjson.gz"),
		`{"create":{"_index":"i","_id":"a"}}`+"\n"+`{"message":"a"}`+"\n",
		`{"create":{"_index":"i","_id":"b"}}`+"\n"+`{"message":"b"}`+"\n")
	write(filepath.Join(spool, "2.ndjson.gz"), `{"create":{"_index":"i","_id":"c"}}`+"\n"+`{"message":"c"}`+"\n")
	archive := filepath.Join(dir, "archive")
	write(filepath.Join(archive, "x.gz"), `{"message":"no id"}`+"\n")

	var out, errOut bytes.Buffer
	if code := run([]string{"replay", "--config", cfgPath, "--dir", spool}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	mu.Lock()
	all := strings.Join(bulk, "")
	mu.Unlock()
	for _, id := range []string{`"_id":"a"`, `"_id":"b"`, `"_id":"c"`} {
		if strings.Count(all, id) != 1 {
			t.Errorf("bulk bodies %q hold %s %d times, want once", all, id, strings.Count(all, id))
		}
	}
	if strings.Index(all, `"_id":"a"`) > strings.Index(all, `"_id":"c"`) {
		t.Errorf("files not replayed oldest first: %q", all)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"replay", "--config", cfgPath, "--dir", archive}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "not a spool file") {
		t.Fatalf("replaying an archive: exit %d, stderr %q; want 1 and \"not a spool file\"", code, errOut.String())
	}
}
