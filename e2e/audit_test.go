package e2e

// The two audit collectors of the Kubernetes auditing documentation
// (../shared/seed/kubernetes-logging-docs-es.txt, "Ejemplos de recolectores de Logs") as one skiff
// config, against a real kube-apiserver started with the documentation's example policy
// (testdata/audit-policy.yaml), both its log backend (rotating at 1 MB) and its webhook backend:
//
//   - fluentd: in_tail of the JSON audit log + record_transformer/rewrite_tag_filter to
//     audit.<objectRef.namespace> (audit.none without one) + forest/file with compress gz and
//     time_slice_format %Y%m%d%H (remove_prefix audit): an `audit` input, a rewrite_tag rule and a
//     file output with path audit-{tag_parts[1]}.%Y%m%d%H.log.gz;
//   - logstash: http input for the webhook backend + split of the EventList + a file per user
//     (/var/log/kube-audit-%{[event][user][username]}/audit): an `audit_webhook` input (HTTPS,
//     client certificate and token) and a file output with path kube-audit-{user.username}/….
//
// Both also feed one Elasticsearch output indexing per namespace and day; an event's document
// _id is auditID-stage, so the copies of the two inputs become one document.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-logs/skiff/internal/kubetest"
	"github.com/skiff-logs/skiff/internal/testpki"
)

// auditEvent is the part of an audit event the test checks, read from the apiserver's log or
// from a skiff document (which has the objects as JSON text, a tag and @timestamp).
type auditEvent struct {
	AuditID        string `json:"auditID"`
	Stage          string `json:"stage"`
	Level          string `json:"level"`
	Verb           string `json:"verb"`
	StageTimestamp string `json:"stageTimestamp"`
	User           struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	RequestObject      json.RawMessage `json:"requestObject"`
	ResponseObject     json.RawMessage `json:"responseObject"`
	RequestObjectJSON  *string         `json:"requestObject_json"`
	ResponseObjectJSON *string         `json:"responseObject_json"`
	Tag                string          `json:"tag"`
	Timestamp          string          `json:"@timestamp"`

	where string
}

func (ev *auditEvent) key() string { return ev.AuditID + "-" + ev.Stage }

// namespace is where the fluentd job files the event: objectRef.namespace, or "none".
func (ev *auditEvent) namespace() string {
	if ev.ObjectRef == nil || ev.ObjectRef.Namespace == "" {
		return "none"
	}
	return ev.ObjectRef.Namespace
}

func (ev *auditEvent) resource() string {
	if ev.ObjectRef == nil {
		return ""
	}
	if ev.ObjectRef.Subresource != "" {
		return ev.ObjectRef.Resource + "/" + ev.ObjectRef.Subresource
	}
	return ev.ObjectRef.Resource
}

// objects names the request/response object members the event carries, in either form.
func (ev *auditEvent) objects() []string {
	var has []string
	for name, raw := range map[string]json.RawMessage{"requestObject": ev.RequestObject, "responseObject": ev.ResponseObject} {
		if len(raw) > 0 && string(raw) != "null" {
			has = append(has, name)
		}
	}
	for name, s := range map[string]*string{"requestObject_json": ev.RequestObjectJSON, "responseObject_json": ev.ResponseObjectJSON} {
		if s != nil {
			has = append(has, name)
		}
	}
	slices.Sort(has)
	return has
}

func parseAuditEvent(line []byte, where string) (*auditEvent, error) {
	ev := &auditEvent{where: where}
	if err := json.Unmarshal(line, ev); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", where, err, truncate(string(line), 300))
	}
	if ev.AuditID == "" || ev.Stage == "" {
		return nil, fmt.Errorf("%s: no auditID or stage: %s", where, truncate(string(line), 300))
	}
	return ev, nil
}

// auditActivity remembers what the test's users wrote that the outputs must, or must not, hold.
type auditActivity struct {
	mu sync.Mutex
	// secrets are the values of every secret written: no output may hold them, plain or base64.
	secrets []string
	// markers are values written where the policy logs the objects (kube-system configmaps at
	// Request level, pods at RequestResponse): the outputs must hold them, which proves the
	// search for the secrets would find a value that was there.
	markers []string
}

// value returns a fresh value "<prefix>-<16 hex digits>", remembered as a secret or a marker.
func (a *auditActivity) value(prefix string, secret bool) string {
	v := fmt.Sprintf("%s-%016x", prefix, rand.Uint64())
	a.mu.Lock()
	defer a.mu.Unlock()
	if secret {
		a.secrets = append(a.secrets, v)
	} else {
		a.markers = append(a.markers, v)
	}
	return v
}

// Activity sizes: a few thousand requests, enough for the audit log to rotate at 1 MB a few times
// but fewer than --audit-log-maxbackup files, so that no event is deleted before it is compared.
const (
	auditRounds    = 60 // per namespaced worker
	auditOpsRounds = 40
)

var (
	auditNamespaces = []string{"shop", "payments", "analytics"}
	auditUsers      = []kubetest.User{
		{Name: "alice", Groups: []string{"dev"}},
		{Name: "bob", Groups: []string{"dev"}},
		{Name: "carol", Groups: []string{"ops"}},
	}
)

// TestAuditPipelines runs skiff with the documentation's two collectors and an Elasticsearch
// output, then the apiserver with its audit log (rotating at 1 MB) and webhook pointing at skiff,
// has three users work in three namespaces and cluster-wide, stops the apiserver, and compares
// what skiff wrote with the apiserver's own log files: each namespace's hourly gzip files hold
// exactly its events (cluster-scoped ones in "none"), each user's files exactly the events the
// webhook received, Elasticsearch each event once in its namespace's index although both inputs
// delivered it; the policy's levels hold (secrets at Metadata, without objects), and no secret
// value is anywhere in skiff's files, spool or Elasticsearch.
func TestAuditPipelines(t *testing.T) {
	e := newEnv(t, true)
	outDir := filepath.Join(e.dir, "out")
	auditDir := filepath.Join(e.dir, "apiserver-audit")
	auditLog := filepath.Join(auditDir, "audit.log")

	// The webhook's certificates and token, and the apiserver's kubeconfig for it.
	ca := testpki.NewCA(t, "audit-webhook-ca")
	server, client := ca.Server(t, "skiff-webhook"), ca.Client(t, "kube-apiserver")
	token := fmt.Sprintf("webhook-%x", rand.Uint64())
	tokenFile := filepath.Join(e.dir, "webhook-token")
	webhookAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	webhookKubeconfig := filepath.Join(e.dir, "audit-webhook.kubeconfig")
	writeFile(t, tokenFile, token+"\n")
	writeFile(t, webhookKubeconfig, `apiVersion: v1
kind: Config
clusters:
- name: skiff-audit
  cluster:
    server: https://`+webhookAddr+`/
    certificate-authority: `+ca.CertFile+`
users:
- name: kube-apiserver
  user:
    client-certificate: `+client.CertFile+`
    client-key: `+client.KeyFile+`
    token: `+token+`
contexts:
- name: skiff-audit
  context:
    cluster: skiff-audit
    user: kube-apiserver
current-context: skiff-audit
`)

	// skiff first, so that its webhook listens before the apiserver sends.
	cfg := e.config()
	cfg["inputs"] = []map[string]any{{
		"name": "kube-audit", "type": "audit", "paths": []string{auditLog}, "scan_interval": "500ms",
	}, {
		"name": "apiserver-webhook", "type": "audit_webhook", "listen": webhookAddr, "tag": "webhook",
		"tls_cert_file": server.CertFile, "tls_key_file": server.KeyFile,
		"client_ca_file": ca.CertFile, "token_file": tokenFile,
	}}
	cfg["rewrite_tag"] = []map[string]any{{
		"match": []string{"audit"}, "key": "objectRef.namespace", "pattern": "^(.+)$",
		"tag": "audit.$1", "default": "audit.none",
	}}
	cfg["outputs"] = []map[string]any{{
		"name": "audit-per-namespace", "type": "file", "match": []string{"audit.**"},
		"path":           filepath.Join(outDir, "namespaces", "audit-{tag_parts[1]}.%Y%m%d%H.log.gz"),
		"flush_interval": "200ms",
	}, {
		"name": "audit-per-user", "type": "file", "match": []string{"webhook"},
		"path":           filepath.Join(outDir, "users", "kube-audit-{user.username}", "audit.%Y%m%d%H.log.gz"),
		"flush_interval": "200ms",
	}, {
		"name": "es-audit", "type": "elasticsearch", "match": []string{"audit.**", "webhook"},
		"hosts": []string{e.es}, "index": e.index + "-{objectRef.namespace}-%Y.%m.%d",
		"flush_bytes": "1MiB", "flush_interval": "200ms",
	}}
	p := e.start(e.writeConfig("skiff.yaml", cfg))
	waitListening(t, p, webhookAddr)

	policy, err := filepath.Abs("testdata/audit-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := kubetest.Private(t, kubetest.WithUsers(auditUsers...), kubetest.WithAPIServerArgs(
		"--audit-policy-file="+policy,
		"--audit-log-path="+auditLog,
		"--audit-log-format=json",
		"--audit-log-maxsize=1",
		"--audit-log-maxbackup=10",
		"--audit-webhook-config-file="+webhookKubeconfig,
		"--audit-webhook-batch-max-wait=1s",
		"--audit-webhook-initial-backoff=1s",
	))
	act := &auditActivity{}
	auditActivityRun(t, c, act)

	rotated, _ := filepath.Glob(filepath.Join(auditDir, "audit-*.log"))
	if len(rotated) == 0 {
		st, err := os.Stat(auditLog)
		t.Fatalf("the apiserver's audit log did not rotate (%v, %v): too little activity for --audit-log-maxsize=1", st, err)
	}
	// Stopping the apiserver flushes its webhook buffer; afterwards its log is complete and the
	// webhook has received all it will.
	stopAt := time.Now()
	c.StopAPIServer(t)
	m, err := e.metrics()
	if err != nil {
		t.Fatal(err)
	}
	received := int(metricSum(m, "skiff_webhook_events_total", `input="apiserver-webhook"`))
	logEvents, logRaw := readAuditLogs(t, auditDir)
	t.Logf("the apiserver logged %d events in %d files (%d rotated); the webhook received %d", len(logEvents), len(rotated)+1, len(rotated), received)
	want := map[string]*auditEvent{}
	for _, ev := range logEvents {
		if prev, dup := want[ev.key()]; dup {
			t.Fatalf("%s: event %s is also at %s of the apiserver's own log", ev.where, ev.key(), prev.where)
		}
		want[ev.key()] = ev
	}

	nsFiles := filepath.Join(outDir, "namespaces")
	userFiles := filepath.Join(outDir, "users")
	countLines := func(dir string) func() int {
		return func() int {
			l, _ := readGzipLines(t, findFiles(t, dir, ".log.gz"), false)
			return len(l)
		}
	}
	e.waitFor("events in the per-namespace files", len(want), p, countLines(nsFiles))
	e.waitFor("events in the per-user files", received, p, countLines(userFiles))
	e.waitFor("audit documents in Elasticsearch", len(want), p, func() int { return e.count(nil) })
	// Both inputs' copies are delivered, the webhook's mostly as Elasticsearch's 409 on create.
	e.waitFor("events delivered to Elasticsearch by both inputs", len(want)+received, p, func() int {
		m, err := e.metrics()
		if err != nil {
			return -1
		}
		return int(metricSum(m, "skiff_output_records_total", `output="es-audit"`, `status="delivered"`))
	})
	spoolBeforeExit := readTree(t, e.dataDir)
	p.term()

	// The fluentd job: each namespace's hourly files hold exactly its events, once each.
	byNS := map[string][]string{}
	for _, ev := range want {
		byNS[ev.namespace()] = append(byNS[ev.namespace()], ev.key())
	}
	nsDocs := readAuditFiles(t, nsFiles, regexp.MustCompile(`^audit-([a-z0-9-]+)\.(\d{10})\.log\.gz$`),
		func(ev *auditEvent, m []string) error {
			if ev.namespace() != m[1] || ev.Tag != "audit."+m[1] {
				return fmt.Errorf("event of namespace %s with tag %q in the file of %s", ev.namespace(), ev.Tag, m[1])
			}
			return sameHour(ev, m[2])
		})
	checkSame(t, "per-namespace files", byNS, groupKeys(nsDocs, (*auditEvent).namespace))
	for _, ns := range append([]string{"none", "kube-system"}, auditNamespaces...) {
		if len(byNS[ns]) == 0 {
			t.Errorf("no events of namespace %s: the activity missed what it is meant to exercise", ns)
		}
	}
	clusterRoles := 0
	for _, ev := range nsDocs {
		if ev.resource() == "clusterroles" && ev.User.Username == "carol" {
			clusterRoles++
			if ev.namespace() != "none" {
				t.Errorf("%s: carol's cluster-scoped %s of %s is filed under %s", ev.where, ev.Verb, ev.resource(), ev.namespace())
			}
		}
	}
	if clusterRoles < 3*auditOpsRounds {
		t.Errorf("%d events of carol's cluster roles in the files, want at least %d", clusterRoles, 3*auditOpsRounds)
	}

	// The logstash job: each user's files hold exactly that user's events the webhook received,
	// once each: every event of the log but those of requests that ended while the apiserver shut
	// down (its own watches), which it still logs but no longer sends, having stopped its webhook
	// backend first.
	userDocs := readAuditFiles(t, userFiles, regexp.MustCompile(`^kube-audit-(.+)/audit\.(\d{10})\.log\.gz$`),
		func(ev *auditEvent, m []string) error {
			if ev.User.Username != m[1] || ev.Tag != "webhook" {
				return fmt.Errorf("event of user %s with tag %q in the files of %s", ev.User.Username, ev.Tag, m[1])
			}
			return sameHour(ev, m[2])
		})
	sent := map[string]bool{}
	for _, ev := range userDocs {
		sent[ev.key()] = true
	}
	byUser := map[string][]string{}
	unsent := 0
	for _, ev := range want {
		if !sent[ev.key()] {
			if ts, err := time.Parse(time.RFC3339Nano, ev.StageTimestamp); err != nil || ts.Before(stopAt) {
				t.Errorf("%s: event %s of %s (%s %s) is not in the webhook's output", ev.where, ev.key(), ev.StageTimestamp, ev.Verb, ev.resource())
			}
			unsent++
			continue
		}
		byUser[ev.User.Username] = append(byUser[ev.User.Username], ev.key())
	}
	checkSame(t, "per-user files", byUser, groupKeys(userDocs, func(ev *auditEvent) string { return ev.User.Username }))
	for _, u := range auditUsers {
		if len(byUser[u.Name]) == 0 {
			t.Errorf("no events of user %s", u.Name)
		}
	}
	t.Logf("%d events logged as the apiserver shut down were not sent to the webhook", unsent)

	// Elasticsearch: every event once, as document auditID-stage in its namespace's daily index.
	hits := e.rawDocs()
	var esDocs []*auditEvent
	ids := map[string]int{}
	for _, h := range hits {
		ev, err := parseAuditEvent(h.Source, h.Index+"/"+h.ID)
		if err != nil {
			t.Error(err)
			continue
		}
		ids[h.ID]++
		if h.ID != ev.key() {
			t.Errorf("%s: document of event %s", ev.where, ev.key())
		}
		ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp)
		if err != nil {
			t.Errorf("%s: @timestamp %q: %v", ev.where, ev.Timestamp, err)
		} else if w := e.index + "-" + ev.namespace() + "-" + ts.UTC().Format("2006.01.02"); h.Index != w {
			t.Errorf("%s: in index %s, want %s", ev.where, h.Index, w)
		}
		esDocs = append(esDocs, ev)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("Elasticsearch holds %d documents with _id %s, want 1", n, id)
		}
	}
	checkSame(t, "Elasticsearch", map[string][]string{"all": slices.Collect(maps.Keys(want))},
		groupKeys(esDocs, func(*auditEvent) string { return "all" }))
	checkObjectMapping(t, e)
	if dl := findFiles(t, filepath.Join(e.dataDir, "deadletter"), ".gz"); len(dl) > 0 {
		t.Errorf("dead letters: %v", dl)
	}

	// The policy's levels, as the outputs show them.
	all := slices.Concat(logEvents, nsDocs, userDocs, esDocs)
	checkLevels(t, all)

	// No secret value anywhere in skiff's output (nor in the apiserver's log: the policy), and
	// the objects' markers where the policy logs objects.
	var esText bytes.Buffer
	for _, h := range hits {
		esText.Write(h.Source)
		esText.WriteByte('\n')
	}
	places := map[string][]byte{"the apiserver's audit log": logRaw, "Elasticsearch": esText.Bytes()}
	maps.Copy(places, readTree(t, outDir))
	maps.Copy(places, readTree(t, e.dataDir))
	for p, b := range spoolBeforeExit {
		places[p+" (before skiff exited)"] = b
	}
	checkSecrets(t, act, places)
	t.Logf("%d events: %d namespaces' files, %d users' files, %d Elasticsearch documents; %d secret values and %d markers searched in %d places",
		len(want), len(byNS), len(byUser), len(hits), len(act.secrets), len(act.markers), len(places))
}

// checkSecrets fails t when a secret value the test wrote, plain or base64, is in one of places
// (name → content), or when a marker is missing from Elasticsearch or the apiserver's log.
func checkSecrets(t *testing.T, act *auditActivity, places map[string][]byte) {
	t.Helper()
	if len(act.secrets) == 0 || len(act.markers) == 0 {
		t.Fatalf("%d secret values and %d markers written: nothing to look for", len(act.secrets), len(act.markers))
	}
	leaks := 0
	for where, b := range places {
		for _, s := range act.secrets {
			for _, n := range []string{s, base64.StdEncoding.EncodeToString([]byte(s))} {
				if bytes.Contains(b, []byte(n)) {
					if leaks++; leaks <= 5 {
						t.Errorf("secret value %q in %s", n, where)
					}
				}
			}
		}
	}
	if leaks > 0 {
		t.Errorf("%d secret values written, found %d times", len(act.secrets), leaks)
	}
	for _, m := range act.markers {
		for _, where := range []string{"Elasticsearch", "the apiserver's audit log"} {
			if !bytes.Contains(places[where], []byte(m)) {
				t.Errorf("marker %q (in an object the policy logs) is not in %s: the search for secrets proves nothing", m, where)
			}
		}
	}
}

// checkObjectMapping checks that the audit objects, arbitrary Kubernetes objects, added no
// fields to the indices' mappings: they are JSON text, stored and not indexed.
func checkObjectMapping(t *testing.T, e *env) {
	t.Helper()
	type field struct {
		Type  string `json:"type"`
		Index *bool  `json:"index"`
	}
	var res map[string]struct {
		Mappings struct {
			Properties map[string]field `json:"properties"`
		} `json:"mappings"`
	}
	esJSON(t, http.MethodGet, "/"+e.pattern()+"/_mapping", nil, &res)
	withObjects := 0
	for index, m := range res {
		props := m.Mappings.Properties
		for _, name := range []string{"requestObject", "responseObject"} {
			if _, ok := props[name]; ok {
				t.Errorf("index %s maps %s: the objects' fields entered the mapping", index, name)
			}
			f, ok := props[name+"_json"]
			if !ok {
				continue
			}
			withObjects++
			if f.Type != "text" || f.Index == nil || *f.Index {
				t.Errorf("index %s maps %s_json as %+v, want text that is not indexed", index, name, f)
			}
		}
	}
	if withObjects == 0 {
		t.Errorf("no index of %s has requestObject_json or responseObject_json", e.pattern())
	}
}

// checkLevels checks what the documentation's policy says of the events the test provokes.
func checkLevels(t *testing.T, events []*auditEvent) {
	t.Helper()
	counts := map[string]int{}
	for _, ev := range events {
		var want string
		var objects []string
		switch r := ev.resource(); {
		case ev.ObjectRef != nil && ev.ObjectRef.Name == "controller-leader" && r == "configmaps":
			// The None rule names the configmap (resourceNames), which a create's URL does not:
			// like RBAC, the apiserver matches it only on requests to the named object.
			if ev.Verb != "create" {
				t.Errorf("%s: %s of configmap controller-leader, which the policy does not log", ev.where, ev.Verb)
			}
			want = "Metadata"
		case r == "secrets":
			want = "Metadata"
		case r == "configmaps" && ev.namespace() == "kube-system" && ev.Verb == "create":
			want, objects = "Request", []string{"requestObject"}
		case r == "pods" && ev.Verb == "create":
			want, objects = "RequestResponse", []string{"requestObject", "responseObject"}
		case r == "pods/status":
			want = "Metadata"
		default:
			continue
		}
		counts[ev.resource()]++
		if ev.Level != want {
			t.Errorf("%s: %s %s at level %s, want %s", ev.where, ev.Verb, ev.resource(), ev.Level, want)
		}
		got := ev.objects()
		for i, o := range objects {
			if ev.Tag != "" { // a skiff document: the objects are JSON text
				objects[i] = o + "_json"
			}
		}
		if !slices.Equal(got, objects) {
			t.Errorf("%s: %s %s carries %v, want %v", ev.where, ev.Verb, ev.resource(), got, objects)
		}
	}
	for _, r := range []string{"secrets", "configmaps", "pods", "pods/status"} {
		if counts[r] == 0 {
			t.Errorf("no events of %s to check the policy's levels on", r)
		}
	}
}

// auditActivityRun binds roles to the test's users and has them work: alice and bob with
// configmaps, secrets and pods in the namespaces, carol (ops) with namespaces, cluster roles and
// kube-system configmaps, concurrently.
func auditActivityRun(t *testing.T, c *kubetest.Cluster, act *auditActivity) {
	t.Helper()
	ctx := context.Background()
	admin := c.Client
	_, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-dev"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps", "secrets", "pods"}, Verbs: []string{"*"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for group, role := range map[string]string{"dev": "e2e-dev", "ops": "cluster-admin"} {
		_, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + group},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	clients := map[string]*kubernetes.Clientset{}
	for _, u := range auditUsers {
		cs, err := kubernetes.NewForConfig(c.RESTConfig(c.Tokens[u.Name]))
		if err != nil {
			t.Fatal(err)
		}
		clients[u.Name] = cs
	}
	// RBAC reaches the authorizer's cache within moments.
	for _, u := range []string{"alice", "bob", "carol"} {
		deadline := time.Now().Add(time.Minute)
		for {
			_, err := clients[u].CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
			if err == nil {
				break
			}
			if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
				t.Fatalf("%s lists configmaps: %v", u, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	carol := clients["carol"]
	for _, ns := range auditNamespaces {
		if _, err := carol.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The ServiceAccount admission plugin wants it before it admits pods.
		if _, err := carol.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	run := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				errs <- err
			}
		})
	}
	for i, w := range []struct{ user, ns string }{
		{"alice", "shop"}, {"alice", "payments"}, {"bob", "payments"}, {"bob", "analytics"},
	} {
		run(func() error { return devWork(ctx, clients[w.user], act, w.user, w.ns, i) })
	}
	run(func() error { return opsWork(ctx, carol, act) })
	run(func() error { return leaderWork(ctx, clients["alice"]) })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A kubelet's status update (pods/status: Metadata level) of a pod of alice's.
	web := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.PodSpec{NodeName: kubetest.NodeName, Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
	}
	if _, err := clients["alice"].CoreV1().Pods("shop").Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.MarkPodRunning(t, "shop", "web", "10.244.0.9")
	t.Logf("activity took %v", time.Since(start).Round(time.Millisecond))
}

// devWork is a developer's work in namespace ns: configmaps and secrets created, read, updated,
// listed and deleted, and every third round a pod.
func devWork(ctx context.Context, cs *kubernetes.Clientset, act *auditActivity, user, ns string, seed int) error {
	cms, secrets, pods := cs.CoreV1().ConfigMaps(ns), cs.CoreV1().Secrets(ns), cs.CoreV1().Pods(ns)
	for i := range auditRounds {
		name := fmt.Sprintf("%s-%d", user, i)
		cm, err := cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Data:       map[string]string{"round": fmt.Sprint(i)},
		}, metav1.CreateOptions{})
		if err == nil {
			_, err = cms.Get(ctx, name, metav1.GetOptions{})
		}
		if err == nil {
			cm.Data["updated"] = "yes"
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}

		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if (i+seed)%2 == 0 {
			sec.StringData = map[string]string{"password": act.value("s3cr3t", true)}
		} else {
			sec.Data = map[string][]byte{"password": []byte(act.value("s3cr3t", true))}
		}
		if err == nil {
			sec, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		}
		if err == nil {
			_, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
		if err == nil {
			sec.Data = map[string][]byte{"password": []byte(act.value("s3cr3t", true))}
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err == nil && i%5 == 0 {
			_, err = secrets.List(ctx, metav1.ListOptions{})
		}
		if err == nil {
			err = secrets.Delete(ctx, name, metav1.DeleteOptions{})
		}

		if err == nil && i%3 == 0 {
			_, err = pods.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"e2e.skiff.io/marker": act.value("pod-marker", false)}},
				Spec:       corev1.PodSpec{NodeName: kubetest.NodeName, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			}, metav1.CreateOptions{})
			if err == nil {
				_, err = pods.Get(ctx, name, metav1.GetOptions{})
			}
			if err == nil {
				err = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
			}
		}
		if err == nil && i%5 == 0 {
			_, err = cms.List(ctx, metav1.ListOptions{})
		}
		if err == nil {
			err = cms.Delete(ctx, name, metav1.DeleteOptions{})
		}
		if err != nil {
			return fmt.Errorf("%s in %s, round %d: %w", user, ns, i, err)
		}
	}
	return nil
}

// opsWork is carol's: cluster roles (cluster-scoped) and kube-system configmaps, whose requests
// the policy logs with their bodies.
func opsWork(ctx context.Context, cs *kubernetes.Clientset, act *auditActivity) error {
	roles, cms := cs.RbacV1().ClusterRoles(), cs.CoreV1().ConfigMaps("kube-system")
	for i := range auditOpsRounds {
		name := fmt.Sprintf("e2e-carol-%d", i)
		_, err := roles.Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}},
		}, metav1.CreateOptions{})
		if err == nil {
			_, err = roles.Get(ctx, name, metav1.GetOptions{})
		}
		if err == nil {
			err = roles.Delete(ctx, name, metav1.DeleteOptions{})
		}
		if err == nil && i%4 == 0 {
			var cm *corev1.ConfigMap
			cm, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Data:       map[string]string{"marker": act.value("kube-system-marker", false)},
			}, metav1.CreateOptions{})
			if err == nil {
				cm.Data["round"] = fmt.Sprint(i)
				_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			}
			if err == nil {
				err = cms.Delete(ctx, name, metav1.DeleteOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("carol, round %d: %w", i, err)
		}
	}
	return nil
}

// leaderWork creates and updates the configmap "controller-leader", whose requests the policy
// does not log but for the create (see checkLevels).
func leaderWork(ctx context.Context, cs *kubernetes.Clientset) error {
	cms := cs.CoreV1().ConfigMaps("shop")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "controller-leader"}, Data: map[string]string{}}, metav1.CreateOptions{})
	for i := 0; err == nil && i < 10; i++ {
		cm.Data = map[string]string{"holder": fmt.Sprint(i)}
		cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("controller-leader: %w", err)
	}
	return nil
}

// waitListening waits until something accepts connections at addr, failing if skiff exits.
func waitListening(t *testing.T, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		p.mustRun()
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens at %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readAuditLogs reads every event of the apiserver's audit log files in dir, the current one and
// the rotated ones, and returns them with the files' concatenated bytes.
func readAuditLogs(t *testing.T, dir string) ([]*auditEvent, []byte) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "audit*.log"))
	var events []*auditEvent
	var raw []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b...)
		for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			ev, err := parseAuditEvent(line, fmt.Sprintf("%s:%d", p, i+1))
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
	}
	return events, raw
}

// readAuditFiles reads the gzip files under dir, whose paths relative to dir must match name;
// check says whether a document belongs in its file (m: name's submatches).
func readAuditFiles(t *testing.T, dir string, name *regexp.Regexp, check func(ev *auditEvent, m []string) error) []*auditEvent {
	t.Helper()
	var events []*auditEvent
	for _, p := range findFiles(t, dir, ".log.gz") {
		rel, _ := filepath.Rel(dir, p)
		m := name.FindStringSubmatch(rel)
		if m == nil {
			t.Errorf("unexpected file %s", p)
			continue
		}
		lines, where := readGzipLines(t, []string{p}, true)
		for i, l := range lines {
			ev, err := parseAuditEvent([]byte(l), where[i])
			if err == nil {
				err = check(ev, m)
			}
			if err != nil {
				t.Errorf("%s: %v", where[i], err)
				continue
			}
			events = append(events, ev)
		}
	}
	return events
}

// sameHour checks that a document is in the file of its hour (YYYYMMDDHH, UTC).
func sameHour(ev *auditEvent, hour string) error {
	ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp)
	if err != nil {
		return fmt.Errorf("@timestamp %q: %v", ev.Timestamp, err)
	}
	if got := ts.UTC().Format("2006010215"); got != hour {
		return fmt.Errorf("event of hour %s in the file of hour %s", got, hour)
	}
	return nil
}

func groupKeys(events []*auditEvent, by func(*auditEvent) string) map[string][]string {
	out := map[string][]string{}
	for _, ev := range events {
		out[by(ev)] = append(out[by(ev)], ev.key())
	}
	return out
}

// checkSame fails t unless every group of got holds exactly the keys of the same group of want,
// each once.
func checkSame(t *testing.T, what string, want, got map[string][]string) {
	t.Helper()
	groups := maps.Clone(want)
	maps.Copy(groups, got)
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		w, seen := map[string]bool{}, map[string]int{}
		for _, k := range want[g] {
			w[k] = true
		}
		var missing, extra, dups []string
		for _, k := range got[g] {
			if seen[k]++; seen[k] == 2 {
				dups = append(dups, k)
			}
			if !w[k] && seen[k] == 1 {
				extra = append(extra, k)
			}
		}
		for k := range w {
			if seen[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing)+len(extra)+len(dups) > 0 {
			t.Errorf("%s, %s: %d events, want %d: %d missing %v, %d not of %s %v, %d more than once %v", what, g, len(got[g]), len(w),
				len(missing), head(missing), len(extra), g, head(extra), len(dups), head(dups))
		}
	}
}

func head(s []string) []string {
	slices.Sort(s)
	return s[:min(len(s), 5)]
}

// readTree returns the content of every regular file under dir, gzip files decompressed (as far
// as they are readable), by path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // deleted meanwhile (a delivered spool file)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err == nil {
				plain, _ := io.ReadAll(zr)
				b = append(plain, b...) // and the compressed bytes, should a member be stored
			}
		}
		out[p] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
