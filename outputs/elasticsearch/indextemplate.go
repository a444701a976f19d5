package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// templatePriority is above the built-in templates (logs-*-* has 100) and leaves room for a
// cluster's own templates to override ours.
const templatePriority = 200

// statusError is a request Elasticsearch answered with an error status.
type statusError struct {
	op     string
	status int
	reason string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: status %d: %s", e.op, e.status, e.reason)
}

// permanent reports whether retrying the same request cannot help: a client error other than
// authentication (credentials may be rotated), timeouts and throttling.
func (e *statusError) permanent() bool {
	switch e.status {
	case http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return e.status >= 400 && e.status < 500
}

// templateName is the name of the index template this output installs.
func (o *Output) templateName() string { return "skiff-" + strings.ToLower(o.cfg.Name) }

// templatePatterns are the index patterns of the template: the literal text before the index
// name's first placeholder followed by *, or the index itself when it has no placeholder.
func (o *Output) templatePatterns() []string {
	if o.index.Static() {
		return []string{o.cfg.Index}
	}
	return []string{o.index.Prefix() + "*"}
}

// templateBody is the index template: mappings for the fields skiff writes, keywords for every
// string under kubernetes.*, and no settings (shards and replicas are the cluster owner's call).
func (o *Output) templateBody() []byte {
	keyword := map[string]any{"type": "keyword", "ignore_above": 1024}
	obj := func(props map[string]any) map[string]any { return map[string]any{"properties": props} }
	body := map[string]any{
		"index_patterns": o.templatePatterns(),
		"priority":       templatePriority,
		"_meta":          map[string]any{"managed_by": "skiff", "output": o.cfg.Name},
		"template": map[string]any{
			"mappings": map[string]any{
				"dynamic_templates": []any{
					// Labels and annotations are keywords whatever their values look like:
					// "*" also matches strings that date detection took for dates (an
					// annotation like restartedAt), which would otherwise be mapped as date and
					// make the next non-date value of that key a mapping error.
					kubernetesMap("kubernetes_labels", "kubernetes.labels.*", keyword),
					kubernetesMap("kubernetes_namespace_labels", "kubernetes.namespace_labels.*", keyword),
					kubernetesMap("kubernetes_annotations", "kubernetes.annotations.*", keyword),
					// Audit events: annotation and user.extra keys are dedotted by the
					// parser; their values are keywords whatever they look like.
					kubernetesMap("audit_annotations", "annotations.*", keyword),
					kubernetesMap("audit_user_extra", "user.extra.*", keyword),
					map[string]any{"kubernetes_strings": map[string]any{
						"path_match":         "kubernetes.*",
						"match_mapping_type": "string",
						// ignore_above: a long annotation stays in _source instead of being
						// refused as an immense term.
						"mapping": keyword,
					}},
				},
				"properties": map[string]any{
					"@timestamp":       map[string]any{"type": "date"},
					"@timestamp_nanos": map[string]any{"type": "date_nanos"},
					// text, not match_only_text: that type needs the mapper-extras module,
					// which minimal distributions lack.
					"message":   map[string]any{"type": "text"},
					"stream":    keyword,
					"tag":       keyword,
					"container": obj(map[string]any{"id": keyword}),
					"log": obj(map[string]any{
						"file":   obj(map[string]any{"path": keyword}),
						"offset": map[string]any{"type": "long"},
					}),
					// Audit events (parsers/audit). The request and response objects are
					// arbitrary JSON: kept as text in _source, not indexed, so no event can add
					// fields to the mapping or conflict with another's types.
					"requestObject_json":       map[string]any{"type": "text", "index": false},
					"responseObject_json":      map[string]any{"type": "text", "index": false},
					"auditID":                  keyword,
					"stage":                    keyword,
					"level":                    keyword,
					"verb":                     keyword,
					"requestURI":               keyword,
					"userAgent":                keyword,
					"sourceIPs":                keyword,
					"stageTimestamp":           map[string]any{"type": "date_nanos"},
					"requestReceivedTimestamp": map[string]any{"type": "date_nanos"},
					"user":                     obj(map[string]any{"username": keyword, "uid": keyword, "groups": keyword}),
					"impersonatedUser":         obj(map[string]any{"username": keyword, "uid": keyword, "groups": keyword}),
					"objectRef": obj(map[string]any{
						"resource": keyword, "namespace": keyword, "name": keyword, "apiGroup": keyword,
						"apiVersion": keyword, "subresource": keyword, "uid": keyword, "resourceVersion": keyword,
					}),
					"responseStatus": obj(map[string]any{
						"code": map[string]any{"type": "integer"}, "status": keyword, "reason": keyword,
						"message": map[string]any{"type": "text"},
					}),
				},
			},
		},
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // static shape: cannot fail
	}
	return b
}

// kubernetesMap is a dynamic template mapping every value under path as mapping.
func kubernetesMap(name, path string, mapping map[string]any) map[string]any {
	return map[string]any{name: map[string]any{"path_match": path, "match_mapping_type": "*", "mapping": mapping}}
}

// templateMaxBackoff caps the delay between index template attempts.
const templateMaxBackoff = 5 * time.Second

// installTemplate puts the index template, retrying with backoff while Elasticsearch is
// unreachable or failing, until it succeeds, fails for good (logged; indexing goes on without
// it), or the output is aborted. Either of the first two opens the gate for bulk requests.
//
// Its retries are capped at templateMaxBackoff, lower than the bulk backoff: bulk requests wait
// for the template, so after an outage this request decides how soon shipping resumes.
func (o *Output) installTemplate() {
	log := o.cfg.Logger
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !o.sleep(min(o.backoff(attempt), templateMaxBackoff)) {
			return
		}
		err := o.putTemplate()
		if err == nil {
			log.Info("index template installed", "output", o.cfg.Name, "template", o.templateName(),
				"index_patterns", o.templatePatterns())
			o.openGate()
			return
		}
		if o.aborted() {
			return
		}
		var se *statusError
		if errors.As(err, &se) && se.permanent() {
			log.Error("index template not installed; indexing without it", "output", o.cfg.Name, "error", err)
			o.openGate()
			return
		}
		o.m.reqErr.Inc()
		// Bulk requests wait for the template: while it cannot be installed, Elasticsearch
		// counts as failing, so that held batches go to the spool after FallbackAfter.
		o.requestFailed()
		log.Warn("index template not installed yet; retrying", "output", o.cfg.Name, "attempt", attempt+1, "error", err)
	}
}

func (o *Output) putTemplate() error {
	name := o.templateName()
	op := "put index template " + name
	ctx, cancel := context.WithTimeout(o.abortCtx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "/_index_template/"+name, bytes.NewReader(o.templateBody()))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := o.client.Perform(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 == 2 {
		return nil
	}
	return &statusError{op: op, status: res.StatusCode, reason: string(truncate(bytes.TrimSpace(data), 1024))}
}
