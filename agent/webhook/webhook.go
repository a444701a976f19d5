// Package webhook is the audit_webhook input: an HTTPS server that receives the kube-apiserver's
// audit webhook backend (audit.k8s.io/v1 EventList batches) and makes every event durable
// before it answers, by appending the events to spool files that an ordinary tail reader ships.
//
// Positions, acknowledgements, retries and restarts therefore all follow the file path: a
// request is answered 200 only after its events are written, one JSON object per line, and
// fsynced to <data_dir>/webhook/<input>/<unix nanos>.log; the input's tail reader reads those
// files with the audit parser; a janitor deletes a file once it is no longer the one being
// written and its committed position is its size (every event in it was delivered). A crash
// at any point loses nothing that was answered 200, and re-sends nothing that was delivered.
package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
	"github.com/skiff-logs/skiff/agent/tail"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes    = 16 << 20
	DefaultSpoolFileBytes  = 16 << 20
	DefaultSpoolFileAge    = time.Minute
	DefaultMaxSpoolBytes   = 1 << 30
	DefaultURLPath         = "/"
	DefaultTag             = "audit"
	DefaultJanitorInterval = time.Second
	// shutdownGrace bounds how long Run waits at shutdown for requests being written.
	shutdownGrace = 5 * time.Second
)

// Config describes one audit_webhook input.
type Config struct {
	// Name names the input (metrics label, log attribute, spool directory). Required.
	Name string
	// Listen is the TCP address to serve on, e.g. ":8443" or "127.0.0.1:0". Required.
	Listen string
	// URLPath is the only path served (default "/"); other paths are answered 404.
	URLPath string
	// TLSCertFile and TLSKeyFile are the server's certificate and key (PEM). Required unless
	// TLSDisable.
	TLSCertFile, TLSKeyFile string
	// TLSDisable serves plain HTTP: for tests only; New logs a warning.
	TLSDisable bool
	// ClientCAFile, when set, requires a client certificate signed by one of these CAs (PEM).
	// A certificate that does not verify fails the TLS handshake; a request without one is
	// answered 401.
	ClientCAFile string
	// TokenFile, when set, requires "Authorization: Bearer <token>" with the file's content
	// (trailing newline trimmed): 401 without it, 403 with another token. The token is never
	// logged. When both ClientCAFile and TokenFile are set, a request needs both.
	TokenFile string
	// AuthDisable allows neither ClientCAFile nor TokenFile: for tests only.
	AuthDisable bool
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes); larger ones get 413.
	MaxBodyBytes int64
	// SpoolDir is the directory of the spool files, normally <data_dir>/webhook/<name>. Required.
	SpoolDir string
	// SpoolFileBytes is the size after which a new spool file is started (default
	// DefaultSpoolFileBytes); SpoolFileAge the age (default DefaultSpoolFileAge).
	SpoolFileBytes int64
	SpoolFileAge   time.Duration
	// MaxSpoolBytes bounds the bytes in the spool (default DefaultMaxSpoolBytes): while the
	// outputs do not keep up, requests are answered 503 and the apiserver retries them, instead
	// of filling the disk that also holds the positions.
	MaxSpoolBytes int64
	// MaxEventBytes is passed to NewParser as the largest event kept whole (0: the parser's
	// default).
	MaxEventBytes int
	// Tag is the records' tag (default DefaultTag).
	Tag string
	// NewParser creates the parser of each spool file (the audit parser); it is called with
	// MaxEventBytes. Required.
	NewParser tail.NewParser
	// Positions is the agent's positions store: the reader commits to it, the janitor reads it.
	// Required.
	Positions *positions.Store
	// JanitorInterval is how often delivered spool files are looked for (default
	// DefaultJanitorInterval).
	JanitorInterval time.Duration
	// Logger receives the input's logs (default slog.Default()).
	Logger *slog.Logger
}

// Input is one audit_webhook input. Create it with New, then call Run once.
type Input struct {
	cfg     Config
	log     *slog.Logger
	tls     *tls.Config // nil when TLS is disabled
	token   [sha256.Size]byte
	hasTok  bool
	spool   *spool
	tailer  *tail.Tailer
	handler http.Handler
	m       inputMetrics
	ran     atomic.Bool

	lnMu sync.Mutex
	ln   net.Listener

	bufs sync.Pool // *buffers
}

// New checks cfg, reads its certificates, CA and token, repairs the spool after a crash (see
// openSpool) and creates the tail reader of the spool. It starts no goroutine and does not
// listen yet.
func New(cfg Config) (*Input, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	in := &Input{cfg: cfg, log: cfg.Logger, m: newInputMetrics(cfg.Name)}
	if err := in.loadSecurity(); err != nil {
		return nil, err
	}
	sp, err := openSpool(cfg.SpoolDir, cfg.SpoolFileBytes, cfg.MaxSpoolBytes, cfg.SpoolFileAge, cfg.Logger,
		metrics.WebhookSpoolBytes.WithLabelValues(cfg.Name), metrics.WebhookSpoolFiles.WithLabelValues(cfg.Name))
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", cfg.Name, err)
	}
	in.spool = sp
	src := event.Source{Tag: cfg.Tag}
	newParser, maxEvent := cfg.NewParser, cfg.MaxEventBytes
	in.tailer, err = tail.New(tail.Config{
		Input: cfg.Name,
		Paths: []string{filepath.Join(cfg.SpoolDir, "*"+spoolExt)},
		// A line is one event, which can be as large as a whole body; the parser applies
		// MaxEventBytes, the reader must not cut a line short of it.
		MaxLineBytes: int(cfg.MaxBodyBytes) + len(kindField) + len(versionField),
		NewParser:    func(first []byte, _ int) tail.Parser { return newParser(first, maxEvent) },
		Describe:     func(string) event.Source { return src },
		Positions:    cfg.Positions,
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", cfg.Name, err)
	}
	in.handler = http.HandlerFunc(in.serve)
	return in, nil
}

func (c *Config) fill() error {
	var errs []error
	req := func(ok bool, what string) {
		if !ok {
			errs = append(errs, fmt.Errorf("webhook %s: %s", c.Name, what))
		}
	}
	req(c.Name != "", "no name")
	req(c.Listen != "", "no listen address")
	req(c.SpoolDir != "", "no spool directory")
	req(c.NewParser != nil, "no parser")
	req(c.Positions != nil, "no positions store")
	req(c.TLSDisable || (c.TLSCertFile != "" && c.TLSKeyFile != ""), "TLS needs a certificate and a key file (or TLS disabled, for tests)")
	req(c.AuthDisable || c.ClientCAFile != "" || c.TokenFile != "", "no authentication: set a client CA file, a token file, or both (or disable authentication, for tests)")
	for _, v := range []*int64{&c.MaxBodyBytes, &c.SpoolFileBytes, &c.MaxSpoolBytes} {
		req(*v >= 0, "a size is negative")
	}
	req(c.SpoolFileAge >= 0 && c.JanitorInterval >= 0 && c.MaxEventBytes >= 0, "a duration or size is negative")
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	orDefault(&c.URLPath, DefaultURLPath)
	orDefault(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	orDefault(&c.SpoolFileBytes, DefaultSpoolFileBytes)
	orDefault(&c.SpoolFileAge, DefaultSpoolFileAge)
	orDefault(&c.MaxSpoolBytes, DefaultMaxSpoolBytes)
	orDefault(&c.Tag, DefaultTag)
	orDefault(&c.JanitorInterval, DefaultJanitorInterval)
	orDefault(&c.Logger, slog.Default())
	c.SpoolDir = filepath.Clean(c.SpoolDir)
	return nil
}

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// loadSecurity reads the server key pair, the client CA and the token.
func (in *Input) loadSecurity() error {
	c := &in.cfg
	if c.TLSDisable {
		in.log.Warn("audit webhook serves plain HTTP (tls_disable): audit events and credentials cross the network unencrypted; use this for tests only")
	} else {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("webhook %s: load TLS key pair: %w", c.Name, err)
		}
		in.tls = &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		}
	}
	if c.AuthDisable {
		in.log.Warn("audit webhook accepts requests from anyone (auth_disable); use this for tests only")
	}
	if c.ClientCAFile != "" {
		if in.tls == nil {
			return fmt.Errorf("webhook %s: client certificates need TLS", c.Name)
		}
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return fmt.Errorf("webhook %s: read client CA: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("webhook %s: client CA file %s holds no PEM certificate", c.Name, c.ClientCAFile)
		}
		in.tls.ClientCAs = pool
		// Verified in the handshake when given; a missing one is answered 401 by the handler,
		// which says more to whoever configures the apiserver than a failed handshake.
		in.tls.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return fmt.Errorf("webhook %s: read token file: %w", c.Name, err)
		}
		tok := strings.TrimRight(string(b), "\r\n")
		if tok == "" {
			return fmt.Errorf("webhook %s: token file %s is empty", c.Name, c.TokenFile)
		}
		in.token, in.hasTok = sha256.Sum256([]byte(tok)), true
	}
	return nil
}

// Listen binds the listen address (TLS unless disabled). Run calls it when it was not called
// before; the agent calls it first so that a port in use fails the start. Safe to call twice.
func (in *Input) Listen() error {
	in.lnMu.Lock()
	defer in.lnMu.Unlock()
	if in.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", in.cfg.Listen)
	if err != nil {
		return fmt.Errorf("webhook %s: listen: %w", in.cfg.Name, err)
	}
	if in.tls != nil {
		ln = tls.NewListener(ln, in.tls)
	}
	in.ln = ln
	return nil
}

// Addr returns the address the input listens on, or "" before Listen.
func (in *Input) Addr() string {
	in.lnMu.Lock()
	defer in.lnMu.Unlock()
	if in.ln == nil {
		return ""
	}
	return in.ln.Addr().String()
}

// Run serves the webhook, tails the spool and deletes delivered spool files until ctx ends,
// calling handle with each chunk of records as tail.Tailer.Run does. At shutdown the server
// stops taking requests and finishes those being written (at most a few seconds), the reader
// stops, and the current spool file is closed. It returns nil after a clean shutdown, or the
// listen error. It may be called only once.
func (in *Input) Run(ctx context.Context, handle func(ctx context.Context, c *event.Chunk) error) error {
	if !in.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("webhook %s: Run called twice", in.cfg.Name)
	}
	if err := in.Listen(); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           in.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		// Handshake failures (a probe's TCP connect, a wrong client certificate) are logged
		// here; the apiserver logs its side of them.
		ErrorLog: slog.NewLogLogger(in.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := srv.Serve(in.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.log.Error("audit webhook server stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := in.tailer.Run(ctx, handle); err != nil && !errors.Is(err, context.Canceled) {
			in.log.Error("audit webhook spool reader stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		in.janitor(ctx)
	}()
	in.log.Info("audit webhook listening", "addr", in.Addr(), "tls", in.tls != nil, "spool", in.cfg.SpoolDir)
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	if err := srv.Shutdown(shut); err != nil {
		in.log.Warn("audit webhook requests still running at shutdown were cut off; the apiserver retries them", "err", err)
		_ = srv.Close()
	}
	cancel()
	wg.Wait()
	in.spool.close()
	return nil
}

// janitor deletes delivered spool files: once at start (files delivered before a restart), then
// every JanitorInterval.
func (in *Input) janitor(ctx context.Context) {
	t := time.NewTicker(in.cfg.JanitorInterval)
	defer t.Stop()
	for {
		if n := in.spool.sweep(in.cfg.Positions); n > 0 {
			in.log.Debug("deleted delivered spool files", "files", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
