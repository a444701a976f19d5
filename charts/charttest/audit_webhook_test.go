package charttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/jsonpath"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/internal/testpki"
	"github.com/skiff-logs/skiff/outputs/file"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
	"github.com/skiff-logs/skiff/parsers"
	"github.com/skiff-logs/skiff/parsers/audit"
)

// kubeconfigKey is the ConfigMap key of the apiserver's --audit-webhook-config-file.
const kubeconfigKey = "audit-webhook-kubeconfig.yaml"

// webhookSets returns the value sets that enable the audit webhook; there must be some.
func webhookSets(t *testing.T) []valueSet {
	t.Helper()
	var out []valueSet
	for _, vs := range valueSets(t) {
		if on, _ := dig(vs.values, "auditWebhook")["enabled"].(bool); on {
			out = append(out, vs)
		}
	}
	if len(out) == 0 {
		t.Fatal("no value set in testdata/values enables auditWebhook")
	}
	return out
}

// webhookRender is the audit webhook's part of a rendered chart, decoded.
type webhookRender struct {
	rendered
	dep        appsv1.Deployment
	svc        corev1.Service
	kubeconfig string // the apiserver's webhook kubeconfig
	text       string // the Deployment's skiff.yaml
}

func (w *webhookRender) pod() *corev1.PodSpec { return &w.dep.Spec.Template.Spec }

func (w *webhookRender) container(t *testing.T) *corev1.Container {
	t.Helper()
	return containerNamed(t, w.pod(), "skiff")
}

// renderWebhook renders vals and picks out the webhook's Deployment, its Service (the Service
// of the Deployment's name), the kubeconfig ConfigMap (<Deployment>-kubeconfig) and its config.
func renderWebhook(t *testing.T, vals map[string]any, release, ns string) *webhookRender {
	t.Helper()
	w := &webhookRender{rendered: render(t, vals, release, ns)}
	into(t, w.one(t, "Deployment"), &w.dep)
	var found bool
	for _, o := range w.all("Service") {
		if o.GetName() == w.dep.Name {
			into(t, o, &w.svc)
			found = true
		}
	}
	if !found {
		t.Fatalf("no Service named like Deployment %s", w.dep.Name)
	}
	for _, o := range w.all("ConfigMap") {
		if o.GetName() == w.dep.Name+"-kubeconfig" {
			var cm corev1.ConfigMap
			into(t, o, &cm)
			w.kubeconfig = cm.Data[kubeconfigKey]
		}
	}
	if w.kubeconfig == "" {
		t.Fatalf("no ConfigMap %s-kubeconfig with %s", w.dep.Name, kubeconfigKey)
	}
	w.text = mountedConfig(t, w.rendered, w.pod())
	return w
}

// webhookValues returns vs's auditWebhook values with the chart's defaults for what vs leaves out.
type webhookValues struct {
	TLS      struct{ SecretName string }
	ClientCA struct{ SecretName, Key string }
	Token    struct{ SecretName, Key string }
	CABundle string
	Service  struct {
		ClusterIP string
		Port      int32
	}
	Persistence struct {
		Enabled       bool
		ExistingClaim string
	}
	Kubeconfig struct{ Dir, Server string }
}

func webhookValuesOf(t *testing.T, vals map[string]any) webhookValues {
	t.Helper()
	top, err := toRenderValues(loadChart(t), vals)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(top["Values"])
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ AuditWebhook webhookValues }
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.AuditWebhook
}

// toRenderValues merges vals with the chart's defaults and validates them against the schema,
// as helm install does, for the golden release and namespace.
func toRenderValues(c *chart.Chart, vals map[string]any) (chartutil.Values, error) {
	return chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{
		Name: goldenRelease, Namespace: goldenNamespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
}

// parseWebhookConfig stands the Deployment's mounted Secrets up under root with content and
// parses the rendered configuration as skiff does, with every Secret file moved under root.
func parseWebhookConfig(t *testing.T, w *webhookRender, root string, content func(secretFile) string) (*config.Config, map[string]secretFile) {
	t.Helper()
	mounted := secretFiles(w.pod(), w.container(t))
	local, _ := standUpSecrets(t, root, w.text, mounted, content)
	cfg, err := config.Parse([]byte(local))
	if err != nil {
		t.Fatalf("skiff rejects the webhook's rendered configuration: %v\n%s", err, w.text)
	}
	return cfg, mounted
}

// theWebhookInput returns the only input of cfg, which must be of type audit_webhook.
func theWebhookInput(t *testing.T, cfg *config.Config) config.Input {
	t.Helper()
	if len(cfg.Inputs) != 1 || cfg.Inputs[0].Type != config.InputAuditWebhook {
		t.Fatalf("inputs %+v, want exactly one of type audit_webhook", cfg.Inputs)
	}
	return cfg.Inputs[0]
}

func portNamed(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %s: %s", c.Name, name, js(c.Ports))
	return 0
}

func portOf(t *testing.T, listen string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("listen %q: %v", listen, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// TestAuditWebhookConfigIsValid: the webhook Deployment's configuration passes skiff's own
// validation; its TLS key pair, client CA and token files are the keys of the Secrets the values
// name; its elasticsearch outputs get the elasticsearch section's settings; data_dir is the
// spool volume, written to; the container ports are the listen ports.
func TestAuditWebhookConfigIsValid(t *testing.T) {
	for _, vs := range webhookSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			w := renderWebhook(t, vs.values, goldenRelease, goldenNamespace)
			wv := webhookValuesOf(t, vs.values)
			root := t.TempDir()
			cfg, mounted := parseWebhookConfig(t, w, root, secretOrigin)
			in := theWebhookInput(t, cfg)
			c := w.container(t)

			unroot := func(p string) string { return strings.TrimPrefix(p, root) }
			wantFiles := []struct {
				key, path string
				want      secretFile
			}{
				{"tls_cert_file", in.TLSCertFile, secretFile{wv.TLS.SecretName, "tls.crt"}},
				{"tls_key_file", in.TLSKeyFile, secretFile{wv.TLS.SecretName, "tls.key"}},
				{"client_ca_file", in.ClientCAFile, secretFile{wv.ClientCA.SecretName, wv.ClientCA.Key}},
				{"token_file", in.TokenFile, secretFile{wv.Token.SecretName, wv.Token.Key}},
			}
			for _, f := range wantFiles {
				if f.want.secret == "" {
					if f.path != "" {
						t.Errorf("%s: %s, but no Secret is named for it", f.key, f.path)
					}
					continue
				}
				if got, ok := mounted[unroot(f.path)]; !ok || got != f.want {
					t.Errorf("%s: %s holds %+v, want Secret %s key %s", f.key, f.path, got, f.want.secret, f.want.key)
				}
			}
			if in.TLSDisable || in.AuthDisable {
				t.Error("the chart's webhook must not disable TLS or authentication")
			}
			if cfg.Kubernetes.Enabled {
				t.Error("kubernetes enrichment is on, but the webhook's pod has no API access")
			}
			esSecrets := dig(vs.values, "elasticsearch", "apiKeySecret")["name"] != nil
			for _, o := range cfg.Outputs {
				if o.Type != "elasticsearch" {
					continue
				}
				if len(o.Hosts) == 0 {
					t.Errorf("outputs %s: no hosts", o.Name)
				}
				if esSecrets && !strings.HasPrefix(o.APIKey, "from ") {
					t.Errorf("outputs %s: api key %q is not the mounted Secret's", o.Name, o.APIKey)
				}
			}

			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			data, ok := mounts[cfg.DataDir]
			if !ok || data.ReadOnly || data.Name != "spool" {
				t.Errorf("data_dir %s is not the writable spool mount: %+v", cfg.DataDir, data)
			}
			for _, o := range cfg.Outputs {
				if o.Type == "file" && !underWritableMount(o.Path, mounts) {
					t.Errorf("outputs %s: %s lies under no writable mount", o.Name, o.Path)
				}
			}
			var spool *corev1.Volume
			for i := range w.pod().Volumes {
				if v := &w.pod().Volumes[i]; v.Name == "spool" {
					spool = v
				}
			}
			switch {
			case spool == nil:
				t.Fatal("no spool volume")
			case wv.Persistence.Enabled:
				pvcs := w.all("PersistentVolumeClaim")
				if spool.PersistentVolumeClaim == nil || len(pvcs) != 1 || spool.PersistentVolumeClaim.ClaimName != pvcs[0].GetName() {
					t.Errorf("spool volume %s, want the rendered PersistentVolumeClaim", js(spool))
				}
			default:
				if spool.EmptyDir == nil || len(w.all("PersistentVolumeClaim")) != 0 {
					t.Errorf("persistence off: spool volume %s, want an emptyDir and no claim", js(spool))
				}
			}

			if got, want := portNamed(t, c, "webhook"), portOf(t, in.Listen); got != want {
				t.Errorf("container port webhook %d, want the input's listen port %d", got, want)
			}
			if got, want := portNamed(t, c, "http"), portOf(t, cfg.HTTP.Listen); got != want {
				t.Errorf("container port http %d, want http.listen's %d", got, want)
			}
		})
	}
}

// underWritableMount reports whether the fixed directory part of a path template (up to its
// first placeholder) lies under a writable mount.
func underWritableMount(tmpl string, mounts map[string]corev1.VolumeMount) bool {
	fixed := tmpl[:strings.IndexAny(tmpl+"{", "{%")]
	for p, m := range mounts {
		if !m.ReadOnly && strings.HasPrefix(fixed, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

// TestAuditWebhookPod pins the webhook pod: one replica replaced by Recreate (one writer per
// spool), non-root with fsGroup and no privileges, no host access, no ServiceAccount token,
// Secrets read-only, the probes, labels that keep it apart from the DaemonSet and its metrics
// Service, the Service in front of the webhook port, and a checksum that restarts it on a
// configuration change.
func TestAuditWebhookPod(t *testing.T) {
	for _, vs := range webhookSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			w := renderWebhook(t, vs.values, goldenRelease, goldenNamespace)
			wv := webhookValuesOf(t, vs.values)
			pod, c := w.pod(), w.container(t)

			if w.dep.Spec.Replicas == nil || *w.dep.Spec.Replicas != 1 || w.dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("replicas %v strategy %s, want 1 and Recreate", js(w.dep.Spec.Replicas), w.dep.Spec.Strategy.Type)
			}
			wantPod := &corev1.PodSecurityContext{
				RunAsNonRoot:        new(true),
				RunAsUser:           new(int64(65532)),
				RunAsGroup:          new(int64(65532)),
				FSGroup:             new(int64(65532)),
				FSGroupChangePolicy: new(corev1.FSGroupChangeOnRootMismatch),
				SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}
			expectSecurity(t, pod, c, wantPod, &corev1.SecurityContext{
				ReadOnlyRootFilesystem:   new(true),
				AllowPrivilegeEscalation: new(false),
				Privileged:               new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			})
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the ServiceAccount token is mounted; the webhook uses no API")
			}
			if pod.HostNetwork || pod.HostPID || pod.HostIPC {
				t.Error("pod shares a host namespace")
			}
			secretVolumes := map[string]bool{}
			for _, v := range pod.Volumes {
				if v.HostPath != nil {
					t.Errorf("volume %s is a hostPath", v.Name)
				}
				if v.Projected != nil {
					secretVolumes[v.Name] = true
					if v.Projected.DefaultMode == nil || *v.Projected.DefaultMode != 0o440 {
						t.Errorf("volume %s: mode %v, want 0440 (group fsGroup reads it)", v.Name, js(v.Projected.DefaultMode))
					}
				}
			}
			for _, m := range c.VolumeMounts {
				if secretVolumes[m.Name] && !m.ReadOnly {
					t.Errorf("Secrets of volume %s mounted writable", m.Name)
				}
			}
			for probe, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != probe || p.HTTPGet.Port != intstr.FromString("http") {
					t.Errorf("probe %s, want GET %s on port http", js(p), probe)
				}
			}
			if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("resources %s: want a memory request and limit", js(c.Resources))
			}

			podLabels := labels.Set(w.dep.Spec.Template.Labels)
			if sel := labels.SelectorFromSet(w.svc.Spec.Selector); len(w.svc.Spec.Selector) == 0 || !sel.Matches(podLabels) {
				t.Errorf("Service selector %v does not select the webhook's pods %v", w.svc.Spec.Selector, podLabels)
			}
			ds := w.daemonSet(t)
			if labels.SelectorFromSet(ds.Spec.Selector.MatchLabels).Matches(podLabels) {
				t.Errorf("the DaemonSet's selector %v also selects the webhook's pods", ds.Spec.Selector.MatchLabels)
			}
			if labels.SelectorFromSet(w.dep.Spec.Selector.MatchLabels).Matches(labels.Set(ds.Spec.Template.Labels)) {
				t.Errorf("the webhook's selector %v also selects the DaemonSet's pods", w.dep.Spec.Selector.MatchLabels)
			}
			for _, o := range w.all("Service") {
				var s corev1.Service
				into(t, o, &s)
				if s.Name != w.svc.Name && labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
					t.Errorf("Service %s selects the webhook's pods", s.Name)
				}
			}

			if w.svc.Spec.Type != corev1.ServiceTypeClusterIP || w.svc.Spec.ClusterIP != wv.Service.ClusterIP {
				t.Errorf("Service type %s clusterIP %q, want ClusterIP %q", w.svc.Spec.Type, w.svc.Spec.ClusterIP, wv.Service.ClusterIP)
			}
			if len(w.svc.Spec.Ports) != 1 || w.svc.Spec.Ports[0].Port != wv.Service.Port || w.svc.Spec.Ports[0].TargetPort != intstr.FromString("webhook") {
				t.Errorf("Service ports %s, want %d → the container's port webhook", js(w.svc.Spec.Ports), wv.Service.Port)
			}
			portNamed(t, c, "webhook")

			sum := sha256.Sum256([]byte(w.files["skiff/templates/audit-webhook-configmap.yaml"]))
			if got := w.dep.Spec.Template.Annotations["checksum/config"]; got != hex.EncodeToString(sum[:]) {
				t.Errorf("checksum/config %s, want the webhook ConfigMap's sha256 %x", got, sum)
			}
		})
	}
}

// notesCommand finds in NOTES the command that saves the kubeconfig: ConfigMap, jsonpath and
// the file written.
var notesCommand = regexp.MustCompile(`kubectl -n (\S+) get configmap (\S+) -o jsonpath='([^']+)' > (\S+)`)

// TestAuditWebhookKubeconfig: the kubeconfig loads with client-go's clientcmd (as the apiserver
// loads --audit-webhook-config-file), and its server is the Service: the clusterIP (or the
// Service's DNS name), the Service's port, the webhook input's url_path; the serving CA is the
// caBundle (or the file the README names); the user presents a client certificate exactly when
// the webhook requires one and a token file exactly when it requires a token. The NOTES command
// extracts exactly this file, to the path its --audit-webhook-config-file flag names.
func TestAuditWebhookKubeconfig(t *testing.T) {
	for _, vs := range webhookSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			// clientcmd reads the files the kubeconfig names: put them in a directory of the
			// test's, standing in for the control-plane node's kubeconfig.dir.
			nodeDir := t.TempDir()
			for _, f := range []string{"skiff-ca.crt", "skiff-client.crt", "skiff-client.key", "skiff-token"} {
				if err := os.WriteFile(filepath.Join(nodeDir, f), []byte("stand-in\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			vals := withValue(t, vs.values, nodeDir, "auditWebhook", "kubeconfig", "dir")
			w := renderWebhook(t, vals, goldenRelease, goldenNamespace)
			wv := webhookValuesOf(t, vals)
			cfg, _ := parseWebhookConfig(t, w, t.TempDir(), secretOrigin)
			in := theWebhookInput(t, cfg)

			kc, err := clientcmd.Load([]byte(w.kubeconfig))
			if err != nil {
				t.Fatalf("clientcmd: %v\n%s", err, w.kubeconfig)
			}
			rc, err := clientcmd.NewDefaultClientConfig(*kc, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				t.Fatalf("clientcmd: %v\n%s", err, w.kubeconfig)
			}
			u, err := url.Parse(rc.Host)
			if err != nil {
				t.Fatal(err)
			}
			wantHost := w.svc.Name + "." + goldenNamespace + ".svc"
			if wv.Service.ClusterIP != "" {
				wantHost = w.svc.Spec.ClusterIP
			}
			if u.Scheme != "https" || u.Hostname() != wantHost || u.Port() != strconv.Itoa(int(w.svc.Spec.Ports[0].Port)) || u.Path != in.URLPath {
				t.Errorf("server %s, want https://%s:%d%s (the Service, the input's url_path)", rc.Host, wantHost, w.svc.Spec.Ports[0].Port, in.URLPath)
			}

			dir := strings.TrimSuffix(wv.Kubeconfig.Dir, "/")
			if wv.CABundle != "" {
				if !bytes.Equal(rc.CAData, []byte(wv.CABundle)) || rc.CAFile != "" {
					t.Errorf("certificate-authority-data %q, want auditWebhook.caBundle", rc.CAData)
				}
				if _, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: rc.CAData}}); err != nil {
					t.Errorf("the CA bundle is not usable: %v", err)
				}
			} else if rc.CAFile != dir+"/skiff-ca.crt" || len(rc.CAData) != 0 {
				t.Errorf("certificate-authority %q, want %s/skiff-ca.crt", rc.CAFile, dir)
			}
			wantCert, wantKey, wantToken := "", "", ""
			if in.ClientCAFile != "" {
				wantCert, wantKey = dir+"/skiff-client.crt", dir+"/skiff-client.key"
			}
			if in.TokenFile != "" {
				wantToken = dir + "/skiff-token"
			}
			if rc.CertFile != wantCert || rc.KeyFile != wantKey || rc.BearerTokenFile != wantToken {
				t.Errorf("user: client-certificate %q client-key %q tokenFile %q; want %q %q %q",
					rc.CertFile, rc.KeyFile, rc.BearerTokenFile, wantCert, wantKey, wantToken)
			}
			// No secret in a ConfigMap: the token is read from the node's file (clientcmd
			// filled BearerToken from it), never written inline.
			for name, ai := range kc.AuthInfos {
				if ai.Token != "" || len(ai.ClientKeyData) != 0 {
					t.Errorf("user %s carries a token or key inline", name)
				}
			}
			if rc.BearerTokenFile != "" && strings.TrimSpace(rc.BearerToken) != "stand-in" {
				t.Errorf("token %q, want the content of the token file", rc.BearerToken)
			}

			notes := w.files["skiff/templates/NOTES.txt"]
			m := notesCommand.FindStringSubmatch(notes)
			if m == nil {
				t.Fatalf("NOTES has no command saving the kubeconfig:\n%s", notes)
			}
			if m[1] != goldenNamespace || m[2] != w.dep.Name+"-kubeconfig" {
				t.Errorf("NOTES reads configmap %s/%s, want %s/%s-kubeconfig", m[1], m[2], goldenNamespace, w.dep.Name)
			}
			var cmObj any
			for _, o := range w.all("ConfigMap") {
				if o.GetName() == m[2] {
					cmObj = o.Object
				}
			}
			jp := jsonpath.New("notes")
			if err := jp.Parse(m[3]); err != nil {
				t.Fatalf("NOTES jsonpath %s: %v", m[3], err)
			}
			var got bytes.Buffer
			if err := jp.Execute(&got, cmObj); err != nil || got.String() != w.kubeconfig {
				t.Errorf("NOTES jsonpath %s yields %q (%v), want the kubeconfig", m[3], got.String(), err)
			}
			for _, flag := range []string{"--audit-webhook-config-file=" + m[4], "--audit-policy-file=", "--audit-webhook-batch-max-wait="} {
				if !strings.Contains(notes, flag) {
					t.Errorf("NOTES does not tell the apiserver flag %s", flag)
				}
			}
			if m[4] != dir+"/audit-webhook-kubeconfig.yaml" {
				t.Errorf("NOTES saves the kubeconfig to %s, want it in kubeconfig.dir %s", m[4], dir)
			}
		})
	}
}

// TestAuditWebhookCABundleForms: caBundle may be PEM or PEM already base64-encoded (the form of
// other Kubernetes caBundle fields), with or without line breaks; the kubeconfig is the same.
func TestAuditWebhookCABundleForms(t *testing.T) {
	vs := webhookSet(t, "audit-webhook")
	pem := webhookValuesOf(t, vs.values).CABundle
	if pem == "" {
		t.Fatalf("value set %s has no caBundle", vs.name)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(pem))
	wrapped := regexp.MustCompile(`.{1,64}`).ReplaceAllString(b64, "$0\n")
	want := renderWebhook(t, vs.values, goldenRelease, goldenNamespace).kubeconfig
	for name, bundle := range map[string]string{"base64": b64, "base64 with line breaks": wrapped} {
		vals := withValue(t, vs.values, bundle, "auditWebhook", "caBundle")
		if got := renderWebhook(t, vals, goldenRelease, goldenNamespace).kubeconfig; got != want {
			t.Errorf("%s: kubeconfig differs from the PEM one:\n%s", name, lineDiff(want, got))
		}
	}
}

// webhookSet returns the value set named name, which must enable the audit webhook.
func webhookSet(t *testing.T, name string) valueSet {
	t.Helper()
	for _, vs := range webhookSets(t) {
		if vs.name == name {
			return vs
		}
	}
	t.Fatalf("no value set %s enabling auditWebhook", name)
	return valueSet{}
}

// withValue returns a deep copy of vals with the value at path set to v.
func withValue(t *testing.T, vals map[string]any, v any, path ...string) map[string]any {
	t.Helper()
	raw, err := json.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	m := out
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
	return out
}

// TestAuditWebhookRenderErrors: a webhook that skiff would refuse, or that the chart cannot
// point the apiserver at, fails the install with a message naming the value to set.
func TestAuditWebhookRenderErrors(t *testing.T) {
	base := map[string]any{"auditWebhook": map[string]any{
		"enabled": true,
		"tls":     map[string]any{"secretName": "tls"},
		"token":   map[string]any{"secretName": "token"},
	}}
	input := func(name string) map[string]any {
		return map[string]any{"name": name, "type": "audit_webhook", "listen": ":8443"}
	}
	tests := []struct {
		name string
		path []string
		v    any
		want string
	}{
		{"no TLS Secret", []string{"auditWebhook", "tls", "secretName"}, "", "auditWebhook.tls.secretName"},
		{"no client authentication", []string{"auditWebhook", "token", "secretName"}, "", "auditWebhook.clientCA.secretName or auditWebhook.token.secretName"},
		{"two webhook inputs", []string{"auditWebhook", "config", "inputs"}, []any{input("a"), input("b")}, "exactly one input of type audit_webhook, found 2"},
		{"no webhook input", []string{"auditWebhook", "config", "inputs"}, []any{map[string]any{"name": "c", "type": "containers", "paths": []any{"/x/*.log"}}}, "found 0"},
		{"enrichment", []string{"auditWebhook", "config", "kubernetes"}, map[string]any{"enabled": true}, "auditWebhook.config.kubernetes.enabled"},
	}
	c := loadChart(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vals := withValue(t, base, tc.v, tc.path...)
			top, err := toRenderValues(c, vals)
			if err != nil {
				t.Fatalf("values: %v", err)
			}
			_, err = engine.Render(c, top)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// The base itself renders: the failures above come from the one value changed.
	renderWebhook(t, base, goldenRelease, goldenNamespace)
}

// TestAuditWebhookServes runs skiff with the rendered webhook configuration (its Secrets stood up
// with real certificates and token, its outputs as gzip files), and posts an EventList with a
// client made by client-go from the rendered kubeconfig, as the kube-apiserver does: the
// kubeconfig's CA, client certificate and token file are accepted by the webhook, the events are
// answered 200 and land under the tags of the default rewrite rule, audit.<namespace> and
// audit.none.
func TestAuditWebhookServes(t *testing.T) {
	vs := webhookSet(t, "audit-webhook")
	wv := webhookValuesOf(t, vs.values)
	if wv.ClientCA.SecretName == "" || wv.Token.SecretName == "" {
		t.Fatalf("value set %s should require both a client certificate and a token", vs.name)
	}
	serving, clients := testpki.NewCA(t, "serving-ca"), testpki.NewCA(t, "client-ca")
	server, client := serving.Server(t, "webhook"), clients.Client(t, "kube-apiserver")
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const token = "s3cret-t0ken"

	// The control-plane node's directory, as NOTES tells the operator to fill it.
	nodeDir := t.TempDir()
	for name, content := range map[string]string{
		"skiff-client.crt": read(client.CertFile), "skiff-client.key": read(client.KeyFile), "skiff-token": token + "\n",
	} {
		if err := os.WriteFile(filepath.Join(nodeDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vals := withValue(t, vs.values, read(serving.CertFile), "auditWebhook", "caBundle")
	vals = withValue(t, vals, nodeDir, "auditWebhook", "kubeconfig", "dir")
	w := renderWebhook(t, vals, goldenRelease, goldenNamespace)

	// The cluster's Secrets, as the pod sees them.
	secrets := map[secretFile]string{
		{wv.TLS.SecretName, "tls.crt"}:            read(server.CertFile),
		{wv.TLS.SecretName, "tls.key"}:            read(server.KeyFile),
		{wv.ClientCA.SecretName, wv.ClientCA.Key}: read(clients.CertFile),
		{wv.Token.SecretName, wv.Token.Key}:       token + "\n",
	}
	root := t.TempDir()
	cfg, _ := parseWebhookConfig(t, w, root, func(sf secretFile) string {
		if s, ok := secrets[sf]; ok {
			return s
		}
		return secretOrigin(sf)
	})
	// Only the addresses and the volume move: no fixed ports on a test machine.
	cfg.DataDir = filepath.Join(root, cfg.DataDir)
	cfg.Inputs[0].Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	in := theWebhookInput(t, cfg)

	out := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg, agent.Plugins{
		NewParser:      func(first []byte, max int) tail.Parser { return parsers.Detect(first, max) },
		NewAuditParser: func(max int) tail.Parser { return audit.New(max) },
		// Every output, whatever its type, stands in as gzip files per tag.
		NewOutput: func(o config.Output, _ string, log *slog.Logger) (agent.Output, error) {
			return file.New(file.Config{Name: o.Name, Path: filepath.Join(out, o.Name, "{tag}.log.gz"), FlushInterval: 20 * time.Millisecond, Logger: log})
		},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "the webhook to listen", func() bool { return a.InputAddr(in.Name) != "" })

	kc, err := clientcmd.Load([]byte(w.kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*kc, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The Service's address does not exist here: dial the webhook instead, and verify its
	// certificate for the name the test CA gave it.
	addr := a.InputAddr(in.Name)
	rc.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	rc.ServerName = "localhost"
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	events := []struct{ id, ns, wantTag string }{
		{"ev-shop", "shop", "audit.shop"},
		{"ev-system", "kube-system", "audit.kube-system"},
		{"ev-cluster", "", "audit.none"},
	}
	var items []any
	for _, e := range events {
		ref := map[string]any{"resource": "configmaps", "name": "x", "apiVersion": "v1"}
		if e.ns != "" {
			ref["namespace"] = e.ns
		} else {
			ref["resource"] = "namespaces"
		}
		items = append(items, map[string]any{
			"level": "Metadata", "auditID": e.id, "stage": "ResponseComplete", "verb": "create",
			"requestURI": "/api/v1/x", "user": map[string]any{"username": "alice"}, "objectRef": ref,
			"requestReceivedTimestamp": "2026-11-27T10:00:00.000000Z", "stageTimestamp": "2026-11-27T10:00:00.001000Z",
		})
	}
	body, err := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": items})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.Host, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s with the kubeconfig's client: %v", rc.Host, err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", rc.Host, resp.StatusCode, msg)
	}

	// Each output holds each event once, under its namespace's tag.
	for _, o := range cfg.Outputs {
		var got map[string][]string
		waitFor(t, "output "+o.Name+" to hold the events", func() bool {
			got = tagsIn(t, filepath.Join(out, o.Name))
			n := 0
			for _, ids := range got {
				n += len(ids)
			}
			return n >= len(events)
		})
		for _, e := range events {
			if !slices.Equal(got[e.wantTag], []string{e.id}) {
				t.Errorf("output %s: tag %s holds %v, want [%s] (all: %v)", o.Name, e.wantTag, got[e.wantTag], e.id, got)
			}
		}
	}
}

// tagsIn reads the gzip files of dir (<tag>.log.gz) and returns the audit ids per file's tag.
func tagsIn(t *testing.T, dir string) map[string][]string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.log.gz"))
	got := map[string][]string{}
	for _, p := range paths {
		tag := strings.TrimSuffix(filepath.Base(p), ".log.gz")
		if _, err := gzipfile.ReadAll(p, func(line []byte) error {
			var doc struct{ AuditID, Tag string }
			if err := json.Unmarshal(line, &doc); err != nil {
				return err
			}
			if doc.Tag != tag {
				return fmt.Errorf("document tagged %s in %s", doc.Tag, p)
			}
			got[tag] = append(got[tag], doc.AuditID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kubeconfigServer returns the parsed server URL of a rendered webhook kubeconfig.
func kubeconfigServer(t *testing.T, kubeconfig string) *url.URL {
	t.Helper()
	kc, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	var cluster *clientcmdapi.Cluster
	if ctx := kc.Contexts[kc.CurrentContext]; ctx != nil {
		cluster = kc.Clusters[ctx.Cluster]
	}
	if cluster == nil {
		t.Fatalf("kubeconfig: current context %q names no cluster", kc.CurrentContext)
	}
	u, err := url.Parse(cluster.Server)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
