package elasticsearch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	badCA := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(badCA, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := func() Config {
		return Config{Name: "es", Hosts: []string{"http://127.0.0.1:9200"}, DataDir: dir}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // error prefix; "" for success
	}{
		{"defaults", func(c *Config) {}, ""},
		{"several hosts and auth", func(c *Config) {
			c.Hosts = []string{"https://a:9200", "https://b:9200/prefix"}
			c.Username, c.Password = "u", "hunter2"
		}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "name: "},
		{"bad name", func(c *Config) { c.Name = "a/b" }, "name: "},
		{"no hosts", func(c *Config) { c.Hosts = nil }, "hosts: "},
		{"bad scheme", func(c *Config) { c.Hosts = []string{"ftp://u:hunter2@h"} }, "hosts[0]: "},
		{"no host", func(c *Config) { c.Hosts = []string{"http://"} }, "hosts[0]: "},
		{"unparsable host", func(c *Config) { c.Hosts = []string{"http://u:hunter2@h:port:x"} }, "hosts[0]: "},
		{"query", func(c *Config) { c.Hosts = []string{"http://h?x=1"} }, "hosts[0]: "},
		{"bad index", func(c *Config) { c.Index = "Logs {unclosed" }, "index: "},
		{"index without literal prefix", func(c *Config) { c.Index = "{tag}-%Y" }, "index: "},
		{"index without literal prefix, no templates", func(c *Config) {
			c.Index = "{tag}-%Y"
			c.InstallTemplates = boolp(false)
		}, ""},
		{"api key and password", func(c *Config) { c.APIKey, c.Username, c.Password = "hunter2", "u", "hunter2" }, "api_key: "},
		{"password alone", func(c *Config) { c.Password = "hunter2" }, "username: "},
		{"flush bytes", func(c *Config) { c.FlushBytes = -1 }, "flush_bytes: "},
		{"flush interval", func(c *Config) { c.FlushInterval = -time.Second }, "flush_interval: "},
		{"workers", func(c *Config) { c.Workers = -1 }, "workers: "},
		{"queue", func(c *Config) { c.QueueRecords = -1 }, "queue_records: "},
		{"backoff", func(c *Config) { c.MaxBackoff = time.Millisecond }, "max_backoff: "},
		{"timeout", func(c *Config) { c.Timeout = -1 }, "timeout: "},
		{"data dir", func(c *Config) { c.DataDir = "" }, "data_dir: "},
		{"missing CA", func(c *Config) { c.CAFile = filepath.Join(dir, "none.pem") }, "ca_file: "},
		{"bad CA", func(c *Config) { c.CAFile = badCA }, "ca_file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok()
			tc.change(&cfg)
			o, err := New(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if o.cfg.FlushBytes != DefaultFlushBytes || o.cfg.Workers != DefaultWorkers || o.cfg.QueueRecords != DefaultQueueRecords ||
					o.cfg.FlushInterval != DefaultFlushInterval || o.cfg.MaxBackoff != DefaultMaxBackoff || o.cfg.Index == "" {
					t.Errorf("defaults not applied: %+v", o.cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error starting %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	o, err := New(Config{Name: "es", Hosts: []string{"http://h:9200"}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !o.cfg.installTemplates() || o.cfg.TLSInsecure || o.cfg.Index != "k8s-logs-%Y.%m.%d" || o.cfg.Timeout != DefaultTimeout {
		t.Errorf("defaults: %+v", o.cfg)
	}
	if got := o.templatePatterns(); len(got) != 1 || got[0] != "k8s-logs-*" {
		t.Errorf("template patterns %v", got)
	}
	if tr, err := o.cfg.transport(); err != nil || tr.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("TLS verification must be on by default (%v)", err)
	}
	o2, err := New(Config{Name: "es", Hosts: []string{"http://h:9200"}, DataDir: t.TempDir(), Index: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	if got := o2.templatePatterns(); len(got) != 1 || got[0] != "audit" {
		t.Errorf("static index: template patterns %v, want the index itself", got)
	}
}

func TestBackoff(t *testing.T) {
	o := &Output{cfg: Config{MaxBackoff: 2 * time.Second}, base: 100 * time.Millisecond}
	for attempt := 1; attempt < 70; attempt++ {
		full := o.cfg.MaxBackoff
		if attempt < 6 {
			full = o.base << (attempt - 1)
		}
		for range 20 {
			d := o.backoff(attempt)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}
