// Package audit parses Kubernetes audit logs: the kube-apiserver's log backend
// (--audit-log-path, --audit-log-format=json) writes one audit.k8s.io/v1 Event JSON object a
// line, and the webhook backend POSTs the same events in an EventList.
//
// A record made from an event has:
//
//   - Time: stageTimestamp, else requestReceivedTimestamp, else zero (the reader's read time);
//   - ID: "<auditID>-<stage>", so that the same event read from the file and received by the
//     webhook becomes one document (Elasticsearch answers 409 to the second create);
//   - Message: a one-line summary, "<verb> <resource>[.<group>][/<name>][/<subresource>]
//     [in <namespace>] by <user> [as <impersonated user>] → <code>", e.g. "create
//     deployments.apps/web in shop by alice → 201" (the request URI for non-resource requests,
//     "(<stage>)" instead of the code while there is no response status yet);
//   - Fields: the event's members kept structured where their shape is fixed (see Fields below),
//     and requestObject / responseObject, which hold any Kubernetes object, as JSON text.
//
// Fields holds, when present in the event: auditID, stage, level, verb, requestURI, userAgent,
// requestReceivedTimestamp and stageTimestamp (strings as written), sourceIPs ([]string),
// user and impersonatedUser (map: username, uid, groups []string, extra map of []string),
// objectRef (map: resource, namespace, name, uid, apiGroup, apiVersion, resourceVersion,
// subresource), responseStatus (map: code int, status, reason, message; details and metadata are
// left out), annotations (map[string]string), and requestObject_json / responseObject_json
// (strings: the objects' JSON exactly as the apiserver wrote it). kind and apiVersion are
// dropped (always Event and audit.k8s.io/v1).
//
// Keys of annotations and user extra ("authorization.k8s.io/decision",
// "authentication.kubernetes.io/pod-name") have their dots replaced by '_', as skiff does for
// Kubernetes labels, so that Elasticsearch maps them as one flat level of keywords instead of
// objects nested by dot (where "a.b" and "a" would conflict). The objects are JSON text so that
// arbitrary Kubernetes objects (ConfigMap data keys, CRD schemas) can never add fields to the
// index mapping; they are meant to be mapped "type": "text", "index": false (kept in _source,
// not searchable, no mapping growth).
package audit

import (
	"slices"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/parsers/internal/join"
	"github.com/skiff-logs/skiff/parsers/internal/timefmt"
)

// DefaultMaxEventBytes is the event size cap used when New is given maxEventBytes <= 0. It is
// the apiserver's own default for --audit-log-truncate-max-event-size (100 KiB) times ten: large
// enough that ordinary RequestResponse events keep their objects.
const DefaultMaxEventBytes = 1 << 20

// Field names of the record's Fields that are not the event's own.
const (
	// RequestObjectField and ResponseObjectField hold requestObject and responseObject as
	// JSON text.
	RequestObjectField  = "requestObject_json"
	ResponseObjectField = "responseObject_json"
	// TruncatedField lists the members removed from an event larger than the size cap. Its
	// dotted name puts it next to the skiff.* flags of the document.
	TruncatedField = "skiff.truncated_fields"
)

// maxSummaryURI caps the request URI quoted in a non-resource request's message.
const maxSummaryURI = 512

// keepScratch is the largest line buffer kept between events.
const keepScratch = 1 << 20

// Parser parses the lines of one audit log file (or the items of webhook requests, one at a
// time). It implements the agent's tail.Parser contract; every line is a complete record, so
// it never holds fragments. It is not safe for concurrent use.
type Parser struct {
	max  int
	rest []byte // the line with its objects replaced by null, for the decoder
	msg  []byte
	// Truncated, when set, is incremented once per event cut down to the size cap (New sets
	// metrics.AuditTruncatedEvents).
	Truncated *metrics.Counter
}

// New returns a Parser whose events are cut down to maxEventBytes (DefaultMaxEventBytes when
// maxEventBytes <= 0) by removing their largest members; see Parse.
func New(maxEventBytes int) *Parser {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultMaxEventBytes
	}
	return &Parser{max: maxEventBytes, Truncated: metrics.AuditTruncatedEvents}
}

// Parse turns one line, an audit Event without its newline that starts at offset, into a
// complete record (see the package comment) and returns true: it always does.
//
// An event larger than the size cap (the JSON size of the members kept) loses members until it fits, like the
// apiserver's own truncation: responseObject first, then requestObject, then, largest first,
// annotations, user.extra, user.groups, impersonatedUser, requestURI, userAgent, sourceIPs and
// responseStatus.message. The names of the removed members are listed in Fields under
// TruncatedField and the record is flagged event.FlagTruncated. The members that identify the
// event (auditID, stage, level, verb, timestamps, user name and uid, objectRef) are never
// removed, so an event whose identity alone exceeds the cap stays larger than the cap.
//
// A line that is not a JSON object, has anything but white space after it, has a member of the
// wrong type, or lacks auditID or stage (or has a kind other than Event) is a record of its
// own: the raw line cut to the size cap as Message (flagged event.FlagTruncated when cut),
// event.FlagParseError, zero Time, no ID and no Fields.
//
// r.Message aliases the Parser's buffer or line, valid until the next call; Fields and ID are
// the record's own.
func (p *Parser) Parse(line []byte, offset int64, r *event.Record) bool {
	var w wireEvent
	rest, ok := p.cutObjects(line, &w)
	if !ok || decoder.Unmarshal(rest, &w) != nil || w.AuditID == "" || w.Stage == "" || w.Kind != "" && w.Kind != "Event" {
		p.malformed(line, offset, r)
		return true
	}
	if cap(p.rest) > keepScratch {
		p.rest = nil
	}
	r.Time = w.time()
	r.Stream = ""
	r.Offset = offset
	r.Flags = 0
	r.ID = w.AuditID + "-" + w.Stage
	p.msg = w.summary(p.msg[:0])
	r.Message = p.msg
	r.Fields = w.fields()
	// The line's length bounds the size of what is kept; only when it is over the cap is the
	// kept part measured (members skiff drops, such as kind, do not count).
	if len(line) > p.max {
		if cut := truncate(r.Fields, jsonSize(r.Fields), p.max); len(cut) > 0 {
			r.Fields[TruncatedField] = cut
			r.Flags |= event.FlagTruncated
			if p.Truncated != nil {
				p.Truncated.Inc()
			}
		}
	}
	return true
}

func (p *Parser) malformed(line []byte, offset int64, r *event.Record) {
	msg, cut := join.Cap(line, p.max)
	r.Time, r.Stream, r.Message, r.Offset, r.ID, r.Fields = time.Time{}, "", msg, offset, "", nil
	r.Flags = event.FlagParseError
	if cut {
		r.Flags |= event.FlagTruncated
	}
}

// PendingFrom reports nothing held: every audit line is a complete record.
func (p *Parser) PendingFrom() (offset int64, ok bool) { return 0, false }

// Flush returns false: the Parser never holds anything.
func (p *Parser) Flush(r *event.Record) bool { return false }

// decoder is case-sensitive, unlike encoding/json: the apiserver writes exact member names, and a
// "Verb" member in some other JSON must not pass for "verb".
var decoder = jsoniter.Config{CaseSensitive: true}.Froze()

// wireEvent is the audit.k8s.io/v1 Event as written.
type wireEvent struct {
	Kind                     string            `json:"kind"`
	Level                    string            `json:"level"`
	AuditID                  string            `json:"auditID"`
	Stage                    string            `json:"stage"`
	RequestURI               string            `json:"requestURI"`
	Verb                     string            `json:"verb"`
	User                     *userInfo         `json:"user"`
	ImpersonatedUser         *userInfo         `json:"impersonatedUser"`
	SourceIPs                []string          `json:"sourceIPs"`
	UserAgent                string            `json:"userAgent"`
	ObjectRef                *objectRef        `json:"objectRef"`
	ResponseStatus           *status           `json:"responseStatus"`
	RequestReceivedTimestamp string            `json:"requestReceivedTimestamp"`
	StageTimestamp           string            `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations"`

	// requestObject and responseObject as written (cutObjects), "" when absent or null.
	requestObject, responseObject string
}

type userInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

type objectRef struct {
	Resource        string `json:"resource"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid"`
	APIGroup        string `json:"apiGroup"`
	APIVersion      string `json:"apiVersion"`
	ResourceVersion string `json:"resourceVersion"`
	Subresource     string `json:"subresource"`
}

type status struct {
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (w *wireEvent) time() time.Time {
	if t, ok := timefmt.Parse([]byte(w.StageTimestamp)); ok {
		return t
	}
	if t, ok := timefmt.Parse([]byte(w.RequestReceivedTimestamp)); ok {
		return t
	}
	return time.Time{}
}

// summary appends the record's message.
func (w *wireEvent) summary(b []byte) []byte {
	verb := w.Verb
	if verb == "" {
		verb = "?"
	}
	b = append(b, verb...)
	b = append(b, ' ')
	if o := w.ObjectRef; o != nil && o.Resource != "" {
		b = append(b, o.Resource...)
		if o.APIGroup != "" {
			b = append(b, '.')
			b = append(b, o.APIGroup...)
		}
		if o.Name != "" {
			b = append(b, '/')
			b = append(b, o.Name...)
		}
		if o.Subresource != "" {
			b = append(b, '/')
			b = append(b, o.Subresource...)
		}
		if o.Namespace != "" {
			b = append(b, " in "...)
			b = append(b, o.Namespace...)
		}
	} else {
		uri := w.RequestURI
		if uri == "" {
			uri = "?"
		}
		if len(uri) > maxSummaryURI {
			uri = uri[:maxSummaryURI] + "…"
		}
		b = append(b, uri...)
	}
	b = append(b, " by "...)
	if w.User != nil && w.User.Username != "" {
		b = append(b, w.User.Username...)
	} else {
		b = append(b, '?')
	}
	if w.ImpersonatedUser != nil && w.ImpersonatedUser.Username != "" {
		b = append(b, " as "...)
		b = append(b, w.ImpersonatedUser.Username...)
	}
	if w.ResponseStatus != nil && w.ResponseStatus.Code != 0 {
		b = append(b, " → "...)
		return strconv.AppendInt(b, int64(w.ResponseStatus.Code), 10)
	}
	b = append(b, " ("...)
	b = append(b, w.Stage...)
	return append(b, ')')
}

// fields builds the record's Fields.
func (w *wireEvent) fields() map[string]any {
	f := make(map[string]any, 16)
	str := func(m map[string]any, k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	str(f, "auditID", w.AuditID)
	str(f, "stage", w.Stage)
	str(f, "level", w.Level)
	str(f, "verb", w.Verb)
	str(f, "requestURI", w.RequestURI)
	str(f, "userAgent", w.UserAgent)
	str(f, "requestReceivedTimestamp", w.RequestReceivedTimestamp)
	str(f, "stageTimestamp", w.StageTimestamp)
	if len(w.SourceIPs) > 0 {
		f["sourceIPs"] = w.SourceIPs
	}
	if u := w.User.fields(); u != nil {
		f["user"] = u
	}
	if u := w.ImpersonatedUser.fields(); u != nil {
		f["impersonatedUser"] = u
	}
	if o := w.ObjectRef; o != nil {
		m := make(map[string]any, 4)
		str(m, "resource", o.Resource)
		str(m, "namespace", o.Namespace)
		str(m, "name", o.Name)
		str(m, "uid", o.UID)
		str(m, "apiGroup", o.APIGroup)
		str(m, "apiVersion", o.APIVersion)
		str(m, "resourceVersion", o.ResourceVersion)
		str(m, "subresource", o.Subresource)
		if len(m) > 0 {
			f["objectRef"] = m
		}
	}
	if s := w.ResponseStatus; s != nil {
		m := make(map[string]any, 2)
		if s.Code != 0 {
			m["code"] = s.Code
		}
		str(m, "status", s.Status)
		str(m, "reason", s.Reason)
		str(m, "message", s.Message)
		if len(m) > 0 {
			f["responseStatus"] = m
		}
	}
	if len(w.Annotations) > 0 {
		f["annotations"] = dedotKeys(w.Annotations)
	}
	str(f, RequestObjectField, w.requestObject)
	str(f, ResponseObjectField, w.responseObject)
	return f
}

func (u *userInfo) fields() map[string]any {
	if u == nil {
		return nil
	}
	m := make(map[string]any, 4)
	if u.Username != "" {
		m["username"] = u.Username
	}
	if u.UID != "" {
		m["uid"] = u.UID
	}
	if len(u.Groups) > 0 {
		m["groups"] = u.Groups
	}
	if len(u.Extra) > 0 {
		extra := make(map[string]any, len(u.Extra))
		for k, v := range u.Extra {
			extra[dedot(k)] = v
		}
		m["extra"] = extra
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// dedotKeys replaces '.' by '_' in the keys of m, in place when no key has a dot.
func dedotKeys(m map[string]string) map[string]string {
	dotted := false
	for k := range m {
		if strings.IndexByte(k, '.') >= 0 {
			dotted = true
			break
		}
	}
	if !dotted {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[dedot(k)] = v
	}
	return out
}

func dedot(k string) string { return strings.ReplaceAll(k, ".", "_") }

// truncatable lists the members truncate may remove, as paths into Fields, in the order of
// preference: the two objects first, whatever their size, then the rest largest first.
var truncatable = []struct {
	name string
	path []string
}{
	{"responseObject", []string{ResponseObjectField}},
	{"requestObject", []string{RequestObjectField}},
	{"annotations", []string{"annotations"}},
	{"user.extra", []string{"user", "extra"}},
	{"user.groups", []string{"user", "groups"}},
	{"impersonatedUser", []string{"impersonatedUser"}},
	{"requestURI", []string{"requestURI"}},
	{"userAgent", []string{"userAgent"}},
	{"sourceIPs", []string{"sourceIPs"}},
	{"responseStatus.message", []string{"responseStatus", "message"}},
}

// fixedFirst is how many members of truncatable are removed first, in their order.
const fixedFirst = 2

// truncate removes members from f until the event's estimated size, starting from size, is at
// most max, and returns the names of the removed members.
func truncate(f map[string]any, size, max int) []string {
	type candidate struct {
		i, size int
	}
	var cands []candidate
	for i, t := range truncatable {
		if v, ok := getPath(f, t.path); ok {
			cands = append(cands, candidate{i, len(t.path[len(t.path)-1]) + 4 + jsonSize(v)})
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		switch {
		case a.i < fixedFirst || b.i < fixedFirst:
			return a.i - b.i
		default:
			return b.size - a.size
		}
	})
	var cut []string
	for _, c := range cands {
		if size <= max {
			break
		}
		deletePath(f, truncatable[c.i].path)
		cut = append(cut, truncatable[c.i].name)
		size -= c.size
	}
	return cut
}

// parent returns the map holding the last element of path, if every map on the way exists.
func parent(f map[string]any, path []string) (map[string]any, bool) {
	for _, k := range path[:len(path)-1] {
		m, ok := f[k].(map[string]any)
		if !ok {
			return nil, false
		}
		f = m
	}
	return f, true
}

func getPath(f map[string]any, path []string) (any, bool) {
	m, ok := parent(f, path)
	if !ok {
		return nil, false
	}
	v, ok := m[path[len(path)-1]]
	return v, ok
}

func deletePath(f map[string]any, path []string) {
	if m, ok := parent(f, path); ok {
		delete(m, path[len(path)-1])
	}
}

// jsonSize estimates the JSON size of a Fields value (escapes not counted).
func jsonSize(v any) int {
	switch v := v.(type) {
	case string:
		return len(v) + 2
	case int:
		return 6
	case []string:
		n := 2
		for _, s := range v {
			n += len(s) + 3
		}
		return n
	case map[string]string:
		n := 2
		for k, s := range v {
			n += len(k) + len(s) + 6
		}
		return n
	case map[string]any:
		n := 2
		for k, e := range v {
			n += len(k) + 4 + jsonSize(e)
		}
		return n
	}
	return 4
}
