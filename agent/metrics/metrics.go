// Package metrics declares skiff's Prometheus metrics in one place, so names, labels and help texts
// stay consistent. Hot paths resolve a labelled child once (WithLabelValues) and then only Add.
//
// The metric types are skiff's own (counters, gauges and histograms on atomics, written in the
// Prometheus text exposition format 0.0.4 by a Set): client_golang and the protobuf runtime it
// pulls in made up about a megabyte of the binary, resident in every node's skiff.
package metrics

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Registry holds every skiff metric plus the Go and process collectors; /metrics serves it.
var Registry = NewSet()

var (
	// InputRecords counts records read, by input name.
	InputRecords = counter("skiff_input_records_total", "Records read, by input.", "input")
	// InputBytes counts bytes read from files, by input name.
	InputBytes = counter("skiff_input_bytes_total", "Bytes read, by input.", "input")
	// ParseErrors counts lines kept raw because they did not parse, by input name.
	ParseErrors = counter("skiff_parse_errors_total", "Lines that did not parse and were kept raw with a parse-error flag, by input.", "input")
	// TruncatedLines counts lines longer than max_line_bytes, by input name.
	TruncatedLines = counter("skiff_truncated_lines_total", "Lines longer than max_line_bytes, kept up to the limit and flagged, by input.", "input")
	// TruncatedBytes counts the bytes cut off such lines, by input name.
	TruncatedBytes = counter("skiff_truncated_bytes_total", "Bytes cut off lines longer than max_line_bytes, by input.", "input")
	// InvalidUTF8 counts records whose invalid UTF-8 was replaced, by input name.
	InvalidUTF8 = counter("skiff_invalid_utf8_records_total", "Records whose invalid UTF-8 was replaced by U+FFFD, by input.", "input")
	// LostBytes counts bytes that could not be read because the file was truncated or deleted
	// before skiff got to them, by input name.
	LostBytes = counter("skiff_lost_bytes_total", "Bytes skiff could not read because the file was truncated or removed first, by input.", "input")
	// FilesOpen is the number of files being tailed, by input name.
	FilesOpen = gauge("skiff_files_open", "Files being tailed, by input.", "input")
	// FileUnackedBytes is, per file, the bytes read but not yet acknowledged by every output.
	FileUnackedBytes = gauge("skiff_file_unacked_bytes", "Bytes read from a file whose delivery is not yet acknowledged.", "path")

	// RouteDropped counts records no output matched or a rule dropped, by reason.
	RouteDropped = counter("skiff_route_dropped_records_total", "Records dropped by routing (no output matched, or a rule), by reason.", "reason")

	// OutputRecords counts records by output and final status (delivered, rejected, spooled, failed).
	OutputRecords = counter("skiff_output_records_total", "Records finished by an output, by output and status.", "output", "status")
	// OutputRetries counts records sent again after a retryable error, by output.
	OutputRetries = counter("skiff_output_retried_records_total", "Records retried after a retryable error (429, 5xx, connection), by output.", "output")
	// OutputRequests counts requests by output and result (ok, error).
	OutputRequests = counter("skiff_output_requests_total", "Requests made by an output, by result.", "output", "result")
	// OutputLatency observes request latency in seconds, by output.
	OutputLatency = NewHistogramVec("skiff_output_request_seconds",
		"Latency of output requests (bulk requests, file flushes), by output.",
		ExponentialBuckets(0.001, 2, 15), "output")
	// OutputQueued is the number of records accepted by an output and not yet finished.
	OutputQueued = gauge("skiff_output_queued_records", "Records accepted by an output and not yet finished.", "output")

	// PositionsWrites counts positions-file writes by result.
	PositionsWrites = counter("skiff_positions_writes_total", "Positions file writes, by result.", "result")

	// KubeAPIErrors counts failed lists and watches of the Kubernetes API, by resource.
	KubeAPIErrors = counter("skiff_kube_api_errors_total", "Failed lists and watches of the Kubernetes API (retried with backoff), by resource.", "resource")
	// KubeLookups counts the metadata lookups of files (once per file and cache change, not per
	// record), by result: found (the pod is known) or missing (records carry what the path tells).
	KubeLookups = counter("skiff_kube_lookups_total", "Kubernetes metadata lookups of files (per file and cache change), by result (found, missing).", "result")
	// KubeCachedPods is the number of pods in the metadata cache, deleted pods in their grace
	// period included.
	KubeCachedPods = NewGauge("skiff_kube_cached_pods", "Pods in the Kubernetes metadata cache, deleted pods in their grace period included.")
	// KubeJSONSkipped counts messages of pods annotated skiff.io/parser: json that are not a
	// JSON object and were shipped as they are.
	KubeJSONSkipped = NewCounter("skiff_kube_json_skipped_records_total", "Messages of pods annotated skiff.io/parser: json that are not a JSON object, shipped unparsed.")
	// ReadErrors counts files whose reading ended early because their content could not be read
	// (a damaged or truncated gzip-compressed rotated file), by input name: what came before the
	// damage was delivered, the rest is lost.
	ReadErrors = counter("skiff_read_errors_total", "Files whose reading ended early on unreadable content (e.g. a damaged gzip rotated file), by input.", "input")
)

func counter(name, help string, labels ...string) *CounterVec {
	return NewCounterVec(name, help, labels...)
}

func gauge(name, help string, labels ...string) *GaugeVec {
	return NewGaugeVec(name, help, labels...)
}

func init() {
	Registry.MustRegister(
		NewGoCollector(),
		NewProcessCollector(),
		InputRecords, InputBytes, ParseErrors, TruncatedLines, TruncatedBytes, InvalidUTF8,
		LostBytes, FilesOpen, FileUnackedBytes, RouteDropped,
		OutputRecords, OutputRetries, OutputRequests, OutputLatency, OutputQueued,
		PositionsWrites,
		KubeAPIErrors, KubeLookups, KubeCachedPods, KubeJSONSkipped,
		ReadErrors,
	)
}

// Value returns the current value of a counter or gauge (for the demo's progress and for tests).
func Value(m Valuer) float64 { return m.Value() }

// Audit webhook input (agent/webhook).
var (
	// WebhookRequests counts webhook requests by input and HTTP status code.
	WebhookRequests = counter("skiff_webhook_requests_total", "Audit webhook requests, by input and HTTP status code.", "input", "code")
	// WebhookEvents counts audit events written to the spool and fsynced (answered 200), by input.
	WebhookEvents = counter("skiff_webhook_events_total", "Audit events accepted: written to the spool and fsynced before the 200, by input.", "input")
	// WebhookRequestSeconds observes the latency of accepted webhook requests, from the request's
	// arrival to the 200 (body read, split, write and fsync), by input.
	WebhookRequestSeconds = NewHistogramVec("skiff_webhook_request_seconds",
		"Latency of accepted audit webhook requests (read, split, write, fsync), by input.",
		ExponentialBuckets(0.0005, 2, 15), "input")
	// WebhookSpoolBytes is the size of the spool files not yet deleted, by input.
	WebhookSpoolBytes = gauge("skiff_webhook_spool_bytes", "Bytes in the audit webhook spool (written, not yet deleted after delivery), by input.", "input")
	// WebhookSpoolFiles is the number of spool files not yet deleted, by input.
	WebhookSpoolFiles = gauge("skiff_webhook_spool_files", "Files in the audit webhook spool, by input.", "input")
)

func init() {
	Registry.MustRegister(WebhookRequests, WebhookEvents, WebhookRequestSeconds, WebhookSpoolBytes, WebhookSpoolFiles)
}

// Audit log parser (parsers/audit).
var (
	// AuditTruncatedEvents counts audit events larger than max_event_bytes that lost members
	// (responseObject first) to fit, from files and the webhook alike.
	AuditTruncatedEvents = NewCounter("skiff_audit_truncated_events_total", "Audit events larger than max_event_bytes, cut down by removing their largest members (responseObject, requestObject, …) and flagged truncated.")
)

func init() { Registry.MustRegister(AuditTruncatedEvents) }

// Elasticsearch fallback spool (outputs/elasticsearch).
var (
	// SpoolBytes is the size of an Elasticsearch output's fallback spool files, by output.
	SpoolBytes = gauge("skiff_spool_bytes", "Bytes in the Elasticsearch fallback spool (spooled, not yet replayed), by output.", "output")
	// SpoolFiles is the number of fallback spool files, by output.
	SpoolFiles = gauge("skiff_spool_files", "Files in the Elasticsearch fallback spool, by output.", "output")
	// SpoolFull is 1 while an output's spool has reached spool_max_bytes (sending blocks), else 0.
	SpoolFull = gauge("skiff_spool_full", "1 while the Elasticsearch fallback spool is full and sending blocks, by output.", "output")
	// SpoolRecords counts records written to the fallback spool, by output.
	SpoolRecords = counter("skiff_spool_records_total", "Records written (and fsynced) to the Elasticsearch fallback spool, by output.", "output")
	// ReplayedRecords counts spooled records acknowledged by Elasticsearch on replay (indexed,
	// already present, or rejected to the dead-letter file), by output.
	ReplayedRecords = counter("skiff_spool_replayed_records_total", "Spooled records replayed to Elasticsearch and acknowledged, by output.", "output")
)

func init() {
	Registry.MustRegister(SpoolBytes, SpoolFiles, SpoolFull, SpoolRecords, ReplayedRecords)
}

// Node-wide read budget (agent/tail).
var (
	// MemoryBudgetUsedBytes is the bytes read from files but not yet acknowledged by every
	// output (chunk messages and records), counted against memory_limit.
	MemoryBudgetUsedBytes = NewGauge("skiff_memory_budget_used_bytes", "Bytes read from log files and not yet acknowledged by the outputs, counted against memory_limit.")
	// MemoryBudgetBlockedSeconds counts the time readers spent waiting for the budget
	// (backpressure: the files on disk are the buffer).
	MemoryBudgetBlockedSeconds = NewCounter("skiff_memory_budget_blocked_seconds_total", "Time file readers spent waiting for memory_limit budget (summed over readers).")
)

func init() { Registry.MustRegister(MemoryBudgetUsedBytes, MemoryBudgetBlockedSeconds) }

// Adaptive bulk concurrency (outputs/elasticsearch).
var (
	// OutputConcurrency is the number of bulk requests an output currently allows in flight:
	// its workers setting, halved on every response with 429 rejections (down to 1), and grown
	// back by one after a run of clean responses.
	OutputConcurrency = gauge("skiff_output_concurrency", "Bulk requests an output currently allows in flight (adaptive: halved on 429 rejections, recovered one at a time after clean responses), by output.", "output")
)

func init() { Registry.MustRegister(OutputConcurrency) }

// Failed writes of skiff's own files under data_dir (the positions file, the webhook and
// Elasticsearch spools, the dead-letter files) and of the file output's archives.
var (
	// DataDirWriteErrors counts failed writes (disk full, quota exceeded, I/O errors), by
	// component (positions, webhook_spool, elasticsearch_spool, elasticsearch_deadletter,
	// file_output). What could not be written was not acknowledged and is retried.
	DataDirWriteErrors = counter("skiff_data_dir_write_errors_total", "Failed writes of skiff's own files (disk full, quota, I/O errors), by component; what failed was not acknowledged and is retried.", "component")
)

func init() { Registry.MustRegister(DataDirWriteErrors) }

// WriteFailureLogEvery is how often a WriteFailures logs while failures go on.
const WriteFailureLogEvery = time.Minute

// WriteFailures is the error accounting of one writer of skiff's own files. Every failed write
// is counted in DataDirWriteErrors{component}; the log says it once per episode (a run of
// failures without a success between them): at its first failure, then at most once per
// WriteFailureLogEvery while it lasts (with the number of failures since), and once when a
// write succeeds again. A disk that stays full therefore yields a few log lines, not one per
// retry. Safe for concurrent use; OK is cheap when nothing failed.
type WriteFailures struct {
	component string
	log       *slog.Logger
	errs      *Counter
	failing   atomic.Bool

	mu     sync.Mutex
	since  time.Time // first failure of the episode
	logged time.Time // last log line of the episode
	n      int64     // failures in the episode
}

// NewWriteFailures returns the accounting of a writer of component (a DataDirWriteErrors
// label value) logging to log (slog.Default() when nil).
func NewWriteFailures(component string, log *slog.Logger) *WriteFailures {
	if log == nil {
		log = slog.Default()
	}
	return &WriteFailures{component: component, log: log, errs: DataDirWriteErrors.WithLabelValues(component)}
}

// Fail records a failed write of path. msg says what failed and what becomes of the data (e.g.
// "held and retried"); it is logged at error level with the path, the errno (Errno) and err,
// when the episode starts and then at most once per WriteFailureLogEvery.
func (w *WriteFailures) Fail(msg, path string, err error) {
	w.errs.Inc()
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if w.failing.Load() && now.Sub(w.logged) < WriteFailureLogEvery {
		return
	}
	if !w.failing.Load() {
		w.since = now
		w.failing.Store(true)
	}
	w.logged = now
	w.log.Error(msg, "component", w.component, "path", path, "errno", Errno(err), "err", err,
		"failures", w.n, "failing_for", now.Sub(w.since).Round(time.Millisecond))
}

// OK records a successful write; the first one after failures logs that writing recovered.
func (w *WriteFailures) OK(path string) {
	if !w.failing.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.failing.Load() {
		return
	}
	w.failing.Store(false)
	w.log.Info("writing works again", "component", w.component, "path", path,
		"failures", w.n, "failed_for", time.Since(w.since).Round(time.Millisecond))
	w.n = 0
}

// Failing reports whether the last write failed.
func (w *WriteFailures) Failing() bool { return w.failing.Load() }

// Errno names the system error in err's chain ("ENOSPC", "EDQUOT", …; "errno N" for one
// without a name here), or returns "" when err carries none.
func Errno(err error) string {
	var en syscall.Errno
	if !errors.As(err, &en) {
		return ""
	}
	switch en {
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.EDQUOT:
		return "EDQUOT"
	case syscall.EROFS:
		return "EROFS"
	case syscall.EIO:
		return "EIO"
	case syscall.EFBIG:
		return "EFBIG"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.ENOTDIR:
		return "ENOTDIR"
	case syscall.EISDIR:
		return "EISDIR"
	case syscall.EMFILE:
		return "EMFILE"
	case syscall.ENFILE:
		return "ENFILE"
	}
	return "errno " + strconv.Itoa(int(en))
}
