// Package kubetest gives tests a real kube-apiserver (with etcd), built and run by
// scripts/kube.sh. When SKIFF_KUBE_DIR names the directory of a running instance (scripts/test.sh
// starts one for the whole run), Env uses it; otherwise the first caller in a test binary starts a
// private instance, building the binaries first if the cache lacks them (minutes, once per
// version: run `make kube` first, as a cold build outlasts go test's default 10m timeout), and
// Stop, called from TestMain, ends it. There is no fallback to a fake.
//
// Only the apiserver and etcd run: no controller-manager, scheduler or kubelet. Hence:
//   - CreateNamespace also creates the namespace's "default" ServiceAccount, which the
//     ServiceAccount admission plugin requires before it admits pods;
//   - pods stay Pending unless a test sets their status (MarkPodRunning);
//   - DeletePod deletes with grace period 0, since no kubelet confirms a graceful deletion;
//   - deleted namespaces stay Terminating forever, and the shared instance lives for the whole
//     run, so every test must use fresh names: UniqueName.
//
// StopAPIServer and StartAPIServer, for outage tests, work only on an instance of the test's own
// (Private): the shared instance serves tests of other packages running at the same time. A
// Private instance can also have flags of its own (WithAPIServerArgs: an audit policy, log and
// webhook, say) and users authenticated by static tokens (WithUsers).
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-logs/skiff/agent/kube/core"
	"github.com/skiff-logs/skiff/internal/kubetest/kubeobj"
)

// NodeName is the node CreatePod binds a pod to when its spec names none.
const NodeName = "skiff-test-node"

// Cluster is a running kube-apiserver. Its fields are read-only.
type Cluster struct {
	// Dir is the instance's directory (see scripts/kube.sh).
	Dir string
	// URL is the apiserver's base URL, https://127.0.0.1:PORT.
	URL string
	// AdminToken is a bearer token of user "admin" in group system:masters.
	AdminToken string
	// CAFile is the path of the PEM CA certificate that signed the serving certificate.
	CAFile string
	// AdminKubeconfig is the path of an admin kubeconfig (CA and token inline).
	AdminKubeconfig string
	// Config is the admin client configuration Client was made from.
	Config *rest.Config
	// Client is a ready admin clientset.
	Client *kubernetes.Clientset
	// Core is a ready admin client of core/v1, as skiff itself uses (kubeobj works through it).
	Core *core.Client
	// Tokens maps the name of each user added by WithUsers to its bearer token; empty for the
	// shared instance.
	Tokens map[string]string

	private bool
}

var (
	mu     sync.Mutex
	shared *Cluster
	ownDir string // the shared instance's directory when this process started it
)

// Env returns the shared kube-apiserver of this test binary, starting one if needed (see the
// package documentation). It fails tb when none can be had.
func Env(tb testing.TB) *Cluster {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		return shared
	}
	dir := os.Getenv("SKIFF_KUBE_DIR")
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-kube-")
		if err != nil {
			tb.Fatalf("kubetest: %v", err)
		}
		if err := runScript(nil, "start", d); err != nil {
			_ = os.RemoveAll(d)
			tb.Fatalf("kubetest: %v", err)
		}
		dir, ownDir = d, d
	}
	c, err := load(dir)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	shared = c
	return c
}

// Private starts a kube-apiserver and etcd of tb's own, stopped when tb ends, configured by opts
// (WithAPIServerArgs, WithUsers). Use it where a test stops the apiserver, needs an empty
// cluster or flags of its own; it costs a few seconds.
func Private(tb testing.TB, opts ...Option) *Cluster {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tokens := map[string]string{}
	var lines []string
	for _, u := range o.users {
		if strings.ContainsAny(u.Name, ",\"\n\r") || u.Name == "" || u.Name == "admin" {
			tb.Fatalf("kubetest: user name %q: want a fresh name without ',', '\"' or line breaks", u.Name)
		}
		for _, g := range u.Groups {
			if strings.ContainsAny(g, ",\"\n\r") || g == "" {
				tb.Fatalf("kubetest: group %q of user %s: want a name without ',', '\"' or line breaks", g, u.Name)
			}
		}
		if _, dup := tokens[u.Name]; dup {
			tb.Fatalf("kubetest: user %s given twice", u.Name)
		}
		var b [24]byte
		_, _ = rand.Read(b[:])
		tokens[u.Name] = hex.EncodeToString(b[:])
		lines = append(lines, tokens[u.Name]+","+u.Name+","+u.Name+`,"`+strings.Join(u.Groups, ",")+`"`)
	}
	for _, a := range o.args {
		if strings.ContainsAny(a, "\n\r") || a == "" {
			tb.Fatalf("kubetest: apiserver argument %q: want one non-empty line", a)
		}
	}
	dir := tb.TempDir()
	env := []string{
		"KUBE_APISERVER_EXTRA_ARGS=" + strings.Join(o.args, "\n"),
		"KUBE_EXTRA_TOKENS=" + strings.Join(lines, "\n"),
	}
	if err := runScript(env, "start", dir); err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	tb.Cleanup(func() {
		if err := runScript(nil, "stop", dir); err != nil {
			tb.Errorf("kubetest: %v", err)
		}
	})
	c, err := load(dir)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	c.private = true
	c.Tokens = tokens
	return c
}

// Option configures a Private cluster.
type Option func(*options)

type options struct {
	args  []string
	users []User
}

// WithAPIServerArgs adds kube-apiserver flags, one argument each ("--audit-policy-file=/p"),
// after skiff's defaults (a flag given again overrides a default). They are kept for
// StartAPIServer. Files they name must exist before Private is called and stay while the
// cluster runs.
func WithAPIServerArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// User is a user of a Private cluster's static token file: authenticated by a bearer token
// (Cluster.Tokens[Name]), uid equal to Name, member of Groups and of system:authenticated. The
// user may do nothing until RBAC allows it: bind it a role.
type User struct {
	Name   string
	Groups []string
}

// WithUsers adds users authenticated by bearer tokens that Private makes up.
func WithUsers(users ...User) Option {
	return func(o *options) { o.users = append(o.users, users...) }
}

// Stop stops the shared instance if this process started it. Call it from TestMain after m.Run.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	shared = nil
	if ownDir == "" {
		return
	}
	if err := runScript(nil, "stop", ownDir); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
	}
	_ = os.RemoveAll(ownDir)
	ownDir = ""
}

// load reads the files scripts/kube.sh start wrote in dir and makes an admin client.
func load(dir string) (*Cluster, error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("read kube instance: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	url, err := read("url")
	if err != nil {
		return nil, err
	}
	token, err := read("token")
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Dir:             dir,
		URL:             url,
		AdminToken:      token,
		CAFile:          filepath.Join(dir, "ca.crt"),
		AdminKubeconfig: filepath.Join(dir, "kubeconfig"),
	}
	c.Config = c.RESTConfig(token)
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("admin client for %s: %w", url, err)
	}
	c.Core, err = core.New(c.Config)
	if err != nil {
		return nil, fmt.Errorf("admin core/v1 client for %s: %w", url, err)
	}
	return c, nil
}

// RESTConfig returns a client configuration for this apiserver authenticating with token, with
// client-side throttling high enough not to slow tests down.
func (c *Cluster) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
}

// runScript runs scripts/kube.sh with args and the environment variables env ("NAME=value")
// added, tying any instance it starts to this process: a watchdog stops it should the process die
// without calling Stop (a test timeout, for one). The variables kube.sh start reads are emptied
// unless env sets them, so that none leaks in from the caller's environment.
func runScript(env []string, args ...string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "kube.sh"), args...)
	cmd.Env = append(os.Environ(), "SKIFF_KUBE_OWNER="+strconv.Itoa(os.Getpid()), "KUBE_APISERVER_EXTRA_ARGS=", "KUBE_EXTRA_TOKENS=")
	// exec uses the last value of a duplicated key: env overrides the empties.
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout = os.Stderr // the URL it prints; everything else goes to stderr anyway
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/kube.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "kube.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("scripts/kube.sh not found above the working directory")
		}
		dir = parent
	}
}

var uniqueSeq atomic.Uint64

// UniqueName returns prefix followed by a suffix unique across runs and calls, a valid namespace
// or object name when prefix is a short lowercase DNS label.
func UniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s%d", prefix, hex.EncodeToString(b[:]), uniqueSeq.Add(1))
}

func ctx(tb testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return c
}

// CreateNamespace creates namespace name with labels and its "default" ServiceAccount. The
// namespace is never deleted (it could not finish terminating); name must be fresh: UniqueName.
func (c *Cluster) CreateNamespace(tb testing.TB, name string, labels map[string]string) *corev1.Namespace {
	tb.Helper()
	ns := &corev1.Namespace{}
	if err := kubeobj.CreateNamespace(ctx(tb), c.Core, name, labels, ns); err != nil {
		tb.Fatal(err)
	}
	return ns
}

func (c *Cluster) ensureServiceAccount(tb testing.TB, ns, name string) {
	tb.Helper()
	if err := kubeobj.EnsureServiceAccount(ctx(tb), c.Core, ns, name); err != nil {
		tb.Fatal(err)
	}
}

// CreatePod creates pod in namespace ns, bound to NodeName unless its spec names a node. Its
// containers need a name and an image; nothing pulls or runs them.
func (c *Cluster) CreatePod(tb testing.TB, ns string, pod *corev1.Pod) *corev1.Pod {
	tb.Helper()
	p := pod.DeepCopy()
	p.Namespace = ns
	if p.Spec.NodeName == "" {
		p.Spec.NodeName = NodeName
	}
	created := &corev1.Pod{}
	if err := kubeobj.CreatePod(ctx(tb), c.Core, ns, p, created); err != nil {
		tb.Fatal(err)
	}
	return created
}

// ContainerID returns the ID MarkPodRunning gives a container: 64 hex digits derived from the
// namespace, pod and container names, as a runtime would put in a log file name.
func ContainerID(ns, pod, container string) string { return kubeobj.ContainerID(ns, pod, container) }

// MarkPodRunning sets what a kubelet would report for a started pod: phase Running, podIP ip,
// init containers terminated with exit code 0 and containers running, each with container ID
// "containerd://"+ContainerID(ns, name, container). It returns the updated pod.
func (c *Cluster) MarkPodRunning(tb testing.TB, ns, name, ip string) *corev1.Pod {
	tb.Helper()
	updated := &corev1.Pod{}
	if err := kubeobj.MarkPodRunning(ctx(tb), c.Core, ns, name, ip, updated); err != nil {
		tb.Fatal(err)
	}
	return updated
}

// DeletePod deletes pod ns/name at once (grace period 0: no kubelet would confirm a graceful
// deletion). A pod already gone is not an error.
func (c *Cluster) DeletePod(tb testing.TB, ns, name string) {
	tb.Helper()
	if err := kubeobj.DeletePod(ctx(tb), c.Core, ns, name); err != nil {
		tb.Fatal(err)
	}
}

// ServiceAccountToken returns a bearer token (valid 24h) for ServiceAccount ns/sa from the
// TokenRequest API, creating the ServiceAccount if it does not exist.
func (c *Cluster) ServiceAccountToken(tb testing.TB, ns, sa string) string {
	tb.Helper()
	c.ensureServiceAccount(tb, ns, sa)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx(tb), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(24 * 3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("token for service account %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// BindClusterRole binds ClusterRole role to ServiceAccount ns/sa with a ClusterRoleBinding of a
// fresh name, which it returns. RBAC takes effect within moments, not at once: poll.
func (c *Cluster) BindClusterRole(tb testing.TB, role, ns, sa string) string {
	tb.Helper()
	name := UniqueName("skiff-test")
	_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx(tb), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("bind cluster role %s to %s/%s: %v", role, ns, sa, err)
	}
	return name
}

// Kubeconfig writes a kubeconfig for this apiserver authenticating with token into a file in
// tb.TempDir() and returns its path.
func (c *Cluster) Kubeconfig(tb testing.TB, token string) string {
	tb.Helper()
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		tb.Fatalf("kubeconfig: %v", err)
	}
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: skiff-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: skiff-test
  context:
    cluster: skiff-test
    user: user
current-context: skiff-test
`, c.URL, base64.StdEncoding.EncodeToString(ca), token)
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatalf("kubeconfig: %v", err)
	}
	return path
}

// StopAPIServer stops the apiserver (etcd and its data stay) of a Private cluster; it fails tb on
// the shared one.
func (c *Cluster) StopAPIServer(tb testing.TB) {
	tb.Helper()
	c.mustBePrivate(tb, "StopAPIServer")
	if err := runScript(nil, "stop-apiserver", c.Dir); err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
}

// StartAPIServer starts the apiserver of a Private cluster again, on the same URL with the same
// etcd, credentials, CA and extra flags, and returns once it is ready; it fails tb on the shared one.
func (c *Cluster) StartAPIServer(tb testing.TB) {
	tb.Helper()
	c.mustBePrivate(tb, "StartAPIServer")
	if err := runScript(nil, "start-apiserver", c.Dir); err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
}

func (c *Cluster) mustBePrivate(tb testing.TB, what string) {
	tb.Helper()
	if !c.private {
		tb.Fatalf("kubetest: %s on the shared apiserver would break concurrent tests; use kubetest.Private", what)
	}
}
