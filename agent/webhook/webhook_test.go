package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
)

// TestAcceptsEventList posts an EventList over HTTPS and checks that when the 200 arrives the
// spool already holds every item, compacted, one per line, with kind and apiVersion added; and
// that the spool's reader then delivers exactly those lines.
func TestAcceptsEventList(t *testing.T) {
	f := start(t, nil)
	body := eventList(t, "a", 3)
	code, text := post(f.client(nil), f.url, body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, text)
	}
	lines := spoolLines(t, f.dir)
	if got, want := auditIDs(t, lines), []string{"a-0", "a-1", "a-2"}; !slices.Equal(got, want) {
		t.Fatalf("spool holds %v, want %v", got, want)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		var compact bytes.Buffer
		if err := json.Compact(&compact, list.Items[i]); err != nil {
			t.Fatal(err)
		}
		want := `{"kind":"Event","apiVersion":"audit.k8s.io/v1",` + compact.String()[1:]
		if l != want {
			t.Errorf("line %d:\n got %s\nwant %s", i, l, want)
		}
	}
	waitFor(t, "the reader to deliver 3 records", func() bool { return len(f.delivered()) == 3 })
	if got := f.delivered(); !slices.Equal(got, lines) {
		t.Errorf("delivered %q, want the spooled lines", got)
	}
}

// TestItemsKeepTheirKind checks items that carry kind and apiVersion (as the log backend writes
// them) are spooled unchanged, and the edge cases of adding them.
func TestItemsKeepTheirKind(t *testing.T) {
	for _, tc := range []struct{ items, want string }{
		{`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x"}`, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x"}`},
		{`{"auditID":"x","apiVersion":"audit.k8s.io/v1"}`, `{"kind":"Event","auditID":"x","apiVersion":"audit.k8s.io/v1"}`},
		{`{"kind":"Ev\u0065nt","auditID":"x"}`, `{"apiVersion":"audit.k8s.io/v1","kind":"Ev\u0065nt","auditID":"x"}`},
		{`{}`, `{"kind":"Event","apiVersion":"audit.k8s.io/v1"}`},
		{` { "a" : [ "}" , "\"]" , { } ] } `, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","a":["}","\"]",{}]}`},
	} {
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + tc.items + `]}`
		lines, _, n, err := splitEventList(nil, nil, []byte(body))
		if err != nil || n != 1 || string(lines) != tc.want+"\n" {
			t.Errorf("%s: got %q n=%d err=%v, want %q", tc.items, lines, n, err, tc.want)
		}
	}
}

// TestRejectsMalformedBodies checks each malformed body gets a 400 naming the problem and
// leaves nothing in the spool.
func TestRejectsMalformedBodies(t *testing.T) {
	f := start(t, nil)
	c := f.client(nil)
	for _, tc := range []struct{ name, body, want string }{
		{"not JSON", `kind: EventList`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"truncated", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"a":1}`, "not valid JSON"},
		{"two values", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]} {}`, "not valid JSON"},
		{"array", `[{"kind":"Event"}]`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"no kind", `{"apiVersion":"audit.k8s.io/v1","items":[]}`, "kind is missing"},
		{"wrong kind", `{"kind":"PolicyList","apiVersion":"audit.k8s.io/v1","items":[]}`, `kind is "PolicyList": want "EventList"`},
		{"kind not a string", `{"kind":7,"apiVersion":"audit.k8s.io/v1","items":[]}`, "kind is 7"},
		{"old version", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`, `apiVersion is "audit.k8s.io/v1beta1"`},
		{"kind twice", `{"kind":"EventList","kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`, "key \"kind\" twice"},
		{"items object", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{}}`, "items is not a JSON array"},
		{"item string", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a"},"b"]}`, "items[1] is not a JSON object"},
		{"item null", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[null]}`, "items[0] is not a JSON object"},
		{"item wrong kind", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Pod"}]}`, `items[0].kind is "Pod"`},
		{"item wrong version", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"apiVersion":"v1"}]}`, `items[0].apiVersion is "v1"`},
	} {
		code, text := post(c, f.url, []byte(tc.body))
		if code != http.StatusBadRequest || !strings.Contains(text, tc.want) {
			t.Errorf("%s: got %d %q, want 400 containing %q", tc.name, code, text, tc.want)
		}
	}
	if lines := spoolLines(t, f.dir); len(lines) != 0 {
		t.Errorf("malformed bodies left %d lines in the spool", len(lines))
	}
	// An empty list is fine and writes nothing.
	if code, text := post(c, f.url, []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`)); code != http.StatusOK {
		t.Errorf("empty list: %d %s", code, text)
	}
	if files, _ := filepath.Glob(filepath.Join(f.dir, "*")); len(files) != 0 {
		t.Errorf("an empty list created %v", files)
	}
}

// TestRequestChecks covers the path, method, headers and size limit.
func TestRequestChecks(t *testing.T) {
	f := start(t, func(c *Config, _ *pki) { c.MaxBodyBytes = 4096; c.URLPath = "/audit" })
	c := f.client(nil)
	small := eventList(t, "s", 1)
	big := eventList(t, "b", 10)
	if len(big) <= 4096 || len(small) > 4096 {
		t.Fatalf("body sizes %d and %d do not straddle the limit", len(small), len(big))
	}
	do := func(method, url string, body []byte, chunked bool, header ...string) int {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.GetBody = nil
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	base := strings.TrimSuffix(f.url, "/audit")
	for _, tc := range []struct {
		name    string
		code    int
		method  string
		url     string
		body    []byte
		chunked bool
		header  []string
	}{
		{"ok", 200, "POST", f.url, small, false, nil},
		{"ok chunked", 200, "POST", f.url, small, true, nil},
		{"charset", 200, "POST", f.url, small, false, []string{"Content-Type", "application/json; charset=utf-8"}},
		{"wrong path", 404, "POST", base + "/", small, false, nil},
		{"GET", 405, "GET", f.url, nil, false, nil},
		{"text", 415, "POST", f.url, small, false, []string{"Content-Type", "text/plain"}},
		{"gzip", 415, "POST", f.url, small, false, []string{"Content-Encoding", "gzip"}},
		{"too big", 413, "POST", f.url, big, false, nil},
		{"too big chunked", 413, "POST", f.url, big, true, nil},
	} {
		if got := do(tc.method, tc.url, tc.body, tc.chunked, tc.header...); got != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.code)
		}
	}
	if n := len(spoolLines(t, f.dir)); n != 3 {
		t.Errorf("spool holds %d lines, want 3 (the accepted requests')", n)
	}
}

// TestAuthentication checks bearer tokens and client certificates, alone and together.
func TestAuthentication(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := eventList(t, "x", 1)
	type try struct {
		name   string
		cert   string // "", "client" or "rogue"
		auth   string // Authorization header
		code   int    // 0: the TLS handshake must fail
		reason string
	}
	for _, mode := range []struct {
		name  string
		token bool
		ca    bool
		tries []try
	}{
		{"token", true, false, []try{
			{"no token", "", "", 401, "bearer token is required"},
			{"basic auth", "", "Basic czNjcmV0", 401, "bearer token is required"},
			{"wrong token", "", "Bearer s3cret-tokem", 403, "not the configured one"},
			{"prefix of token", "", "Bearer s3cret", 403, "not the configured one"},
			{"right token", "", "Bearer s3cret-token", 200, ""},
			{"scheme in lower case", "", "bearer s3cret-token", 200, ""},
		}},
		{"client certificate", false, true, []try{
			{"no certificate", "", "", 401, "client certificate is required"},
			{"other CA", "rogue", "", 0, ""},
			{"right certificate", "client", "", 200, ""},
		}},
		{"both", true, true, []try{
			{"certificate only", "client", "", 401, "bearer token is required"},
			{"token only", "", "Bearer s3cret-token", 401, "client certificate is required"},
			{"both", "client", "Bearer s3cret-token", 200, ""},
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			f := start(t, func(c *Config, p *pki) {
				c.AuthDisable = false
				if mode.token {
					c.TokenFile = tokenFile
				}
				if mode.ca {
					c.ClientCAFile = p.ca.CertFile
				}
			})
			for _, tr := range mode.tries {
				c := f.client(nil)
				switch tr.cert {
				case "client":
					c = f.client(&f.pki.client)
				case "rogue":
					c = f.client(&f.pki.rogue)
				}
				req, _ := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if tr.auth != "" {
					req.Header.Set("Authorization", tr.auth)
				}
				resp, err := c.Do(req)
				if tr.code == 0 {
					if err == nil {
						resp.Body.Close()
						t.Errorf("%s: status %d, want a failed TLS handshake", tr.name, resp.StatusCode)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", tr.name, err)
				}
				var text bytes.Buffer
				_, _ = text.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tr.code || !strings.Contains(text.String(), tr.reason) {
					t.Errorf("%s: got %d %q, want %d containing %q", tr.name, resp.StatusCode, text.String(), tr.code, tr.reason)
				}
				if strings.Contains(text.String(), "s3cret") {
					t.Errorf("%s: the answer shows the token: %q", tr.name, text.String())
				}
			}
		})
	}
}

// TestConfigRefusesInsecureDefaults checks New requires TLS and authentication unless disabled.
func TestConfigRefusesInsecureDefaults(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(filepath.Join(dir, "positions.json"), quiet)
	base := Config{Name: "w", Listen: "127.0.0.1:0", SpoolDir: dir, NewParser: newRawParser, Positions: store, Logger: quiet}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no TLS", func(c *Config) { c.AuthDisable = true }, "TLS needs a certificate"},
		{"no auth", func(c *Config) { c.TLSDisable = true }, "no authentication"},
		{"client CA without TLS", func(c *Config) { c.TLSDisable = true; c.ClientCAFile = "/x" }, "need TLS"},
		{"missing token file", func(c *Config) { c.TLSDisable = true; c.TokenFile = filepath.Join(dir, "nope") }, "read token file"},
	} {
		c := base
		tc.change(&c)
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestConcurrentPosts posts from many clients at once and checks every event is spooled once,
// every line whole.
func TestConcurrentPosts(t *testing.T) {
	f := start(t, func(c *Config, _ *pki) { c.SpoolFileBytes = 64 << 10 })
	const clients, posts, events = 8, 15, 10
	var wg sync.WaitGroup
	errs := make(chan string, clients*posts)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := f.client(nil)
			for p := 0; p < posts; p++ {
				if code, text := post(hc, f.url, eventList(t, fmt.Sprintf("c%d-p%d", c, p), events)); code != 200 {
					errs <- fmt.Sprintf("%d %s", code, text)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	ids := auditIDs(t, spoolLines(t, f.dir))
	if len(ids) != clients*posts*events {
		t.Fatalf("spool holds %d events, want %d", len(ids), clients*posts*events)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != clients*posts*events {
		t.Error("an event was spooled twice")
	}
	if files, _ := filepath.Glob(filepath.Join(f.dir, "*.log")); len(files) < 2 {
		t.Errorf("%d spool files after %d bytes with spool_file_bytes 64KiB: no rotation", len(files), len(ids)*500)
	}
	waitFor(t, "the reader to deliver every event", func() bool { return len(f.delivered()) == clients*posts*events })
	if got := metrics.Value(metrics.WebhookEvents.WithLabelValues("audit-in")); got < clients*posts*events {
		t.Errorf("skiff_webhook_events_total = %v", got)
	}
}

// TestSpoolFull checks a full spool answers 503 and takes requests again once files are gone.
func TestSpoolFull(t *testing.T) {
	f := start(t, func(c *Config, _ *pki) { c.MaxSpoolBytes = 8 << 10 })
	c := f.client(nil)
	var codes []int
	for i := 0; i < 10; i++ {
		code, _ := post(c, f.url, eventList(t, fmt.Sprint("f", i), 2))
		codes = append(codes, code)
	}
	if codes[0] != 200 || codes[len(codes)-1] != 503 {
		t.Fatalf("statuses %v: want 200s, then 503 once 8 KiB are spooled", codes)
	}
}

// TestWriteFailure checks a spool that cannot be written answers 500 (the apiserver retries).
func TestWriteFailure(t *testing.T) {
	f := start(t, nil)
	// Replace the spool directory with a file: creating the first spool file fails, even as root.
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.dir)
	if code, text := post(f.client(nil), f.url, eventList(t, "w", 1)); code != http.StatusInternalServerError {
		t.Errorf("status %d %q, want 500", code, text)
	}
}

// TestRotation checks the spool starts a new file by size and by age, and a batch larger than
// the file size stays whole in one file.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := newTestSpool(t, dir, 100, 0)
	s.now = func() time.Time { return now }
	line := func(n int) []byte { return append(bytes.Repeat([]byte("x"), n-1), '\n') }
	steps := []struct {
		size    int
		advance time.Duration
		files   int
	}{
		{40, 0, 1},
		{40, 0, 1},  // 80 bytes
		{40, 0, 2},  // would be 120: new file
		{250, 0, 3}, // larger than a file: new file, whole
		{10, 0, 4},  // the big file is full
		{10, 59 * time.Second, 4},
		{10, time.Second, 5}, // one minute old: new file
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		if err := s.append(line(st.size)); err != nil {
			t.Fatal(err)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(files) != st.files {
			t.Fatalf("step %d: %d files, want %d", i, len(files), st.files)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if fi, _ := os.Stat(files[2]); fi.Size() != 250 {
		t.Errorf("the big batch's file has %d bytes, want 250", fi.Size())
	}
	// Idle: the janitor closes a file older than the age, so it can be deleted when delivered.
	now = now.Add(time.Minute)
	s.rotateIdle()
	if s.current() != "" {
		t.Error("an idle file older than spool_file_age is still current")
	}
}

func newTestSpool(t testing.TB, dir string, fileBytes, maxBytes int64) *spool {
	t.Helper()
	s, err := openSpool(dir, fileBytes, maxBytes, time.Minute, quiet,
		metrics.WebhookSpoolBytes.WithLabelValues("test-"+t.Name()), metrics.WebhookSpoolFiles.WithLabelValues("test-"+t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJanitor checks the janitor deletes exactly the files that are not current and whose
// committed position is their size.
func TestJanitor(t *testing.T) {
	dir := t.TempDir()
	store, err := positions.Open(filepath.Join(t.TempDir(), "positions.json"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSpool(t, dir, 1, 0) // every append starts a new file
	var files []string
	for i := 0; i < 6; i++ {
		if err := s.append([]byte(fmt.Sprintf("{\"n\":%d}\n", i))); err != nil {
			t.Fatal(err)
		}
		files = append(files, s.current())
	}
	commit := func(path string, off int64, entryPath string) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := statKey(fi)
		store.Put(positions.Entry{Key: k, Path: entryPath, Offset: off})
	}
	size := int64(len("{\"n\":0}\n"))
	commit(files[0], size, files[0])   // delivered: deleted
	commit(files[1], size-1, files[1]) // not all delivered: kept
	// files[2]: unknown to the store (not read yet): kept
	commit(files[3], size, files[3]+".old") // an entry of another path (reused inode): kept
	commit(files[4], size, files[4])        // delivered: deleted
	commit(files[5], size, files[5])        // delivered but current: kept
	if n := s.sweep(store); n != 2 {
		t.Errorf("sweep deleted %d files, want 2", n)
	}
	for i, f := range files {
		_, err := os.Stat(f)
		gone := os.IsNotExist(err)
		if want := i == 0 || i == 4; gone != want {
			t.Errorf("file %d: deleted=%v, want %v", i, gone, want)
		}
	}
	if s.files != 4 || s.total != 4*size {
		t.Errorf("spool counts %d files, %d bytes; want 4, %d", s.files, s.total, 4*size)
	}
	// Once it is no longer current, the last file goes too.
	s.close()
	if n := s.sweep(store); n != 1 {
		t.Errorf("sweep after close deleted %d files, want 1", n)
	}
}

// TestRepair checks a restart cuts a partial last line (a write that was never answered 200)
// and removes files left empty.
func TestRepair(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	whole := write("00000000000000000001.log", "{\"a\":1}\n{\"a\":2}\n")
	torn := write("00000000000000000002.log", "{\"a\":3}\n{\"a\":")
	onlyTorn := write("00000000000000000003.log", "{\"a\":")
	empty := write("00000000000000000004.log", "")
	other := write("notes.txt", "keep")
	s := newTestSpool(t, dir, 1<<20, 0)
	for _, tc := range []struct {
		path string
		want string // "" means removed
	}{
		{whole, "{\"a\":1}\n{\"a\":2}\n"}, {torn, "{\"a\":3}\n"}, {onlyTorn, ""}, {empty, ""}, {other, "keep"},
	} {
		b, err := os.ReadFile(tc.path)
		if tc.want == "" {
			if !os.IsNotExist(err) {
				t.Errorf("%s: not removed", tc.path)
			}
			continue
		}
		if string(b) != tc.want {
			t.Errorf("%s: %q, want %q", tc.path, b, tc.want)
		}
	}
	if s.files != 2 || s.total != 24 {
		t.Errorf("spool counts %d files, %d bytes; want 2, 24", s.files, s.total)
	}
	if err := s.append([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if s.current() == whole || s.current() == torn {
		t.Error("a restarted spool appends to an old file")
	}
}
