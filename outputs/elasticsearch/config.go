package elasticsearch

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Defaults applied by New to zero-valued fields (and by DefaultConfig).
const (
	DefaultIndex         = "k8s-logs-%Y.%m.%d"
	DefaultFlushBytes    = 512 << 10
	DefaultFlushInterval = 500 * time.Millisecond
	DefaultWorkers       = 2
	DefaultQueueRecords  = 16384
	DefaultMaxBackoff    = 30 * time.Second
	DefaultTimeout       = 60 * time.Second
	DefaultFallbackAfter = 30 * time.Second
	DefaultSpoolMaxBytes = 1 << 30
)

// Config configures one Elasticsearch output. Secrets (APIKey, Password) are read from files or
// the environment by the caller; this package never prints them, nor any URL's user information.
//
// New replaces zero fields with their defaults, so a Config literal that sets only Name, Hosts and
// DataDir is complete.
type Config struct {
	// Name identifies the output in metrics, logs, the index template name (skiff-<name>) and
	// dead-letter file names. Letters, digits, '.', '_' and '-'.
	Name string
	// Hosts are the base URLs of Elasticsearch nodes (http or https).
	Hosts []string
	// Index is the index name template (see outputs/template), default "k8s-logs-%Y.%m.%d".
	Index string

	// APIKey is the base64 "id:key" API key; it excludes Username/Password.
	APIKey string
	// Username and Password are for HTTP basic authentication.
	Username string
	Password string
	// CAFile is a PEM file of certificate authorities trusted in addition to the system's.
	CAFile string
	// TLSInsecure turns TLS certificate verification off. Default false.
	TLSInsecure bool

	// FlushBytes is the bulk body size at which a request is sent, default 512 KiB. Each worker
	// holds one body (two when compressing), so it is most of the output's memory.
	FlushBytes int
	// FlushInterval is the longest a record waits, from Send, for its bulk request to fill
	// before the request is sent anyway, default 500ms.
	FlushInterval time.Duration
	// Workers is the number of concurrent bulk requests, default 2.
	Workers int
	// QueueRecords bounds the records waiting for a worker; Send blocks beyond it. Default 16384.
	QueueRecords int
	// Compression gzips request bodies.
	Compression bool
	// MaxBackoff caps the jittered exponential backoff between retries, default 30s.
	MaxBackoff time.Duration
	// Timeout bounds one HTTP request, default 60s. A bulk request that times out is retried;
	// its documents may have been indexed already, which the retry sees as 409: delivered.
	Timeout time.Duration
	// DataDir is skiff's data directory; dead letters go to
	// DataDir/deadletter/<name>-YYYYMMDD.json.gz. Required.
	DataDir string
	// InstallTemplates installs the index template skiff-<name> at start. nil means true: a
	// pointer, so that an unset field gets the default.
	InstallTemplates *bool
	// FallbackAfter is how long bulk requests must have been failing with retryable errors
	// (connection errors, timeouts, 5xx, 429 on the whole request) before workers write what
	// they hold to the fallback spool, DataDir/spool/<name>/, instead of retrying. Default 30s.
	FallbackAfter time.Duration
	// SpoolMaxBytes bounds the spool's size on disk; when it is full, workers keep retrying
	// and Send blocks. Default 1 GiB.
	SpoolMaxBytes int64

	// Logger receives the output's logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config holding every default. The caller still sets Name, Hosts and
// DataDir.
func DefaultConfig() Config {
	install := true
	return Config{
		Index:            DefaultIndex,
		FlushBytes:       DefaultFlushBytes,
		FlushInterval:    DefaultFlushInterval,
		Workers:          DefaultWorkers,
		QueueRecords:     DefaultQueueRecords,
		MaxBackoff:       DefaultMaxBackoff,
		Timeout:          DefaultTimeout,
		InstallTemplates: &install,
		FallbackAfter:    DefaultFallbackAfter,
		SpoolMaxBytes:    DefaultSpoolMaxBytes,
	}
}

// installTemplates reports the effective InstallTemplates.
func (c *Config) installTemplates() bool { return c.InstallTemplates == nil || *c.InstallTemplates }

// withDefaults fills zero fields. Negative values stay, for validate to report.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.Index, d.Index)
	setDefault(&c.FlushBytes, d.FlushBytes)
	setDefault(&c.FlushInterval, d.FlushInterval)
	setDefault(&c.Workers, d.Workers)
	setDefault(&c.QueueRecords, d.QueueRecords)
	setDefault(&c.MaxBackoff, d.MaxBackoff)
	setDefault(&c.Timeout, d.Timeout)
	setDefault(&c.InstallTemplates, d.InstallTemplates)
	setDefault(&c.FallbackAfter, d.FallbackAfter)
	setDefault(&c.SpoolMaxBytes, d.SpoolMaxBytes)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate checks c (defaults already applied). Errors name the configuration key, and never
// quote a secret.
func (c *Config) validate() error {
	if c.Name == "" {
		return fmt.Errorf("name: must not be empty")
	}
	for _, ch := range c.Name {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return fmt.Errorf("name: %q: only letters, digits, '.', '_' and '-' are allowed", c.Name)
		}
	}
	if len(c.Hosts) == 0 {
		return fmt.Errorf("hosts: at least one Elasticsearch URL is required")
	}
	for i, h := range c.Hosts {
		u, err := url.Parse(h)
		if err != nil {
			// The parse error quotes the input, which may hold a password: report the index only.
			return fmt.Errorf("hosts[%d]: not a valid URL", i)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("hosts[%d]: %s: scheme must be http or https", i, u.Redacted())
		}
		if u.Host == "" {
			return fmt.Errorf("hosts[%d]: %s: no host", i, u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("hosts[%d]: %s: must not have a query or fragment", i, u.Redacted())
		}
	}
	if c.APIKey != "" && (c.Username != "" || c.Password != "") {
		return fmt.Errorf("api_key: cannot be combined with username/password")
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("username: required with password")
	}
	if c.FlushBytes < 0 {
		return fmt.Errorf("flush_bytes: must be positive")
	}
	if c.FlushInterval < 0 {
		return fmt.Errorf("flush_interval: must be positive")
	}
	if c.Workers < 0 {
		return fmt.Errorf("workers: must be positive")
	}
	if c.QueueRecords < 0 {
		return fmt.Errorf("queue_records: must be positive")
	}
	if c.MaxBackoff < baseBackoff {
		return fmt.Errorf("max_backoff: must be at least %v", baseBackoff)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout: must be positive")
	}
	if c.FallbackAfter < 0 {
		return fmt.Errorf("fallback_after: must be positive")
	}
	if c.SpoolMaxBytes < 0 {
		return fmt.Errorf("spool_max_bytes: must be positive")
	}
	if c.DataDir == "" {
		return fmt.Errorf("data_dir: required (rejected documents are written there)")
	}
	return nil
}

// transport builds the HTTP transport: TLS verification on unless TLSInsecure, the system roots
// plus CAFile, and enough idle connections for every worker.
func (c *Config) transport() (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = c.Workers + 1
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecure}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	t.TLSClientConfig = tc
	return t, nil
}

// redactedHosts is Hosts without user information, for logs.
func (c *Config) redactedHosts() []string {
	out := make([]string, len(c.Hosts))
	for i, h := range c.Hosts {
		if u, err := url.Parse(h); err == nil {
			out[i] = u.Redacted()
		} else {
			out[i] = "(invalid)"
		}
	}
	return out
}
