package webhook

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
)

// inputMetrics are the input's metric children, resolved once.
type inputMetrics struct {
	events  *metrics.Counter
	latency *metrics.Histogram
	codes   map[int]*metrics.Counter
	other   *metrics.CounterVec
	name    string
}

// answered lists the status codes the handler gives, so that their counters exist from the start.
var answered = []int{
	http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
	http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge,
	http.StatusUnsupportedMediaType, http.StatusInternalServerError, http.StatusServiceUnavailable,
}

func newInputMetrics(name string) inputMetrics {
	m := inputMetrics{
		events:  metrics.WebhookEvents.WithLabelValues(name),
		latency: metrics.WebhookRequestSeconds.WithLabelValues(name),
		codes:   make(map[int]*metrics.Counter, len(answered)),
		other:   metrics.WebhookRequests,
		name:    name,
	}
	for _, c := range answered {
		m.codes[c] = metrics.WebhookRequests.WithLabelValues(name, strconv.Itoa(c))
	}
	return m
}

func (m *inputMetrics) count(code int) {
	if c, ok := m.codes[code]; ok {
		c.Inc()
		return
	}
	m.other.WithLabelValues(m.name, strconv.Itoa(code)).Inc()
}

// buffers are the per-request scratch buffers, pooled.
type buffers struct {
	body, compact, lines []byte
}

// maxPooled keeps buffers grown by an unusually large request out of the pool.
const maxPooled = 4 << 20

func (in *Input) getBuffers() *buffers {
	if b, ok := in.bufs.Get().(*buffers); ok {
		return b
	}
	return &buffers{}
}

func (in *Input) putBuffers(b *buffers) {
	if cap(b.body) > maxPooled || cap(b.compact) > maxPooled || cap(b.lines) > maxPooled {
		return
	}
	in.bufs.Put(b)
}

// serve is the HTTP handler. The order of the checks decides what an unauthenticated client
// learns: only whether the path exists.
func (in *Input) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, msg := in.check(r)
	if code == http.StatusOK {
		code, msg = in.accept(w, r)
	}
	in.m.count(code)
	if code == http.StatusOK {
		in.m.latency.Observe(time.Since(start).Seconds())
		w.WriteHeader(http.StatusOK)
		return
	}
	switch code {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="skiff audit webhook"`)
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "10")
	}
	switch {
	case code >= 500:
		// Logged where it happened (the spool), with its cause.
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound:
		in.log.Debug("audit webhook request refused", "code", code, "reason", msg, "remote", r.RemoteAddr)
	default:
		in.log.Warn("audit webhook request refused", "code", code, "reason", msg, "remote", r.RemoteAddr)
	}
	http.Error(w, "skiff audit webhook: "+msg, code)
}

// check answers the request's path, authentication, method and headers: 200 when the body may
// be read.
func (in *Input) check(r *http.Request) (int, string) {
	if r.URL.Path != in.cfg.URLPath {
		return http.StatusNotFound, "no such path: the audit webhook is served at " + in.cfg.URLPath
	}
	if in.cfg.ClientCAFile != "" && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		return http.StatusUnauthorized, "a client certificate is required"
	}
	if in.hasTok {
		auth := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return http.StatusUnauthorized, "a bearer token is required"
		}
		// Hashes have one length, so the comparison takes the same time whatever the token.
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(got[:], in.token[:]) != 1 {
			return http.StatusForbidden, "the bearer token is not the configured one"
		}
	}
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "only POST is served"
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return http.StatusUnsupportedMediaType, "Content-Type must be application/json, not " + strconv.Quote(ct)
		}
	} else {
		return http.StatusUnsupportedMediaType, "Content-Type must be application/json"
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return http.StatusUnsupportedMediaType, "Content-Encoding " + strconv.Quote(ce) + " is not supported"
	}
	if r.ContentLength > in.cfg.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, "body is larger than max_body_bytes (" + strconv.FormatInt(in.cfg.MaxBodyBytes, 10) + ")"
	}
	return http.StatusOK, ""
}

// accept reads the body, splits it into lines and appends them to the spool.
func (in *Input) accept(w http.ResponseWriter, r *http.Request) (int, string) {
	bufs := in.getBuffers()
	defer in.putBuffers(bufs)
	body, err := readBody(http.MaxBytesReader(w, r.Body, in.cfg.MaxBodyBytes), bufs.body[:0], r.ContentLength)
	bufs.body = body
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, "body is larger than max_body_bytes (" + strconv.FormatInt(in.cfg.MaxBodyBytes, 10) + ")"
		}
		return http.StatusBadRequest, "cannot read body: " + err.Error()
	}
	return in.write(bufs, body)
}

// write splits body, an EventList, and appends its events to the spool; 200 means they are
// durable.
func (in *Input) write(bufs *buffers, body []byte) (int, string) {
	lines, compact, n, err := splitEventList(bufs.lines[:0], bufs.compact, body)
	bufs.lines, bufs.compact = lines, compact
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if n == 0 {
		return http.StatusOK, ""
	}
	if err := in.spool.append(lines); err != nil {
		if errors.Is(err, errSpoolFull) {
			return http.StatusServiceUnavailable, "the spool is full (max_spool_bytes): the outputs are behind; retry later"
		}
		return http.StatusInternalServerError, "cannot write the events durably; retry"
	}
	in.m.events.Add(float64(n))
	return http.StatusOK, ""
}

// readBody reads r to its end into buf: exactly Content-Length bytes when it is known (net/http
// fails the read when the body is shorter), else until EOF.
func readBody(r io.Reader, buf []byte, length int64) ([]byte, error) {
	if length >= 0 {
		if int64(cap(buf)) < length {
			buf = make([]byte, length)
		}
		buf = buf[:length]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	b := bytes.NewBuffer(buf)
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}
