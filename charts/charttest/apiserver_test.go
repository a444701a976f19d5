package charttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/skiff-logs/skiff/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

// monitoringGroup is the Prometheus Operator's API group; its CRDs are not installed on the test
// apiserver, so ServiceMonitor and PodMonitor are the only objects a test may leave unapplied.
const monitoringGroup = "monitoring.coreos.com"

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// applier applies rendered objects to the real apiserver with server-side apply, mapping kinds
// to resources from the apiserver's discovery.
type applier struct {
	mapper meta.RESTMapper
	dyn    dynamic.Interface
}

func newApplier(t *testing.T, c *kubetest.Cluster) *applier {
	t.Helper()
	disco, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)), dyn: dyn}
}

// apply applies every object of r in namespace ns with strict field validation (an unknown or
// misplaced field is an error, not silently dropped), failing t on any error.
func (a *applier) apply(t *testing.T, r rendered, ns string) int {
	t.Helper()
	n, errs := a.tryApply(t, r, ns)
	for _, err := range errs {
		t.Error(err)
	}
	return n
}

// tryApply is apply returning the errors: how many objects were applied, and what went wrong.
// Only objects of the Prometheus Operator's group are skipped, each with the reason logged.
func (a *applier) tryApply(t *testing.T, r rendered, ns string) (applied int, errs []error) {
	t.Helper()
	ctx := testCtx(t)
	for _, o := range r.objects {
		gvk := o.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			if meta.IsNoMatchError(err) && gvk.Group == monitoringGroup {
				t.Logf("not applied: %s %s, the Prometheus Operator's CRDs are not installed on the test apiserver", gvk.Kind, o.GetName())
				continue
			}
			errs = append(errs, fmt.Errorf("%s %s: no resource for it on the apiserver: %w", gvk, o.GetName(), err))
			continue
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() != ns {
				errs = append(errs, fmt.Errorf("%s %s: namespace %q, want the release namespace %s", gvk.Kind, o.GetName(), o.GetNamespace(), ns))
			}
			ri = a.dyn.Resource(m.Resource).Namespace(ns)
		} else if o.GetNamespace() != "" {
			errs = append(errs, fmt.Errorf("%s %s is cluster-scoped but names namespace %s", gvk.Kind, o.GetName(), o.GetNamespace()))
		}
		body, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager:    "skiff-chart-test",
			FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("apply %s %s: %w", gvk.Kind, o.GetName(), err))
			continue
		}
		applied++
	}
	return applied, errs
}

// TestApplyToAPIServer applies every object of every value set to a real kube-apiserver, which
// validates them as `helm install` would have them validated, and reads the DaemonSet (and the
// audit webhook's Deployment) back to check that the security settings were stored as rendered.
// A fixed audit webhook clusterIP is replaced by a free one of this apiserver, and the stored
// Service must have the address the rendered webhook kubeconfig points at.
func TestApplyToAPIServer(t *testing.T) {
	c := kubetest.Env(t)
	a := newApplier(t, c)
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			ns := kubetest.UniqueName("chart")
			c.CreateNamespace(t, ns, nil)
			vals := vs.values
			if ip, _ := dig(vals, "auditWebhook", "service")["clusterIP"].(string); ip != "" {
				vals = withValue(t, vals, freeClusterIP(t, c, ns), "auditWebhook", "service", "clusterIP")
			}
			r := render(t, vals, kubetest.UniqueName("skiff"), ns)
			n := a.apply(t, r, ns)
			skippable := 0
			for _, o := range r.objects {
				if o.GroupVersionKind().Group == monitoringGroup {
					skippable++
				}
			}
			if n != len(r.objects)-skippable {
				t.Errorf("applied %d of %d objects (%d Prometheus Operator objects may be skipped)", n, len(r.objects), skippable)
			}
			t.Logf("applied %d objects: %s", n, strings.Join(r.kinds(), " "))

			want := r.daemonSet(t)
			got, err := c.Client.AppsV1().DaemonSets(ns).Get(testCtx(t), want.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			storedAsRendered(t, "DaemonSet", &got.Spec.Template.Spec, &want.Spec.Template.Spec)
			if len(r.all("Deployment")) > 0 {
				checkStoredWebhook(t, c, r, ns)
			}
		})
	}
}

// storedAsRendered checks that the apiserver stored the pod's and the first container's
// security contexts as rendered (no field dropped or defaulted into something else).
func storedAsRendered(t *testing.T, kind string, got, want *corev1.PodSpec) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got.Containers[0].SecurityContext, want.Containers[0].SecurityContext) ||
		!equality.Semantic.DeepEqual(got.SecurityContext, want.SecurityContext) {
		t.Errorf("%s: stored security context differs from the rendered one:\n got %s %s\nwant %s %s", kind,
			js(got.SecurityContext), js(got.Containers[0].SecurityContext), js(want.SecurityContext), js(want.Containers[0].SecurityContext))
	}
}

// checkStoredWebhook reads the applied audit webhook Deployment and Service back: the pod's
// security settings are stored as rendered, and the kubeconfig's server is the stored Service
// (its clusterIP, or its DNS name, and its port).
func checkStoredWebhook(t *testing.T, c *kubetest.Cluster, r rendered, ns string) {
	t.Helper()
	ctx := testCtx(t)
	var want appsv1.Deployment
	into(t, r.one(t, "Deployment"), &want)
	got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	storedAsRendered(t, "Deployment", &got.Spec.Template.Spec, &want.Spec.Template.Spec)
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kubeconfig string
	for _, o := range r.all("ConfigMap") {
		if o.GetName() == want.Name+"-kubeconfig" {
			var cm corev1.ConfigMap
			into(t, o, &cm)
			kubeconfig = cm.Data[kubeconfigKey]
		}
	}
	u := kubeconfigServer(t, kubeconfig)
	host := u.Hostname()
	if net.ParseIP(host) == nil {
		// A DNS name: <service>.<namespace>.svc resolves to the stored Service.
		if host != svc.Name+"."+ns+".svc" {
			t.Errorf("kubeconfig server host %s is not Service %s/%s's DNS name", host, ns, svc.Name)
		}
	} else if host != svc.Spec.ClusterIP {
		t.Errorf("kubeconfig server host %s, the stored Service has clusterIP %s", host, svc.Spec.ClusterIP)
	}
	if u.Port() != strconv.Itoa(int(svc.Spec.Ports[0].Port)) {
		t.Errorf("kubeconfig server port %s, the stored Service's is %d", u.Port(), svc.Spec.Ports[0].Port)
	}
	t.Cleanup(func() {
		// Give a fixed address back: a shared apiserver outlives this test.
		if err := c.Client.CoreV1().Services(ns).Delete(context.Background(), svc.Name, metav1.DeleteOptions{}); err != nil {
			t.Logf("delete Service %s: %v", svc.Name, err)
		}
	})
}

// freeClusterIP returns a ClusterIP this apiserver just allocated and released (it allocates at
// random from its range, so the address stays free for the moment a test needs it).
func freeClusterIP(t *testing.T, c *kubetest.Cluster, ns string) string {
	t.Helper()
	ctx := testCtx(t)
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "ip-probe-"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 443}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Services(ns).Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// TestAPIServerRejectsBrokenObjects shows the apply test has teeth: a misspelt field (strict
// field validation) and a mount of a volume that does not exist (the apiserver's own
// validation) are refused.
func TestAPIServerRejectsBrokenObjects(t *testing.T) {
	c := kubetest.Env(t)
	a := newApplier(t, c)
	tests := []struct {
		name  string
		mount map[string]any
		want  string
	}{
		{"unknown field", map[string]any{"name": "logs", "mountPath": "/x", "readonly": true}, `volumeMounts[mountPath="/x"].readonly: field not declared in schema`},
		{"missing volume", map[string]any{"name": "absent", "mountPath": "/x"}, "volumeMounts[3].name: Not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := kubetest.UniqueName("chart-bad")
			c.CreateNamespace(t, ns, nil)
			r := render(t, map[string]any{"extraVolumeMounts": []any{tc.mount}}, kubetest.UniqueName("skiff"), ns)
			_, errs := a.tryApply(t, r, ns)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), "DaemonSet") || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("want one error, the DaemonSet's, saying %q; got %v", tc.want, errs)
			}
		})
	}
}

// TestClusterRoleIsEnoughAndNoMore applies the default chart, takes a token of its
// ServiceAccount, and checks with that token what the enrichment does (list and watch the pods of
// a node across namespaces, list, watch and get namespaces) is allowed, and that neighbouring
// access (secrets, config maps, nodes, writes) is refused with a Forbidden error naming the verb
// and resource.
func TestClusterRoleIsEnoughAndNoMore(t *testing.T) {
	c := kubetest.Env(t)
	ns := kubetest.UniqueName("chart-rbac")
	c.CreateNamespace(t, ns, map[string]string{"team": "logging"})
	r := render(t, map[string]any{}, kubetest.UniqueName("skiff"), ns)
	newApplier(t, c).apply(t, r, ns)
	sa := r.one(t, "ServiceAccount").GetName()
	cs, err := kubernetes.NewForConfig(c.RESTConfig(c.ServiceAccountToken(t, ns, sa)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	onNode := metav1.ListOptions{FieldSelector: "spec.nodeName=" + kubetest.NodeName}

	// RBAC reaches the authorizer's cache within moments: wait for the first allowed call.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cs.CoreV1().Pods("").List(ctx, onNode)
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("list pods on the node with the chart's token: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	allowed := []struct {
		what string
		call func() error
	}{
		{"list pods (all namespaces, node field selector)", func() error { _, err := cs.CoreV1().Pods("").List(ctx, onNode); return err }},
		{"watch pods", func() error { return watchOnce(cs.CoreV1().Pods("").Watch(ctx, onNode)) }},
		{"get pod", func() error { return notFoundIsAllowed(cs.CoreV1().Pods(ns).Get(ctx, "absent", metav1.GetOptions{})) }},
		{"list namespaces", func() error { _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); return err }},
		{"watch namespaces", func() error { return watchOnce(cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{})) }},
		{"get namespace", func() error { _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); return err }},
	}
	for _, a := range allowed {
		if err := a.call(); err != nil {
			t.Errorf("%s: %v", a.what, err)
		}
	}

	denied := []struct {
		verb, resource string
		call           func() error
	}{
		{"list", "secrets", func() error { _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"get", "configmaps", func() error {
			_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, r.one(t, "ConfigMap").GetName(), metav1.GetOptions{})
			return err
		}},
		{"list", "nodes", func() error { _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err }},
		{"list", "events", func() error { _, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"create", "pods", func() error {
			_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}, metav1.CreateOptions{})
			return err
		}},
		{"delete", "pods", func() error { return cs.CoreV1().Pods(ns).Delete(ctx, "anything", metav1.DeleteOptions{}) }},
		{"patch", "namespaces", func() error {
			_, err := cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"list", "daemonsets", func() error { _, err := cs.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"update", "daemonsets", func() error {
			_, err := cs.AppsV1().DaemonSets(ns).Update(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: r.daemonSet(t).Name}}, metav1.UpdateOptions{})
			return err
		}},
	}
	for _, d := range denied {
		err := d.call()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s %s: want Forbidden, got %v", d.verb, d.resource, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "cannot "+d.verb+" resource \""+d.resource+"\"") || !strings.Contains(msg, sa) {
			t.Errorf("%s %s: the Forbidden error does not say who and what: %v", d.verb, d.resource, err)
		}
	}
}

// watchOnce reports the error of opening a watch, and closes it.
func watchOnce(w interface{ Stop() }, err error) error {
	if err != nil {
		return err
	}
	w.Stop()
	return nil
}

// notFoundIsAllowed treats NotFound as success: the authorizer let the request through.
func notFoundIsAllowed(_ any, err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		return errors.New("found an object that should not exist")
	}
	return err
}
