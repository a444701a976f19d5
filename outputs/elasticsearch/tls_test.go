package elasticsearch

import (
	"bytes"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTLSAndAuth(t *testing.T) {
	const apiKey, password = "a2V5Omh1bnRlcjI=", "hunter2"
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		n := len(auths)
		mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if n == 1 {
			// Refused once: the failure is logged, which must not show the credentials.
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"type":"security_exception","reason":"unable to authenticate"},"status":401}`)
			return
		}
		_, _ = io.WriteString(w, `{"errors":false}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	withUser := strings.Replace(srv.URL, "https://", "https://u:"+password+"@", 1)

	for _, tc := range []struct {
		name      string
		cfg       Config
		delivered bool
		auth      string
	}{
		{"unknown CA refused", Config{Hosts: []string{srv.URL}}, false, ""},
		{"CA file", Config{Hosts: []string{srv.URL}, CAFile: caFile, APIKey: apiKey}, true, "APIKey " + apiKey},
		{"insecure", Config{Hosts: []string{srv.URL}, TLSInsecure: true, Username: "u", Password: password}, true, "Basic dTpodW50ZXIy"},
		{"password in URL", Config{Hosts: []string{withUser}, CAFile: caFile}, true, "Basic dTpodW50ZXIy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			auths = nil
			mu.Unlock()
			var logs bytes.Buffer
			var logMu sync.Mutex
			cfg := tc.cfg
			cfg.Name = uniq("tls")
			cfg.InstallTemplates = boolp(false)
			cfg.FlushInterval = 10 * time.Millisecond
			cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
			s := newSink(t, "tls")
			o := start(t, cfg, func(o *Output) { o.base = time.Millisecond })
			send(t, o, s.batch(0, 3, nil))
			if tc.delivered {
				s.wait(10 * time.Second)
			}
			err := closeOutput(t, o, 300*time.Millisecond)
			s.wait(time.Second)
			if got := s.failed() == 0; got != tc.delivered || (err == nil) != tc.delivered {
				t.Fatalf("delivered = %v (Close: %v), want %v", got, err, tc.delivered)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.delivered {
				if len(auths) != 2 {
					t.Fatalf("%d requests, want 2", len(auths))
				}
				if auths[1] != tc.auth {
					t.Errorf("Authorization %q, want %q", auths[1], tc.auth)
				}
			} else if len(auths) != 0 {
				t.Errorf("%d requests got through an unverified TLS connection", len(auths))
			}
			logMu.Lock()
			defer logMu.Unlock()
			for _, secret := range []string{password, apiKey, "dTpodW50ZXIy"} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("logs show a secret:\n%s", logs.String())
				}
			}
			if tc.delivered && !strings.Contains(logs.String(), "security_exception") {
				t.Errorf("the 401 was not logged:\n%s", logs.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
