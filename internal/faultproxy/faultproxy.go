// Package faultproxy is an HTTP reverse proxy for tests that puts faults between skiff and a real
// Elasticsearch: its upstream and its mode can be switched while it serves. In Pass mode it
// forwards everything; in Down mode it closes every connection without an answer (as a stopped
// Elasticsearch would look to a client); in Storm mode it answers a fraction of _bulk requests
// with a whole 429 and, for the others, forwards only some of the items and answers the rest
// with a per-item 429 es_rejected_execution_exception, merging the item responses in request
// order, so Elasticsearch really indexes exactly what the proxy says it accepted.
//
// A Proxy is an http.Handler: the caller runs the server (httptest.Server or http.Server).
package faultproxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Mode is what the proxy does with requests.
type Mode int32

const (
	// Pass forwards every request to the upstream. When the upstream cannot be reached the
	// client's connection is closed without an answer, as if it had dialled the upstream itself.
	Pass Mode = iota
	// Down closes every client connection without an answer.
	Down
	// Storm rejects _bulk requests and items with 429 per the Storm settings; other requests
	// are forwarded.
	Storm
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Down:
		return "down"
	case Storm:
		return "storm"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// StormConfig sets how hard Storm mode rejects.
type StormConfig struct {
	// RequestFraction of _bulk requests are answered 429 as a whole, without forwarding.
	RequestFraction float64
	// ItemFraction of the items of the other _bulk requests are answered with a per-item 429
	// and not forwarded.
	ItemFraction float64
}

// Stats counts what the proxy did since it was created.
type Stats struct {
	// Requests is every request received; Closed those whose connection was closed unanswered
	// (Down mode, or upstream unreachable).
	Requests, Closed int64
	// BulkRejected is the _bulk requests answered 429 as a whole.
	BulkRejected int64
	// ItemsRejected is the items answered with a synthesized per-item 429; ItemsForwarded the
	// items of Storm-mode _bulk requests sent on to the upstream.
	ItemsRejected, ItemsForwarded int64
}

// Proxy is the fault-injecting reverse proxy. Its methods are safe for concurrent use.
type Proxy struct {
	upstream atomic.Pointer[url.URL]
	mode     atomic.Int32
	rp       *httputil.ReverseProxy
	client   *http.Client

	mu    sync.Mutex
	storm StormConfig
	rng   *rand.Rand

	requests, closed, bulkRejected, itemsRejected, itemsForwarded atomic.Int64
}

// New returns a proxy in Pass mode forwarding to upstream (e.g. "http://127.0.0.1:9200"). seed
// makes Storm mode's choices repeatable.
func New(upstream string, seed uint64) (*Proxy, error) {
	p := &Proxy{rng: rand.New(rand.NewPCG(seed, seed^0xfa17))}
	if err := p.SetUpstream(upstream); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p.client = &http.Client{Transport: tr}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.upstream.Load())
			r.Out.Host = r.Out.URL.Host
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.hangUp(w)
		},
	}
	return p, nil
}

// SetUpstream switches the upstream for the requests that arrive from now on.
func (p *Proxy) SetUpstream(upstream string) error {
	u, err := url.Parse(strings.TrimRight(upstream, "/"))
	if err != nil {
		return fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("faultproxy: upstream %q: want scheme://host:port", upstream)
	}
	p.upstream.Store(u)
	return nil
}

// Upstream returns the current upstream URL.
func (p *Proxy) Upstream() string { return p.upstream.Load().String() }

// SetMode switches the mode for the requests that arrive from now on.
func (p *Proxy) SetMode(m Mode) { p.mode.Store(int32(m)) }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode { return Mode(p.mode.Load()) }

// SetStorm sets Storm mode's rejection fractions (each in [0, 1]).
func (p *Proxy) SetStorm(c StormConfig) {
	p.mu.Lock()
	p.storm = c
	p.mu.Unlock()
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Requests:       p.requests.Load(),
		Closed:         p.closed.Load(),
		BulkRejected:   p.bulkRejected.Load(),
		ItemsRejected:  p.itemsRejected.Load(),
		ItemsForwarded: p.itemsForwarded.Load(),
	}
}

// ServeHTTP handles one request according to the current mode.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	switch p.Mode() {
	case Down:
		p.hangUp(w)
		return
	case Storm:
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/_bulk") {
			p.storm429(w, r)
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// hangUp closes the client's connection without writing an answer.
func (p *Proxy) hangUp(w http.ResponseWriter) {
	p.closed.Add(1)
	hj, ok := w.(http.Hijacker)
	if !ok {
		// HTTP/2 cannot hijack; abort the response instead, which resets the stream.
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// bulkItem is one item of a _bulk body: its action name and its lines (action line and, except
// for delete, the source line), each with its newline.
type bulkItem struct {
	action string
	lines  []byte
}

// splitBulk cuts an NDJSON _bulk body into items.
func splitBulk(body []byte) ([]bulkItem, error) {
	var items []bulkItem
	for len(body) > 0 {
		line, rest := cutLine(body)
		if len(bytes.TrimSpace(line)) == 0 {
			body = rest
			continue
		}
		var action map[string]json.RawMessage
		if err := json.Unmarshal(line, &action); err != nil || len(action) != 1 {
			return nil, fmt.Errorf("faultproxy: bulk action line %q: not an object with one key", truncate(line))
		}
		var name string
		for k := range action {
			name = k
		}
		n := len(line)
		if name != "delete" {
			src, rest2 := cutLine(rest)
			if len(src) == 0 {
				return nil, fmt.Errorf("faultproxy: bulk %s action without a source line", name)
			}
			n += len(src)
			rest = rest2
		}
		items = append(items, bulkItem{action: name, lines: body[:n]})
		body = rest
	}
	return items, nil
}

// cutLine returns b's first line with its newline, and the rest.
func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1], b[i+1:]
	}
	return b, nil
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

const rejectedReason = "rejected execution of coordinating operation [faultproxy storm]"

// storm429 answers a _bulk request in Storm mode.
func (p *Proxy) storm429(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	items, err := splitBulk(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	cfg := p.storm
	whole := p.rng.Float64() < cfg.RequestFraction
	reject := make([]bool, len(items))
	if !whole {
		for i := range items {
			reject[i] = p.rng.Float64() < cfg.ItemFraction
		}
	}
	p.mu.Unlock()
	if whole {
		p.bulkRejected.Add(1)
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"error": map[string]any{
				"type":   "es_rejected_execution_exception",
				"reason": rejectedReason,
			},
			"status": http.StatusTooManyRequests,
		})
		return
	}
	var fwd []byte
	nfwd := 0
	for i, it := range items {
		if !reject[i] {
			fwd = append(fwd, it.lines...)
			nfwd++
		}
	}
	p.itemsRejected.Add(int64(len(items) - nfwd))
	p.itemsForwarded.Add(int64(nfwd))
	var upItems []json.RawMessage
	upErrors := false
	if nfwd > 0 {
		status, resp, err := p.forward(r, fwd)
		if err != nil {
			p.hangUp(w)
			return
		}
		var parsed struct {
			Errors bool              `json:"errors"`
			Items  []json.RawMessage `json:"items"`
		}
		if status != http.StatusOK || json.Unmarshal(resp, &parsed) != nil || len(parsed.Items) != nfwd {
			// The upstream refused the forwarded part as a whole (or answered oddly): its
			// answer stands for the whole request, which the client will retry.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(resp)
			return
		}
		upItems, upErrors = parsed.Items, parsed.Errors
	}
	out := make([]json.RawMessage, len(items))
	k := 0
	for i, it := range items {
		if !reject[i] {
			out[i] = upItems[k]
			k++
			continue
		}
		b, _ := json.Marshal(map[string]any{it.action: map[string]any{
			"status": http.StatusTooManyRequests,
			"error": map[string]any{
				"type":   "es_rejected_execution_exception",
				"reason": rejectedReason,
			},
		}})
		out[i] = b
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"errors": upErrors || nfwd < len(items),
		"items":  out,
	})
}

// readBody reads r's body, gunzipping it when it is gzip-encoded.
func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(bufio.NewReader(r.Body))
		if err != nil {
			return nil, fmt.Errorf("faultproxy: gzip body: %w", err)
		}
		rd = zr
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: read body: %w", err)
	}
	return b, nil
}

// forward sends body (plain NDJSON) as r's method, path and query to the upstream and returns
// the status and the decoded answer.
func (p *Proxy) forward(r *http.Request, body []byte) (int, []byte, error) {
	u := *p.upstream.Load()
	u.Path = r.URL.Path
	u.RawQuery = r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("faultproxy: forward: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	res, err := p.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("faultproxy: forward: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("faultproxy: forward: read answer: %w", err)
	}
	return res.StatusCode, b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(errors.New("faultproxy: marshal answer: " + err.Error()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
