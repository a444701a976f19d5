package e2e

// Kubernetes metadata enrichment against a real kube-apiserver (internal/kubetest) and a real
// Elasticsearch: skiff runs with a ServiceAccount token bound to a ClusterRole holding exactly
// the rules the chart renders, pods bound (spec.nodeName) to a node name of the test's own, and
// their container logs written by the test in the kubelet layout with the pods' real UIDs.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-logs/skiff/internal/kubetest"
	"github.com/skiff-logs/skiff/internal/loggen"
)

// kubeWait bounds every wait of these tests for something that must eventually happen (an
// informer's backoff after an outage reaches 30 s; the machine may be loaded).
const kubeWait = 2 * time.Minute

// deletedPodGrace is the deleted_pod_grace given to skiff: long enough for the lines written
// just after a deletion to be read within it on a loaded machine, short enough to see it end.
const deletedPodGrace = 20 * time.Second

// kctx is a context for one API call.
func kctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// chartRules renders charts/skiff with its default values, as `helm install` would, and returns
// the rules of its ClusterRole.
func chartRules(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	ch, err := loader.Load("../charts/skiff")
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals, err := chartutil.ToRenderValues(ch, map[string]any{}, chartutil.ReleaseOptions{
		Name: "skiff", Namespace: "logging", Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("chart values: %v", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("render chart: %v", err)
	}
	for name, text := range files {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt is text for the operator, not an object
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
		for {
			var role rbacv1.ClusterRole
			err := dec.Decode(&role)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("chart %s: %v", name, err)
			}
			if role.Kind == "ClusterRole" {
				if len(role.Rules) == 0 {
					t.Fatalf("chart %s: ClusterRole without rules", name)
				}
				return role.Rules
			}
		}
	}
	t.Fatal("the chart rendered with default values has no ClusterRole")
	return nil
}

// grant creates a ClusterRole with rules, a ServiceAccount bound to it in a fresh namespace, and
// returns a kubeconfig with the ServiceAccount's token, once RBAC lets it list the pods of node.
func grant(t testing.TB, c *kubetest.Cluster, rules []rbacv1.PolicyRule, node string) string {
	t.Helper()
	saNS := kubetest.UniqueName("skiff-sa")
	c.CreateNamespace(t, saNS, nil)
	role := kubetest.UniqueName("skiff-role")
	_, err := c.Client.RbacV1().ClusterRoles().Create(kctx(t), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules:      rules,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create cluster role: %v", err)
	}
	c.BindClusterRole(t, role, saNS, "skiff")
	token := c.ServiceAccountToken(t, saNS, "skiff")
	cs, err := kubernetes.NewForConfig(c.RESTConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	// RBAC reaches the authorizer's cache within moments: wait, so that skiff's first list is
	// not refused (its informer would then back off, and the first records go unenriched).
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := cs.CoreV1().Pods("").List(kctx(t), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("list pods with the new token: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c.Kubeconfig(t, token)
}

// kubeConfig is the env's skiff config with a kubernetes section; fields override its defaults.
func (e *env) kubeConfig(kubeconfig, node string, fields map[string]any, extraPaths ...string) map[string]any {
	cfg := e.config(e.esOutput("es-kube"))
	in := cfg["inputs"].([]map[string]any)[0]
	in["paths"] = append([]string{e.containersGlob()}, extraPaths...)
	k := map[string]any{
		"enabled":           true,
		"kubeconfig":        kubeconfig,
		"node_name":         node,
		"deleted_pod_grace": deletedPodGrace.String(),
	}
	maps.Copy(k, fields)
	cfg["kubernetes"] = k
	return cfg
}

// newPod creates pod name in ns on node with labels, annotations and containers ("name=image";
// init containers first, the count given by inits), and marks it running with ip.
func newPod(t testing.TB, c *kubetest.Cluster, ns, name, node, ip string, labels, annotations map[string]string, inits int, containers ...string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node},
	}
	for i, ci := range containers {
		n, image, _ := strings.Cut(ci, "=")
		ct := corev1.Container{Name: n, Image: image}
		if i < inits {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, ct)
		} else {
			pod.Spec.Containers = append(pod.Spec.Containers, ct)
		}
	}
	c.CreatePod(t, ns, pod)
	return c.MarkPodRunning(t, ns, name, ip)
}

// podLog is one container's log file, written by the test.
type podLog struct {
	t     testing.TB
	root  string
	pod   *corev1.Pod
	c     loggen.Container
	f     *os.File
	lines int
}

// newPodLog creates the log file of container ctr of pod in the kubelet layout under root, with
// the pod's UID and the container ID kubetest.MarkPodRunning reports. Without symlink there is
// no /var/log/containers link: the file is found only through /var/log/pods.
func newPodLog(t testing.TB, root string, pod *corev1.Pod, ctr string, symlink bool) *podLog {
	t.Helper()
	c := loggen.Container{
		Namespace: pod.Namespace, Pod: pod.Name, UID: string(pod.UID), Name: ctr,
		ID: kubetest.ContainerID(pod.Namespace, pod.Name, ctr),
	}
	f, err := c.Create(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if !symlink {
		if err := os.Remove(c.ContainersPath(root)); err != nil {
			t.Fatal(err)
		}
	}
	return &podLog{t: t, root: root, pod: pod, c: c, f: f}
}

func (l *podLog) tag() string { return "kube." + l.c.Namespace + "." + l.c.Pod + "." + l.c.Name }

// write appends one CRI line per message, stamped now.
func (l *podLog) write(msgs ...string) {
	l.t.Helper()
	var buf []byte
	for _, m := range msgs {
		buf = loggen.AppendLine(buf, loggen.CRI, time.Now(), "stdout", m, nil)
	}
	if _, err := l.f.Write(buf); err != nil {
		l.t.Fatal(err)
	}
	l.lines += len(msgs)
}

// writeN writes n messages "<prefix> <i>".
func (l *podLog) writeN(prefix string, n int) {
	l.t.Helper()
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	l.write(msgs...)
}

func (l *podLog) size() int64 {
	l.t.Helper()
	st, err := os.Stat(l.c.PodsPath(l.root))
	if err != nil {
		l.t.Fatal(err)
	}
	return st.Size()
}

// dedot is a label or annotation map with its keys as skiff writes them (dedot: true).
func dedot(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[strings.ReplaceAll(k, ".", "_")] = v
	}
	return out
}

// enriched is the kubernetes.* and container.* part of the documents of l's records, flattened,
// when skiff knows its pod: nsLabels are the namespace's labels as the API has them, annotations
// the pod's annotations skiff is to copy.
func (l *podLog) enriched(nsLabels map[string]string, annotations ...string) map[string]any {
	p := l.pod
	w := l.pathFacts()
	w["kubernetes.pod.uid"] = string(p.UID)
	w["kubernetes.pod.ip"] = p.Status.PodIP
	w["kubernetes.node.name"] = p.Spec.NodeName
	w["container.id"] = kubetest.ContainerID(p.Namespace, p.Name, l.c.Name)
	for k, v := range dedot(nsLabels) {
		w["kubernetes.namespace_labels."+k] = v
	}
	for k, v := range dedot(p.Labels) {
		w["kubernetes.labels."+k] = v
	}
	for _, a := range annotations {
		w["kubernetes.annotations."+strings.ReplaceAll(a, ".", "_")] = p.Annotations[a]
	}
	for _, ct := range p.Spec.InitContainers {
		if ct.Name == l.c.Name {
			w["kubernetes.container.image"] = ct.Image
			w["kubernetes.container.init"] = true
		}
	}
	for _, ct := range p.Spec.Containers {
		if ct.Name == l.c.Name {
			w["kubernetes.container.image"] = ct.Image
		}
	}
	return w
}

// pathFacts is what the documents of l's records carry when skiff knows nothing of its pod: what
// the path tells (the /var/log/containers name holds no pod UID).
func (l *podLog) pathFacts() map[string]any {
	return map[string]any{
		"kubernetes.namespace":      l.c.Namespace,
		"kubernetes.pod.name":       l.c.Pod,
		"kubernetes.container.name": l.c.Name,
		"container.id":              l.c.ID,
	}
}

// kdoc is one document as Elasticsearch returns it, flattened: nested keys joined by '.'
// (unambiguous, since de-dotted label keys hold no '.').
type kdoc map[string]any

func flatten(prefix string, v any, out kdoc) {
	m, ok := v.(map[string]any)
	if !ok {
		out[prefix] = v
		return
	}
	for k, x := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		flatten(k, x, out)
	}
}

func (d kdoc) message() string { s, _ := d["message"].(string); return s }

// kube is the document's kubernetes.* and container.* members.
func (d kdoc) kube() map[string]any {
	out := map[string]any{}
	for k, v := range d {
		if strings.HasPrefix(k, "kubernetes.") || strings.HasPrefix(k, "container.") {
			out[k] = v
		}
	}
	return out
}

// docsOf returns the documents of the records of l.
func (e *env) docsOf(l *podLog) []kdoc {
	e.t.Helper()
	esJSON(e.t, http.MethodPost, "/"+e.pattern()+"/_refresh?allow_no_indices=true&ignore_unavailable=true", nil, nil)
	var res struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	esJSON(e.t, http.MethodPost, "/"+e.pattern()+"/_search?allow_no_indices=true&ignore_unavailable=true",
		map[string]any{"size": 10000, "query": tagQuery(l.tag())}, &res)
	docs := make([]kdoc, 0, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		d := kdoc{}
		flatten("", h.Source, d)
		docs = append(docs, d)
	}
	return docs
}

// waitLines waits until Elasticsearch holds exactly every record written to l.
func (e *env) waitLines(p *proc, l *podLog) {
	e.t.Helper()
	e.waitFor("records of "+l.tag(), l.lines, p, func() int { return e.count(tagQuery(l.tag())) })
}

// waitMessage waits until the record with message msg of l is in Elasticsearch and returns it.
func (e *env) waitMessage(p *proc, l *podLog, msg string) kdoc {
	e.t.Helper()
	deadline := time.Now().Add(kubeWait)
	for {
		for _, d := range e.docsOf(l) {
			if d.message() == msg {
				return d
			}
		}
		p.mustRun()
		if time.Now().After(deadline) {
			e.t.Fatalf("record %q of %s not in Elasticsearch after %v; skiff: %s", msg, l.tag(), kubeWait, e.progress())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// probeUntil writes one line "<prefix> <i>" at a time to l, each once the previous one is in
// Elasticsearch, until one's kubernetes.* and container.* fields are want, and returns how long
// that took and how many lines it wrote. It fails the test after kubeWait, saying how the last
// record differs. other, when not nil, checks each record that is not as wanted (yet).
func (e *env) probeUntil(p *proc, l *podLog, prefix string, want map[string]any, other func(kdoc)) (time.Duration, int) {
	e.t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		msg := fmt.Sprintf("%s %d", prefix, i)
		l.write(msg)
		d := e.waitMessage(p, l, msg)
		if reflect.DeepEqual(d.kube(), want) {
			return time.Since(start).Round(time.Millisecond), i + 1
		}
		if other != nil {
			other(d)
		}
		if time.Since(start) > kubeWait {
			e.t.Fatalf("%s: record %q, written %v after the first probe, is still not as wanted:\n%s",
				l.tag(), msg, kubeWait, kubeDiff(d.kube(), want))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkKube fails the test unless every document of l whose message passes sel carries exactly
// the kubernetes.* and container.* fields of want, and returns how many did.
func (e *env) checkKube(l *podLog, what string, sel func(msg string) bool, want map[string]any) int {
	e.t.Helper()
	n, bad := 0, 0
	for _, d := range e.docsOf(l) {
		if !sel(d.message()) {
			continue
		}
		n++
		if got := d.kube(); !reflect.DeepEqual(got, want) {
			bad++
			if bad <= 3 {
				e.t.Errorf("%s: record %q of %s:\n%s", what, d.message(), l.tag(), kubeDiff(got, want))
			}
		}
	}
	if bad > 3 {
		e.t.Errorf("%s: %d more records of %s differ likewise", what, bad-3, l.tag())
	}
	if n == 0 {
		e.t.Errorf("%s: no record of %s to check", what, l.tag())
	}
	return n
}

func kubeDiff(got, want map[string]any) string {
	var b strings.Builder
	keys := slices.Collect(maps.Keys(got))
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "  missing %s (want %v)\n", k, w)
		case !wok:
			fmt.Fprintf(&b, "  unexpected %s = %v\n", k, g)
		case !reflect.DeepEqual(g, w):
			fmt.Fprintf(&b, "  %s = %v, want %v\n", k, g, w)
		}
	}
	return b.String()
}

func all(string) bool { return true }

func prefixed(p string) func(string) bool {
	return func(m string) bool { return strings.HasPrefix(m, p) }
}

// nsLabels returns the labels namespace ns has in the API (with the kubernetes.io/metadata.name
// label the apiserver adds).
func nsLabels(t testing.TB, c *kubetest.Cluster, ns string) map[string]string {
	t.Helper()
	got, err := c.Client.CoreV1().Namespaces().Get(kctx(t), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get namespace %s: %v", ns, err)
	}
	return got.Labels
}

func patchNamespace(t testing.TB, c *kubetest.Cluster, ns, patch string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Patch(kctx(t), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patch namespace %s: %v", ns, err)
	}
}

// TestKubeEnrichment: skiff with the chart's ClusterRole enriches every record of the pods on its
// node with their pod, namespace and container metadata (de-dotted labels, allowlisted
// annotations, init flag, pod found by UID under /var/log/pods and by name under
// /var/log/containers), parses skiff.io/parser: json messages, follows a namespace label change,
// still enriches a deleted pod's last lines (and stops once deleted_pod_grace has passed), and
// drops the logs of excluded pods and namespaces while their positions advance.
func TestKubeEnrichment(t *testing.T) {
	t.Parallel()
	c := kubetest.Env(t)
	e := newEnv(t, true)
	node := kubetest.UniqueName("node")

	shop := kubetest.UniqueName("shop")
	c.CreateNamespace(t, shop, map[string]string{"team": "shop", "app.kubernetes.io/part-of": "store"})
	pay := kubetest.UniqueName("pay")
	c.CreateNamespace(t, pay, map[string]string{"team": "payments", "env": "prod"})
	muted := kubetest.UniqueName("muted")
	c.CreateNamespace(t, muted, map[string]string{"team": "noise"})
	patchNamespace(t, c, muted, `{"metadata":{"annotations":{"skiff.io/exclude":"true"}}}`)

	appLabels := func(name string) map[string]string {
		return map[string]string{"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/version": "1.2.3"}
	}
	web := newPod(t, c, shop, "web-7d9f8b6c5-x2x7q", node, "10.1.0.11", appLabels("web"),
		map[string]string{"skiff.io/parser": "json", "example.com/team": "storefront", "example.com/not-copied": "secret"},
		0, "nginx=nginx:1.27")
	job := newPod(t, c, shop, "migrate-job-4kq9z", node, "10.1.0.12", appLabels("migrate"), nil,
		1, "migrate=busybox:1.36", "main=alpine:3.20")
	doomed := newPod(t, c, shop, "doomed-5c8d7", node, "10.1.0.13", appLabels("doomed"), nil, 0, "app=alpine:3.20")
	quiet := newPod(t, c, shop, "quiet-0", node, "10.1.0.14", appLabels("quiet"),
		map[string]string{"skiff.io/exclude": "true"}, 0, "noisy=alpine:3.20")
	ledger := newPod(t, c, pay, "ledger-0", node, "10.1.0.21", map[string]string{"app": "ledger", "statefulset.kubernetes.io/pod-name": "ledger-0"}, nil,
		0, "ledger=ledger:2")
	hushed := newPod(t, c, muted, "chatty-0", node, "10.1.0.31", appLabels("chatty"), nil, 0, "chatty=alpine:3.20")

	webLog := newPodLog(t, e.root, web, "nginx", true)
	initLog := newPodLog(t, e.root, job, "migrate", true)
	mainLog := newPodLog(t, e.root, job, "main", true)
	doomedLog := newPodLog(t, e.root, doomed, "app", true)
	quietLog := newPodLog(t, e.root, quiet, "noisy", true)
	ledgerLog := newPodLog(t, e.root, ledger, "ledger", false) // /var/log/pods only: lookup by UID
	hushedLog := newPodLog(t, e.root, hushed, "chatty", true)

	const n = 40
	for i := range n {
		webLog.write(fmt.Sprintf(`{"level":"info","msg":"order placed","seq":%d}`, i))
	}
	for _, l := range []*podLog{initLog, mainLog, doomedLog, quietLog, ledgerLog, hushedLog} {
		l.writeN("before", n)
	}

	kc := grant(t, c, chartRules(t), node)
	cfg := e.kubeConfig(kc, node, map[string]any{"pod_annotations": []string{"example.com/team"}},
		filepath.Join(e.root, "var/log/pods", pay+"_*", "*", "*.log"))
	p := e.start(e.writeConfig("skiff.yaml", cfg))

	for _, l := range []*podLog{webLog, initLog, mainLog, doomedLog, ledgerLog} {
		e.waitLines(p, l)
	}
	shopLabels, payLabels := nsLabels(t, c, shop), nsLabels(t, c, pay)
	e.checkKube(webLog, "json pod", all, webLog.enriched(shopLabels, "example.com/team"))
	e.checkKube(initLog, "init container", all, initLog.enriched(shopLabels))
	e.checkKube(mainLog, "app container", all, mainLog.enriched(shopLabels))
	e.checkKube(doomedLog, "pod before deletion", all, doomedLog.enriched(shopLabels))
	e.checkKube(ledgerLog, "pod by uid", all, ledgerLog.enriched(payLabels))
	e.checkMapping()

	// skiff.io/parser: json: each message's fields under json_key (default "json").
	seqs := map[float64]int{}
	for _, d := range e.docsOf(webLog) {
		if d["json.level"] != "info" || d["json.msg"] != "order placed" {
			t.Errorf("json pod record %q: json.level=%v json.msg=%v, want info, order placed", d.message(), d["json.level"], d["json.msg"])
		}
		if s, ok := d["json.seq"].(float64); ok {
			seqs[s]++
		}
	}
	if len(seqs) != n {
		t.Errorf("json pod: %d distinct json.seq values, want %d", len(seqs), n)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A namespace label change shows on records written after it: poll with one line at a time
	// until one carries the new labels, then every later one must.
	patchNamespace(t, c, shop, `{"metadata":{"labels":{"team":"checkout","tier":"frontend","app.kubernetes.io/part-of":null}}}`)
	newShop := nsLabels(t, c, shop)
	if _, ok := newShop["app.kubernetes.io/part-of"]; ok || newShop["team"] != "checkout" {
		t.Fatalf("namespace %s labels after the patch: %v", shop, newShop)
	}
	took, probes := e.probeUntil(p, mainLog, "patch probe", mainLog.enriched(newShop), nil)
	t.Logf("namespace label change on records after %v (%d probes)", took, probes)
	mainLog.writeN("after-patch", 20)
	webLog.write(`{"level":"info","msg":"after patch","seq":1000}`)
	quietLog.writeN("after-patch", 10)
	hushedLog.writeN("after-patch", 10)
	e.waitLines(p, mainLog)
	e.waitLines(p, webLog)
	e.checkKube(mainLog, "after the namespace label change", prefixed("after-patch "), mainLog.enriched(newShop))

	// A deleted pod's lines written just after the deletion are still enriched (deleted_pod_grace);
	// once the grace has passed, records carry what the path tells.
	c.DeletePod(t, shop, doomed.Name)
	if _, err := c.Client.CoreV1().Pods(shop).Get(kctx(t), doomed.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod %s/%s after deletion with grace 0: %v", shop, doomed.Name, err)
	}
	deleted := time.Now()
	time.Sleep(time.Second) // let the deletion reach skiff's watch
	doomedLog.writeN("after-delete", 20)
	e.waitLines(p, doomedLog)
	e.checkKube(doomedLog, "deleted pod within deleted_pod_grace", prefixed("after-delete "), doomedLog.enriched(newShop))
	time.Sleep(time.Until(deleted.Add(deletedPodGrace)))
	e.probeUntil(p, doomedLog, "grace probe", doomedLog.pathFacts(), nil)
	t.Logf("deleted pod forgotten %v after its deletion (deleted_pod_grace %v)", time.Since(deleted).Round(time.Millisecond), deletedPodGrace)

	// Excluded pod and namespace: nothing shipped (everything written later has arrived), and
	// their positions advance to the end of their files.
	for _, l := range []*podLog{quietLog, hushedLog} {
		if got := e.count(tagQuery(l.tag())); got != 0 {
			t.Errorf("%s is excluded, but Elasticsearch holds %d of its records", l.tag(), got)
		}
		path, size := l.c.ContainersPath(e.root), l.size()
		deadline := time.Now().Add(kubeWait)
		for {
			files, _ := e.positions()
			var off int64 = -1
			for _, f := range files {
				if f.Path == path {
					off = max(off, f.Offset)
				}
			}
			if off == size {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("excluded %s: positions.json offset %d (-1: absent), want the file size %d", path, off, size)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	p.term()
}

// onePod creates a node name, a namespace (prefix, labelled team=prefix) and in it a running pod
// on that node with one container "app" whose log file holds n lines.
func (e *env) onePod(c *kubetest.Cluster, prefix, pod, ip string, n int) (string, *podLog) {
	e.t.Helper()
	node := kubetest.UniqueName("node")
	ns := kubetest.UniqueName(prefix)
	c.CreateNamespace(e.t, ns, map[string]string{"team": prefix})
	p := newPod(e.t, c, ns, pod, node, ip, map[string]string{"app.kubernetes.io/name": prefix}, nil, 0, "app=app:1")
	l := newPodLog(e.t, e.root, p, "app", true)
	l.writeN("before", n)
	return node, l
}

// TestKubeAPIServerOutage: with the apiserver stopped mid-run, nothing is lost and the records
// of pods skiff already knows stay enriched; after it returns, a pod created since is enriched.
func TestKubeAPIServerOutage(t *testing.T) {
	t.Parallel()
	c := kubetest.Private(t)
	e := newEnv(t, true)
	node, apiLog := e.onePod(c, "outage", "api-6b7c9", "10.2.0.11", 50)
	ns := apiLog.c.Namespace

	kc := grant(t, c, chartRules(t), node)
	p := e.start(e.writeConfig("skiff.yaml", e.kubeConfig(kc, node, nil)))
	e.waitLines(p, apiLog)
	labels := nsLabels(t, c, ns)
	e.checkKube(apiLog, "before the outage", all, apiLog.enriched(labels))

	c.StopAPIServer(t)
	t.Log("apiserver stopped")
	for r := range 5 {
		apiLog.writeN(fmt.Sprintf("outage-%d", r), 20)
		time.Sleep(time.Second)
	}
	// Delivered while the apiserver is still down: the pipeline does not wait for it.
	e.waitLines(p, apiLog)
	e.checkKube(apiLog, "during the outage", prefixed("outage-"), apiLog.enriched(labels))
	c.StartAPIServer(t)
	t.Log("apiserver started again")

	late := newPod(t, c, ns, "late-8f9d2", node, "10.2.0.12", map[string]string{"app.kubernetes.io/name": "late"}, nil, 0, "late=late:1")
	lateLog := newPodLog(t, e.root, late, "late", true)
	// Until skiff's informers are back (and while the pod's status update is on its way),
	// records carry at least what the path tells.
	took, probes := e.probeUntil(p, lateLog, "probe", lateLog.enriched(labels), func(d kdoc) {
		got := d.kube()
		for k, v := range lateLog.pathFacts() {
			if got[k] != v {
				t.Fatalf("record %q of a pod skiff does not know yet lacks its path facts:\n%s", d.message(), kubeDiff(got, lateLog.pathFacts()))
			}
		}
	})
	t.Logf("pod created after the restart enriched after %v (%d probes)", took, probes)
	lateLog.writeN("after", 20)
	apiLog.writeN("after", 20)
	e.waitLines(p, lateLog)
	e.waitLines(p, apiLog)
	e.checkKube(lateLog, "new pod after the restart", prefixed("after "), lateLog.enriched(labels))
	e.checkKube(apiLog, "after the restart", prefixed("after "), apiLog.enriched(labels))
	p.term()
}

// TestKubeMissingPermission: with a token whose role may only get namespaces, skiff logs an
// error naming the missing permission and still ships every record, with its pod's metadata
// (pods may be listed and watched) but no namespace labels.
//
// The role lacks watch as well as list: client-go's informers first try a watch-list (a watch
// with sendInitialEvents, which needs only watch) and list only when that fails, so a role
// without list alone still syncs against this apiserver.
func TestKubeMissingPermission(t *testing.T) {
	t.Parallel()
	c := kubetest.Env(t)
	e := newEnv(t, true)
	node, l := e.onePod(c, "rbac", "app-0", "10.3.0.11", 30)

	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}},
	}
	kc := grant(t, c, rules, node)
	p := e.start(e.writeConfig("skiff.yaml", e.kubeConfig(kc, node, map[string]any{"sync_timeout": "2s"})))
	e.waitLines(p, l)
	e.checkKube(l, "without access to namespaces", all, l.enriched(nil))

	deadline := time.Now().Add(kubeWait)
	// Which verb the error names depends on how far client-go got (watch-list, then list).
	denied := regexp.MustCompile(`cannot (list|watch) resource "namespaces"`)
	for !loggedForbidden(t, p.stderr, denied) {
		p.mustRun()
		if time.Now().After(deadline) {
			t.Fatalf("skiff's log has no WARN or ERROR line matching %q", denied)
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.term()
}

// loggedForbidden reports whether the skiff log file at path has a JSON log line at level WARN or
// ERROR whose text matches want.
func loggedForbidden(t testing.TB, path string, want *regexp.Regexp) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil || (m["level"] != "WARN" && m["level"] != "ERROR") {
			continue
		}
		var text strings.Builder
		for _, v := range m {
			fmt.Fprint(&text, v, " ")
		}
		if want.MatchString(text.String()) {
			return true
		}
	}
	return false
}
