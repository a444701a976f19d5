package config

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
)

// InputAuditWebhook is the type of the input that receives the kube-apiserver's audit webhook.
const InputAuditWebhook = "audit_webhook"

// Defaults of the audit_webhook input.
const (
	DefaultWebhookListen         = ":8443"
	DefaultWebhookURLPath        = "/"
	DefaultWebhookMaxBodyBytes   = 16 << 20
	DefaultWebhookSpoolFileBytes = 16 << 20
	DefaultWebhookMaxSpoolBytes  = 1 << 30
	DefaultWebhookTag            = "audit"
)

// WebhookInput holds the settings of an input of type audit_webhook (agent/webhook): an HTTPS
// server for the apiserver's audit webhook backend, whose events are spooled under
// <data_dir>/webhook/<name>/ and shipped from there. It is inlined in Input, so its keys sit
// next to name and type.
type WebhookInput struct {
	// Listen is the address to serve on (default DefaultWebhookListen).
	Listen string `yaml:"listen"`
	// URLPath is the path served (default "/"); the webhook kubeconfig's server URL ends in it.
	URLPath string `yaml:"url_path"`
	// TLSCertFile and TLSKeyFile are the server's certificate and key (PEM); required unless
	// TLSDisable.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSDisable serves plain HTTP. For tests only.
	TLSDisable bool `yaml:"tls_disable"`
	// ClientCAFile requires client certificates signed by these CAs (PEM).
	ClientCAFile string `yaml:"client_ca_file"`
	// TokenFile requires "Authorization: Bearer <the file's content>".
	TokenFile string `yaml:"token_file"`
	// AuthDisable accepts requests without a client certificate or token. For tests only.
	AuthDisable bool `yaml:"auth_disable"`
	// MaxBodyBytes caps a request's body; larger ones are answered 413.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// SpoolFileBytes is the size at which a new spool file is started (also after a minute).
	SpoolFileBytes ByteSize `yaml:"spool_file_bytes"`
	// MaxSpoolBytes bounds the spool; beyond it requests are answered 503 and the apiserver
	// retries them.
	MaxSpoolBytes ByteSize `yaml:"max_spool_bytes"`
}

func (in *Input) applyWebhookDefaults() {
	if in.Type != InputAuditWebhook {
		return
	}
	w := &in.WebhookInput
	fillDefault(&w.Listen, DefaultWebhookListen)
	fillDefault(&w.URLPath, DefaultWebhookURLPath)
	fillDefault(&w.MaxBodyBytes, DefaultWebhookMaxBodyBytes)
	fillDefault(&w.SpoolFileBytes, DefaultWebhookSpoolFileBytes)
	fillDefault(&w.MaxSpoolBytes, DefaultWebhookMaxSpoolBytes)
	fillDefault(&in.Tag, DefaultWebhookTag)
}

func fillDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// dirName is what an input name must look like when it names a directory.
var dirName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// validateWebhook checks an audit_webhook input; key is "inputs[i]".
func (in *Input) validateWebhook(key string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, errAt(key+"."+field, format, args...))
	}
	w := &in.WebhookInput
	if in.Name != "" && !dirName.MatchString(in.Name) {
		add("name", "%q names the spool directory <data_dir>/webhook/<name>: use letters, digits, '.', '_' and '-'", in.Name)
	}
	if _, _, err := net.SplitHostPort(w.Listen); err != nil {
		add("listen", "want host:port or :port, got %q", w.Listen)
	}
	if !strings.HasPrefix(w.URLPath, "/") {
		add("url_path", "must start with '/', got %q", w.URLPath)
	}
	if !w.TLSDisable {
		if w.TLSCertFile == "" {
			add("tls_cert_file", "must be set (the webhook serves HTTPS; tls_disable: true is for tests only)")
		}
		if w.TLSKeyFile == "" {
			add("tls_key_file", "must be set (the webhook serves HTTPS; tls_disable: true is for tests only)")
		}
	} else if w.ClientCAFile != "" {
		add("client_ca_file", "client certificates need TLS, but tls_disable is true")
	}
	switch {
	case w.AuthDisable && (w.ClientCAFile != "" || w.TokenFile != ""):
		add("auth_disable", "is true, but client_ca_file or token_file is set: choose")
	case !w.AuthDisable && w.ClientCAFile == "" && w.TokenFile == "":
		add("client_ca_file", "set client_ca_file, token_file or both: the webhook accepts only authenticated requests (auth_disable: true is for tests only)")
	}
	if w.MaxBodyBytes <= 0 {
		add("max_body_bytes", "must be positive")
	}
	if w.SpoolFileBytes <= 0 {
		add("spool_file_bytes", "must be positive")
	}
	if w.MaxSpoolBytes < w.MaxBodyBytes {
		add("max_spool_bytes", "must be at least max_body_bytes (%d)", w.MaxBodyBytes)
	}
	if in.MaxEventBytes < 0 {
		add("max_event_bytes", "must not be negative")
	}
	if len(in.Paths) > 0 {
		add("paths", "does not apply to audit_webhook inputs: they read their own spool")
	}
	if len(in.Exclude) > 0 {
		add("exclude", "does not apply to audit_webhook inputs")
	}
	if in.StartAt == "end" {
		add("start_at", "must be beginning for audit_webhook inputs: every spooled event is shipped")
	}
	return errs
}

// webhookOnly reports audit_webhook settings given to an input of another type.
func (in *Input) webhookOnly(key string) []error {
	var errs []error
	w := &in.WebhookInput
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"listen", w.Listen != ""}, {"url_path", w.URLPath != ""},
		{"tls_cert_file", w.TLSCertFile != ""}, {"tls_key_file", w.TLSKeyFile != ""},
		{"tls_disable", w.TLSDisable}, {"client_ca_file", w.ClientCAFile != ""},
		{"token_file", w.TokenFile != ""}, {"auth_disable", w.AuthDisable},
		{"max_body_bytes", w.MaxBodyBytes != 0}, {"spool_file_bytes", w.SpoolFileBytes != 0},
		{"max_spool_bytes", w.MaxSpoolBytes != 0},
	} {
		if f.set {
			errs = append(errs, errAt(key+"."+f.name, "only applies to %s inputs, this one is %s", InputAuditWebhook, in.Type))
		}
	}
	return errs
}

// WebhookSpoolDir is the spool directory of the audit_webhook input named name.
func (c *Config) WebhookSpoolDir(name string) string {
	return filepath.Join(c.DataDir, "webhook", name)
}
