// Package config loads and validates skiff's YAML configuration: one file, a typed struct per
// section, defaults, ${ENV} expansion, secrets read from files, and errors that name the full key
// (outputs[1].flush_bytes: must be positive).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-logs/skiff/agent/route"
)

// Config is the whole configuration file.
type Config struct {
	// DataDir holds positions, the spool and dead letters.
	DataDir string   `yaml:"data_dir"`
	Inputs  []Input  `yaml:"inputs"`
	Outputs []Output `yaml:"outputs"`
	HTTP    HTTP     `yaml:"http"`
	// Kubernetes configures metadata enrichment from the Kubernetes API.
	Kubernetes Kubernetes `yaml:"kubernetes"`
	// RewriteTag rules change records' tags before routing (rules.go).
	RewriteTag []RewriteTagRule `yaml:"rewrite_tag"`
	// Records rules set and remove record fields after rewrite_tag (rules.go).
	Records []RecordRule `yaml:"records"`
	// ShutdownTimeout bounds how long outputs may take to drain at shutdown.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// PositionsInterval is how often changed positions are written.
	PositionsInterval Duration `yaml:"positions_interval"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// MemoryLimit bounds the bytes read from log files and not yet acknowledged by the
	// outputs, over all inputs (default DefaultMemoryLimit); readers wait when it is reached.
	// The binary also derives the Go runtime's soft memory limit from it
	// (agent.ApplyMemoryLimit) unless GOMEMLIMIT is set.
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// Input is one tail input.
type Input struct {
	Name string `yaml:"name"`
	// Type is "containers" (CRI or docker json-file, detected per file), "audit" (kube-apiserver
	// audit log files, see rules.go) or "audit_webhook" (the apiserver's audit webhook, see
	// WebhookInput).
	Type    string   `yaml:"type"`
	Paths   []string `yaml:"paths"`
	Exclude []string `yaml:"exclude"`
	// StartAt is where to start in a file seen for the first time: beginning or end.
	StartAt      string   `yaml:"start_at"`
	MaxLineBytes ByteSize `yaml:"max_line_bytes"`
	ScanInterval Duration `yaml:"scan_interval"`
	// Tag is the records' tag (audit and audit_webhook inputs; default "audit").
	Tag string `yaml:"tag"`
	// MaxEventBytes is the largest audit event kept whole; larger ones are truncated by the
	// audit parser (audit and audit_webhook inputs; 0: the parser's default).
	MaxEventBytes ByteSize `yaml:"max_event_bytes"`
	// WebhookInput holds the settings of audit_webhook inputs (webhook.go).
	WebhookInput `yaml:",inline"`
}

// Output is one output; which fields apply depends on Type.
type Output struct {
	Name string `yaml:"name"`
	// Type is "elasticsearch" or "file".
	Type string `yaml:"type"`
	// Match lists fluentd-style tag patterns: * one part, ** any number of parts, {a,b} either.
	Match []string `yaml:"match"`

	// Elasticsearch.
	Hosts        []string `yaml:"hosts"`
	Index        string   `yaml:"index"`
	APIKey       string   `yaml:"api_key"`
	APIKeyFile   string   `yaml:"api_key_file"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	CAFile       string   `yaml:"ca_file"`
	TLSInsecure  bool     `yaml:"tls_insecure"`
	Workers      int      `yaml:"workers"`
	Compression  bool     `yaml:"compression"`
	// FallbackAfter is how long Elasticsearch must have been unreachable before batches go to
	// the fallback spool under data_dir (default 30s).
	FallbackAfter Duration `yaml:"fallback_after"`
	// SpoolMaxBytes bounds the fallback spool (default 1GiB); when full, sending blocks.
	SpoolMaxBytes ByteSize `yaml:"spool_max_bytes"`

	// File.
	Path string `yaml:"path"`

	// Both.
	FlushBytes    ByteSize `yaml:"flush_bytes"`
	FlushInterval Duration `yaml:"flush_interval"`
	QueueRecords  int      `yaml:"queue_records"`
}

// HTTP configures the metrics and health endpoint.
type HTTP struct {
	// Listen is the address for /metrics, /healthz and /readyz; empty disables the server.
	Listen string `yaml:"listen"`
}

// Kubernetes configures enrichment of container log records with pod and namespace metadata
// from the Kubernetes API (kubernetes.* fields, and the skiff.io/exclude and skiff.io/parser
// annotations).
type Kubernetes struct {
	// Enabled turns enrichment on. Off by default, so that skiff runs without an apiserver.
	Enabled bool `yaml:"enabled"`
	// Kubeconfig is the path of a kubeconfig file; empty means the in-cluster configuration
	// (the pod's ServiceAccount token and the KUBERNETES_SERVICE_* environment).
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName is the node skiff runs on (from the downward API: ${NODE_NAME}); only pods bound
	// to it are watched. Required when Enabled.
	NodeName string `yaml:"node_name"`
	// PodAnnotations lists the annotation keys copied to records (kubernetes.annotations.*);
	// no others are, since annotations can be large and hold anything.
	PodAnnotations []string `yaml:"pod_annotations"`
	// NamespaceLabels copies the namespace's labels to records (kubernetes.namespace_labels.*).
	// Default true.
	NamespaceLabels *bool `yaml:"namespace_labels"`
	// Dedot replaces '.' by '_' in label and annotation keys, so that app and
	// app.kubernetes.io/name can both be mapped in Elasticsearch. Default true.
	Dedot *bool `yaml:"dedot"`
	// DeletedPodGrace is how long a deleted pod's metadata is kept, so that the last lines of
	// its files, read after the deletion, are still enriched.
	DeletedPodGrace Duration `yaml:"deleted_pod_grace"`
	// JSONKey is the record field under which skiff.io/parser: json puts the fields parsed from
	// a message; one key, so that documents of different applications cannot conflict in
	// the index mapping.
	JSONKey string `yaml:"json_key"`
	// SyncTimeout bounds how long the agent waits at start for the first complete copy of the
	// pods and namespaces before it starts tailing, so that the first records are enriched
	// (and excluded pods excluded). When the API does not answer in time, tailing starts
	// anyway and records are enriched once the cache knows their pods.
	SyncTimeout Duration `yaml:"sync_timeout"`
}

// Error is a configuration problem at one key.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

func errAt(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Load reads, expands, decodes, defaults and validates the file at path. Every problem found is
// returned, joined, each naming its key.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(raw)
}

// Parse is Load for configuration text already in memory.
func Parse(raw []byte) (*Config, error) {
	expanded, err := expandEnv(raw)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("config is not valid YAML: %w", err)
	}
	var c Config
	if len(root.Content) > 0 {
		if err := decodeStrict(root.Content[0], &c, ""); err != nil {
			return nil, err
		}
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := c.readSecrets(); err != nil {
		return nil, err
	}
	return &c, nil
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default}; $$ stands for a literal $. ${tag} is left
// alone: it is the rules' placeholder for a record's tag. A variable that is
// unset and has no default is an error, since an empty host or node name fails later and further
// from its cause.
func expandEnv(raw []byte) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(raw, func(m []byte) []byte {
		if string(m) == "$$" {
			return []byte("$")
		}
		sub := envRef.FindSubmatch(m)
		name := string(sub[1])
		if name == "tag" && len(sub[2]) == 0 {
			return m // the ${tag} placeholder of rewrite_tag and records rules, not a variable
		}
		if v, ok := os.LookupEnv(name); ok {
			return []byte(v)
		}
		if len(sub[2]) > 0 {
			return sub[3]
		}
		missing = append(missing, name)
		return nil
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("config refers to unset environment variables: %s (set them, or give a default as ${NAME:-value})", strings.Join(missing, ", "))
	}
	return out, nil
}

// Defaults.
const (
	DefaultDataDir           = "/var/lib/skiff"
	DefaultMaxLineBytes      = 1 << 20
	DefaultIndex             = "k8s-logs-%Y.%m.%d"
	DefaultESFlushBytes      = 512 << 10 // 8 % less throughput per CPU-second than 1 MiB, 8 MiB less peak RSS (docs/performance.md)
	DefaultFileFlushBytes    = 1 << 20
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultPositionsInterval = time.Second
	DefaultScanInterval      = time.Second
	DefaultDeletedPodGrace   = 5 * time.Minute
	DefaultJSONKey           = "json"
	DefaultKubeSyncTimeout   = 10 * time.Second
	DefaultMemoryLimit       = 4 << 20 // the floor for 2 Elasticsearch workers × 512 KiB; with agent.SoftMemoryLimit (28 MiB): ~38 MiB peak RSS at 1,000 busy files and 500 pods
)

// Default flush intervals: the longest a record waits in an output's batch. Elasticsearch's is
// half the usual agents' 1s, so that a line can reach Elasticsearch within a second end to end
// (tailing and the request take the rest of it).
const (
	DefaultESFlushInterval   = 500 * time.Millisecond
	DefaultFileFlushInterval = time.Second
)

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.PositionsInterval == 0 {
		c.PositionsInterval = Duration(DefaultPositionsInterval)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.MemoryLimit == 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	c.Kubernetes.applyDefaults()
	for i := range c.Inputs {
		in := &c.Inputs[i]
		if in.Type == "" {
			in.Type = "containers"
		}
		in.applyWebhookDefaults()
		in.applyAuditDefaults()
		if in.StartAt == "" {
			in.StartAt = "beginning"
		}
		if in.MaxLineBytes == 0 {
			in.MaxLineBytes = DefaultMaxLineBytes
		}
		if in.ScanInterval == 0 {
			in.ScanInterval = Duration(DefaultScanInterval)
		}
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if len(o.Match) == 0 {
			o.Match = []string{"**"}
		}
		switch o.Type {
		case "elasticsearch":
			if o.FlushInterval == 0 {
				o.FlushInterval = Duration(DefaultESFlushInterval)
			}
			if o.Index == "" {
				o.Index = DefaultIndex
			}
			if o.FlushBytes == 0 {
				o.FlushBytes = DefaultESFlushBytes
			}
		case "file":
			if o.FlushInterval == 0 {
				o.FlushInterval = Duration(DefaultFileFlushInterval)
			}
			if o.FlushBytes == 0 {
				o.FlushBytes = DefaultFileFlushBytes
			}
		}
	}
}

// Validate checks every section and returns all problems found, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, errAt(key, format, args...)) }
	if c.DataDir == "" {
		add("data_dir", "must not be empty")
	}
	if c.ShutdownTimeout < 0 {
		add("shutdown_timeout", "must not be negative")
	}
	if c.PositionsInterval <= 0 {
		add("positions_interval", "must be positive")
	}
	if c.MemoryLimit < 0 {
		add("memory_limit", "must not be negative")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "must be debug, info, warn or error, not %q", c.LogLevel)
	}
	if len(c.Inputs) == 0 {
		add("inputs", "at least one input is needed")
	}
	if len(c.Outputs) == 0 {
		add("outputs", "at least one output is needed")
	}
	errs = append(errs, c.Kubernetes.validate("kubernetes")...)
	errs = append(errs, c.validateRules()...)
	names := map[string]string{}
	unique := func(key, name string) {
		if name == "" {
			add(key+".name", "must not be empty")
			return
		}
		if prev, ok := names[name]; ok {
			add(key+".name", "%q is already the name of %s", name, prev)
			return
		}
		names[name] = key
	}
	for i := range c.Inputs {
		key := fmt.Sprintf("inputs[%d]", i)
		in := &c.Inputs[i]
		unique(key, in.Name)
		if in.Type == InputAuditWebhook {
			errs = append(errs, in.validateWebhook(key)...)
			continue
		}
		errs = append(errs, in.webhookOnly(key)...)
		errs = append(errs, in.validateAudit(key)...)
		if in.Type != "containers" && in.Type != InputAudit {
			add(key+".type", "unknown input type %q (known: containers, audit, audit_webhook)", in.Type)
		}
		if len(in.Paths) == 0 {
			add(key+".paths", "at least one glob is needed")
		}
		for j, p := range in.Paths {
			if err := checkGlob(p); err != nil {
				add(fmt.Sprintf("%s.paths[%d]", key, j), "%v", err)
			}
		}
		for j, p := range in.Exclude {
			if err := checkGlob(p); err != nil {
				add(fmt.Sprintf("%s.exclude[%d]", key, j), "%v", err)
			}
		}
		if in.StartAt != "beginning" && in.StartAt != "end" {
			add(key+".start_at", "must be beginning or end, not %q", in.StartAt)
		}
		if in.MaxLineBytes <= 0 {
			add(key+".max_line_bytes", "must be positive")
		}
		if in.ScanInterval <= 0 {
			add(key+".scan_interval", "must be positive")
		}
	}
	for i := range c.Outputs {
		key := fmt.Sprintf("outputs[%d]", i)
		o := &c.Outputs[i]
		unique(key, o.Name)
		for j, m := range o.Match {
			if _, err := route.Compile(m); err != nil {
				add(fmt.Sprintf("%s.match[%d]", key, j), "%v", err)
			}
		}
		if o.FlushBytes <= 0 {
			add(key+".flush_bytes", "must be positive")
		}
		if o.FlushInterval <= 0 {
			add(key+".flush_interval", "must be positive")
		}
		if o.QueueRecords < 0 {
			add(key+".queue_records", "must not be negative")
		}
		switch o.Type {
		case "elasticsearch":
			errs = append(errs, o.validateElasticsearch(key)...)
		case "file":
			if o.Path == "" {
				add(key+".path", "must not be empty")
			}
			errs = append(errs, o.onlyFor(key, "file")...)
		default:
			add(key+".type", "unknown output type %q (known: elasticsearch, file)", o.Type)
		}
	}
	return errors.Join(errs...)
}

func (o *Output) validateElasticsearch(key string) []error {
	var errs []error
	if len(o.Hosts) == 0 {
		errs = append(errs, errAt(key+".hosts", "at least one host is needed"))
	}
	for j, h := range o.Hosts {
		u, err := url.Parse(h)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errAt(fmt.Sprintf("%s.hosts[%d]", key, j), "want a URL like https://elasticsearch:9200, got %q", h))
		}
	}
	if o.APIKey != "" && o.APIKeyFile != "" {
		errs = append(errs, errAt(key+".api_key_file", "give api_key or api_key_file, not both"))
	}
	if o.Password != "" && o.PasswordFile != "" {
		errs = append(errs, errAt(key+".password_file", "give password or password_file, not both"))
	}
	if (o.APIKey != "" || o.APIKeyFile != "") && o.Username != "" {
		errs = append(errs, errAt(key+".username", "give an API key or a username, not both"))
	}
	if o.Workers < 0 {
		errs = append(errs, errAt(key+".workers", "must not be negative"))
	}
	if o.FallbackAfter < 0 {
		errs = append(errs, errAt(key+".fallback_after", "must not be negative"))
	}
	if o.SpoolMaxBytes < 0 {
		errs = append(errs, errAt(key+".spool_max_bytes", "must not be negative"))
	}
	return append(errs, o.onlyFor(key, "elasticsearch")...)
}

// onlyFor reports fields set that do not belong to outputs of type typ.
func (o *Output) onlyFor(key, typ string) []error {
	var errs []error
	check := func(field string, set bool, owner string) {
		if set && owner != typ {
			errs = append(errs, errAt(key+"."+field, "only applies to %s outputs, this one is %s", owner, typ))
		}
	}
	check("hosts", len(o.Hosts) > 0, "elasticsearch")
	check("index", o.Index != "", "elasticsearch")
	check("api_key", o.APIKey != "", "elasticsearch")
	check("api_key_file", o.APIKeyFile != "", "elasticsearch")
	check("username", o.Username != "", "elasticsearch")
	check("password", o.Password != "", "elasticsearch")
	check("password_file", o.PasswordFile != "", "elasticsearch")
	check("ca_file", o.CAFile != "", "elasticsearch")
	check("tls_insecure", o.TLSInsecure, "elasticsearch")
	check("workers", o.Workers != 0, "elasticsearch")
	check("compression", o.Compression, "elasticsearch")
	check("fallback_after", o.FallbackAfter != 0, "elasticsearch")
	check("spool_max_bytes", o.SpoolMaxBytes != 0, "elasticsearch")
	check("path", o.Path != "", "file")
	return errs
}

func (k *Kubernetes) applyDefaults() {
	yes := true
	if k.NamespaceLabels == nil {
		k.NamespaceLabels = &yes
	}
	if k.Dedot == nil {
		k.Dedot = &yes
	}
	if k.DeletedPodGrace == 0 {
		k.DeletedPodGrace = Duration(DefaultDeletedPodGrace)
	}
	if k.JSONKey == "" {
		k.JSONKey = DefaultJSONKey
	}
	if k.SyncTimeout == 0 {
		k.SyncTimeout = Duration(DefaultKubeSyncTimeout)
	}
}

// documentKeys are the top-level keys every document has; a json_key equal to one of them would
// be renamed in each document (fields_<key>), which is surely not what was meant.
var documentKeys = []string{"@timestamp", "@timestamp_nanos", "message", "stream", "tag", "log", "kubernetes", "container", "skiff"}

func (k *Kubernetes) validate(key string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, errAt(key+"."+field, format, args...))
	}
	if k.Enabled && k.NodeName == "" {
		add("node_name", "must not be empty when kubernetes.enabled is true (in the DaemonSet, set it from the downward API: ${NODE_NAME})")
	}
	if k.DeletedPodGrace < 0 {
		add("deleted_pod_grace", "must not be negative")
	}
	if k.SyncTimeout < 0 {
		add("sync_timeout", "must not be negative")
	}
	if slices.Contains(documentKeys, k.JSONKey) {
		add("json_key", "%q is a field skiff writes itself; choose another key", k.JSONKey)
	}
	seen := map[string]bool{}
	for i, a := range k.PodAnnotations {
		switch {
		case a == "":
			add(fmt.Sprintf("pod_annotations[%d]", i), "must not be empty")
		case seen[a]:
			add(fmt.Sprintf("pod_annotations[%d]", i), "%q is listed twice", a)
		}
		seen[a] = true
	}
	return errs
}

// readSecrets replaces *_file settings by the secrets they hold (trailing newline trimmed).
func (c *Config) readSecrets() error {
	var errs []error
	for i := range c.Outputs {
		o := &c.Outputs[i]
		key := fmt.Sprintf("outputs[%d]", i)
		read := func(field, path string, dst *string) {
			if path == "" {
				return
			}
			b, err := os.ReadFile(path)
			if err != nil {
				errs = append(errs, errAt(key+"."+field, "cannot read secret file: %v", err))
				return
			}
			*dst = strings.TrimRight(string(b), "\r\n")
			if *dst == "" {
				errs = append(errs, errAt(key+"."+field, "secret file %s is empty", path))
			}
		}
		read("api_key_file", o.APIKeyFile, &o.APIKey)
		read("password_file", o.PasswordFile, &o.Password)
	}
	return errors.Join(errs...)
}
