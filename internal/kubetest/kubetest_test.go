package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// clientFromKubeconfig loads path as a kubectl user would, proving the file is usable.
func clientFromKubeconfig(t *testing.T, path string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("load kubeconfig %s: %v", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "web"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "setup", Image: "busybox:1.37"}},
			Containers:     []corev1.Container{{Name: "web", Image: "nginx:1.29"}},
		},
	}
}

func TestAdminKubeconfigAndVersion(t *testing.T) {
	c := Env(t)
	v, err := clientFromKubeconfig(t, c.AdminKubeconfig).Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version %q, want v1.37.2 (stamped by scripts/kube.sh)", v.GitVersion)
	}
}

func TestPodLifecycle(t *testing.T) {
	c := Env(t)
	ns := UniqueName("kubetest")
	c.CreateNamespace(t, ns, map[string]string{"team": "a"})
	created := c.CreatePod(t, ns, testPod("web-1"))
	if created.Spec.NodeName != NodeName {
		t.Errorf("nodeName %q, want %q", created.Spec.NodeName, NodeName)
	}
	if created.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName %q, want default (admission needs the default ServiceAccount)", created.Spec.ServiceAccountName)
	}

	running := c.MarkPodRunning(t, ns, "web-1", "10.244.0.7")
	if running.Status.Phase != corev1.PodRunning || running.Status.PodIP != "10.244.0.7" {
		t.Errorf("status phase %s ip %s, want Running 10.244.0.7", running.Status.Phase, running.Status.PodIP)
	}
	checks := []struct {
		name     string
		statuses []corev1.ContainerStatus
		want     string
	}{
		{"init", running.Status.InitContainerStatuses, "setup"},
		{"main", running.Status.ContainerStatuses, "web"},
	}
	for _, tc := range checks {
		if len(tc.statuses) != 1 {
			t.Fatalf("%s: %d statuses, want 1", tc.name, len(tc.statuses))
		}
		if got, want := tc.statuses[0].ContainerID, "containerd://"+ContainerID(ns, "web-1", tc.want); got != want {
			t.Errorf("%s: container ID %q, want %q", tc.name, got, want)
		}
	}

	c.DeletePod(t, ns, "web-1")
	_, err := c.Client.CoreV1().Pods(ns).Get(context.Background(), "web-1", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("after DeletePod, get: %v, want NotFound (grace period 0)", err)
	}
	c.DeletePod(t, ns, "web-1") // already gone: not an error
}

// TestRBACLimitedServiceAccount proves what the chart's least-privilege tests rely on: a
// ServiceAccount token bound to a ClusterRole may do exactly what the role allows.
func TestRBACLimitedServiceAccount(t *testing.T) {
	c := Env(t)
	bg := context.Background()
	ns := UniqueName("kubetest")
	c.CreateNamespace(t, ns, map[string]string{"team": "b"})
	c.CreatePod(t, ns, testPod("web-1"))

	role := UniqueName("skiff-reader")
	_, err := c.Client.RbacV1().ClusterRoles().Create(bg, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"pods", "namespaces"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := c.ServiceAccountToken(t, ns, "reader")
	cs := clientFromKubeconfig(t, c.Kubeconfig(t, token))

	// Before the binding, the token authenticates but may not list.
	_, err = cs.CoreV1().Pods(ns).List(bg, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods before the binding: %v, want Forbidden", err)
	}
	c.BindClusterRole(t, role, ns, "reader")

	var pods *corev1.PodList
	deadline := time.Now().Add(30 * time.Second)
	for {
		pods, err = cs.CoreV1().Pods("").List(bg, metav1.ListOptions{FieldSelector: "spec.nodeName=" + NodeName})
		if err == nil || !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("list pods on node with the bound role: %v", err)
	}
	found := false
	for _, p := range pods.Items {
		found = found || (p.Namespace == ns && p.Name == "web-1")
	}
	if !found {
		t.Errorf("pod %s/web-1 not in the node's %d pods", ns, len(pods.Items))
	}
	got, err := cs.CoreV1().Namespaces().Get(bg, ns, metav1.GetOptions{})
	if err != nil || got.Labels["team"] != "b" {
		t.Errorf("get namespace with the bound role: labels %v, err %v", got.GetLabels(), err)
	}

	forbidden := []struct {
		name string
		do   func() error
	}{
		{"delete pod", func() error { return cs.CoreV1().Pods(ns).Delete(bg, "web-1", metav1.DeleteOptions{}) }},
		{"create pod", func() error {
			_, err := cs.CoreV1().Pods(ns).Create(bg, testPod("web-2"), metav1.CreateOptions{})
			return err
		}},
		{"list secrets", func() error { _, err := cs.CoreV1().Secrets(ns).List(bg, metav1.ListOptions{}); return err }},
		{"delete namespace", func() error { return cs.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{}) }},
	}
	for _, tc := range forbidden {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			var status apierrors.APIStatus
			if !errors.As(err, &status) || status.Status().Code != http.StatusForbidden {
				t.Fatalf("err %v, want a 403 status", err)
			}
		})
	}
	if _, err := c.Client.CoreV1().Pods(ns).Get(bg, "web-1", metav1.GetOptions{}); err != nil {
		t.Errorf("pod gone after a refused delete: %v", err)
	}
}

// TestAPIServerOutage stops and restarts a private apiserver: same URL, data kept in etcd, and
// clients made before the outage, including a ServiceAccount token's, work again. The cluster has
// extra flags (an audit log) and an extra user, both kept across the restart.
func TestAPIServerOutage(t *testing.T) {
	dir := t.TempDir()
	policy, auditLog := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "audit", "audit.log")
	if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Private(t,
		WithAPIServerArgs("--audit-policy-file="+policy, "--audit-log-path="+auditLog),
		WithUsers(User{Name: "alice", Groups: []string{"dev", "team a"}}))
	bg := context.Background()
	ns := UniqueName("kubetest")
	c.CreateNamespace(t, ns, nil)
	token := c.ServiceAccountToken(t, ns, "reader")
	sa := clientFromKubeconfig(t, c.Kubeconfig(t, token))
	alice := clientFromKubeconfig(t, c.Kubeconfig(t, c.Tokens["alice"]))

	c.StopAPIServer(t)
	if _, err := c.Client.CoreV1().Namespaces().Get(bg, ns, metav1.GetOptions{}); err == nil {
		t.Fatal("get namespace succeeded with the apiserver stopped")
	}
	c.StartAPIServer(t)

	if _, err := c.Client.CoreV1().Namespaces().Get(bg, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace after the restart: %v", err)
	}
	// The token still authenticates (same signing key): the request is refused by RBAC, not 401.
	_, err := sa.CoreV1().Pods(ns).List(bg, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods with the old token after the restart: %v, want Forbidden", err)
	}

	review, err := alice.AuthenticationV1().SelfSubjectReviews().Create(bg, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("alice's self subject review: %v", err)
	}
	if u := review.Status.UserInfo; u.Username != "alice" || !slices.Equal(u.Groups, []string{"dev", "team a", "system:authenticated"}) {
		t.Errorf("alice is %q in %q, want alice in [dev, team a, system:authenticated]", u.Username, u.Groups)
	}
	// The audit flags were kept by the restart: alice's refused request is in the log.
	if _, err := alice.CoreV1().Secrets(ns).List(bg, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("alice lists secrets: %v, want Forbidden (no role bound)", err)
	}
	b, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatalf("audit log of the restarted apiserver: %v", err)
	}
	want := `"requestURI":"/api/v1/namespaces/` + ns + `/secrets"`
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		found = found || strings.Contains(line, want) && strings.Contains(line, `"username":"alice"`)
	}
	if !found {
		t.Errorf("no audit event of alice listing the secrets of %s in %s", ns, auditLog)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the goroutine.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestSharedRefusesOutage(t *testing.T) {
	c := Env(t)
	for _, op := range []func(testing.TB){c.StopAPIServer, c.StartAPIServer} {
		r := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); op(r) }()
		<-done
		if !strings.Contains(r.msg, "kubetest.Private") {
			t.Errorf("on the shared apiserver: message %q, want a refusal naming kubetest.Private", r.msg)
		}
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("shared apiserver after the refusals: %v", err)
	}
}
