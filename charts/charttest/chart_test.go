package charttest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/skiff-logs/skiff/agent/config"
)

// TestLint runs helm lint (chart file, values against the schema, templates) for every value set
// and fails on any warning or error.
func TestLint(t *testing.T) {
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			l := lint.All(chartDir, vs.values, goldenNamespace, false)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %v", m)
				} else {
					t.Logf("lint: %v", m)
				}
			}
		})
	}
}

// configOf returns the skiff configuration text of the rendered ConfigMap the DaemonSet mounts.
func configOf(t *testing.T, r rendered) string {
	t.Helper()
	return mountedConfig(t, r, &r.daemonSet(t).Spec.Template.Spec)
}

// mountedConfig returns the skiff.yaml of the rendered ConfigMap that pod's "config" volume names.
func mountedConfig(t *testing.T, r rendered, pod *corev1.PodSpec) string {
	t.Helper()
	cmName := ""
	for _, v := range pod.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	for _, o := range r.all("ConfigMap") {
		if o.GetName() != cmName {
			continue
		}
		var cm corev1.ConfigMap
		into(t, o, &cm)
		text, ok := cm.Data["skiff.yaml"]
		if !ok {
			t.Fatalf("ConfigMap %s has no skiff.yaml", cmName)
		}
		return text
	}
	t.Fatalf("the pod's config volume names ConfigMap %q, which is not rendered", cmName)
	return ""
}

// secretFile is where a Secret's key appears inside the skiff container.
type secretFile struct{ secret, key string }

// secretFiles maps every path in container c of pod that comes from a Secret (secret and
// projected volumes) to the Secret and key it holds.
func secretFiles(pod *corev1.PodSpec, c *corev1.Container) map[string]secretFile {
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	out := map[string]secretFile{}
	add := func(dir string, s corev1.SecretProjection) {
		for _, it := range s.Items {
			out[path.Join(dir, it.Path)] = secretFile{s.Name, it.Key}
		}
	}
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		switch {
		case v.Secret != nil:
			add(m.MountPath, corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items})
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					add(m.MountPath, *src.Secret)
				}
			}
		}
	}
	return out
}

func skiffContainer(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	return containerNamed(t, &ds.Spec.Template.Spec, "skiff")
}

func containerNamed(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Containers {
		if c := &pod.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("no container named %s", name)
	return nil
}

// fileKey finds the configuration keys that name a secret file.
var fileKey = regexp.MustCompile(`(?m)^\s*-?\s*(api_key_file|password_file|ca_file|tls_cert_file|tls_key_file|client_ca_file|token_file): (.+)$`)

// standUpSecrets writes, under root, a file for every secret file the configuration text names,
// each holding content(secret, key) of the Secret key mounted there (t fails when a named file
// is not mounted from a Secret), and returns the text with the paths moved under root, and for
// each config key the content written.
func standUpSecrets(t *testing.T, root, text string, mounted map[string]secretFile, content func(secretFile) string) (string, map[string]string) {
	t.Helper()
	written := map[string]string{}
	for _, m := range fileKey.FindAllStringSubmatch(text, -1) {
		p := strings.Trim(m[2], `"'`)
		sf, ok := mounted[p]
		if !ok {
			t.Fatalf("%s: %s is not a file mounted from a Secret (mounted: %v)", m[1], p, mounted)
		}
		written[m[1]] = content(sf)
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(written[m[1]]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return strings.ReplaceAll(text, "/etc/skiff/secrets/", root+"/etc/skiff/secrets/"), written
}

// TestRenderedConfigIsValid: the ConfigMap of every value set passes skiff's own validation
// (config.Parse, as `skiff validate` runs it), every *_file it names is a mounted Secret key, and
// the DaemonSet agrees with it on the data_dir mount, the http port and the mounts under which
// the inputs' globs lie.
func TestRenderedConfigIsValid(t *testing.T) {
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			r := render(t, vs.values, goldenRelease, goldenNamespace)
			text := configOf(t, r)
			ds := r.daemonSet(t)
			mounted := secretFiles(&ds.Spec.Template.Spec, skiffContainer(t, ds))

			// Stand the mounted secrets up under a temporary root so Parse can read them, each
			// holding a value that says which Secret and key it came from.
			local, want := standUpSecrets(t, t.TempDir(), text, mounted, secretOrigin)
			t.Setenv("NODE_NAME", "node-1")
			cfg, err := config.Parse([]byte(local))
			if err != nil {
				t.Fatalf("skiff rejects the rendered configuration: %v\n%s", err, text)
			}

			for _, o := range cfg.Outputs {
				if o.Type != "elasticsearch" {
					continue
				}
				if w, ok := want["api_key_file"]; ok && o.APIKey+"\n" != w {
					t.Errorf("outputs %s: api key %q, want the content of %s", o.Name, o.APIKey, w)
				}
				if w, ok := want["password_file"]; ok && o.Password+"\n" != w {
					t.Errorf("outputs %s: password %q, want the content of %s", o.Name, o.Password, w)
				}
				if len(o.Hosts) == 0 {
					t.Errorf("outputs %s: no hosts", o.Name)
				}
			}

			c := skiffContainer(t, ds)
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			if m, ok := mounts[cfg.DataDir]; !ok || m.ReadOnly {
				t.Errorf("data_dir %s is not a writable mount: %+v", cfg.DataDir, m)
			}
			_, port, _ := strings.Cut(cfg.HTTP.Listen, ":")
			if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port || c.Ports[0].Name != "http" {
				t.Errorf("container ports %+v, want http on %s (http.listen %q)", c.Ports, port, cfg.HTTP.Listen)
			}
			for _, in := range cfg.Inputs {
				for _, glob := range in.Paths {
					if !underMount(glob, mounts) {
						t.Errorf("input %s: %s lies under no mounted directory", in.Name, glob)
					}
				}
			}
		})
	}
}

// secretOrigin is the content standUpSecrets gives a file: which Secret and key it came from.
func secretOrigin(sf secretFile) string { return "from " + sf.secret + "/" + sf.key + "\n" }

func underMount(glob string, mounts map[string]corev1.VolumeMount) bool {
	for p := range mounts {
		if strings.HasPrefix(glob, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

// TestSecurityContext pins the pod's privileges: uid 0 with every capability dropped, no
// escalation, read-only root, RuntimeDefault seccomp, logs read-only, data read-write, and the
// node-level settings a DaemonSet shipper needs.
func TestSecurityContext(t *testing.T) {
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			ds := render(t, vs.values, goldenRelease, goldenNamespace).daemonSet(t)
			pod := ds.Spec.Template.Spec
			c := skiffContainer(t, ds)

			want := &corev1.SecurityContext{
				RunAsUser:                new(int64(0)),
				RunAsGroup:               new(int64(0)),
				RunAsNonRoot:             new(false),
				ReadOnlyRootFilesystem:   new(true),
				AllowPrivilegeEscalation: new(false),
				Privileged:               new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			}
			wantPod := &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
			expectSecurity(t, &pod, c, wantPod, want)
			if pod.HostNetwork || pod.HostPID || pod.HostIPC {
				t.Error("pod shares a host namespace")
			}

			hostPaths := map[string]string{}
			for _, v := range pod.Volumes {
				if v.HostPath != nil {
					hostPaths[v.Name] = v.HostPath.Path
				}
			}
			var sawLogs, sawData bool
			for _, m := range c.VolumeMounts {
				hp, ok := hostPaths[m.Name]
				switch {
				case !ok:
				case hp == "/var/log":
					sawLogs = true
					if !m.ReadOnly || m.MountPath != "/var/log" {
						t.Errorf("/var/log mounted at %s, read-only %v; want read-only at /var/log", m.MountPath, m.ReadOnly)
					}
				case hp == "/var/lib/skiff":
					sawData = true
					if m.ReadOnly {
						t.Error("/var/lib/skiff is mounted read-only; skiff writes its positions there")
					}
				default:
					if !m.ReadOnly {
						t.Errorf("extra host path %s is mounted writable", hp)
					}
				}
			}
			if !sawLogs || !sawData {
				t.Errorf("host paths mounted: %v; want /var/log and /var/lib/skiff", hostPaths)
			}

			var nodeName *corev1.EnvVar
			for i := range c.Env {
				if c.Env[i].Name == "NODE_NAME" {
					nodeName = &c.Env[i]
				}
			}
			if nodeName == nil || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil || nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("NODE_NAME is not taken from spec.nodeName: %s", js(nodeName))
			}

			if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
				return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == corev1.TaintEffectNoSchedule
			}) {
				t.Errorf("tolerations %s do not tolerate every NoSchedule taint (control-plane nodes)", js(pod.Tolerations))
			}
			if vs.name != "kibana-podmonitor" && pod.PriorityClassName != "system-node-critical" {
				t.Errorf("priorityClassName %q", pod.PriorityClassName)
			}
			for probe, want := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				wantPath := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[probe]
				if want == nil || want.HTTPGet == nil || want.HTTPGet.Path != wantPath || want.HTTPGet.Port != intstr.FromString("http") {
					t.Errorf("%s probe %s, want GET %s on port http", probe, js(want), wantPath)
				}
			}
			if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ds.Spec.UpdateStrategy.RollingUpdate == nil ||
				ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil || ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
				t.Errorf("updateStrategy %s, want RollingUpdate with maxUnavailable 1", js(ds.Spec.UpdateStrategy))
			}
			if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("resources %s: want memory request and limit, CPU request", js(c.Resources))
			}
		})
	}
}

// expectSecurity compares the security contexts of pod and its container c with the wanted ones.
func expectSecurity(t *testing.T, pod *corev1.PodSpec, c *corev1.Container, wantPod *corev1.PodSecurityContext, want *corev1.SecurityContext) {
	t.Helper()
	if !equality.Semantic.DeepEqual(c.SecurityContext, want) {
		t.Errorf("container securityContext:\n got %s\nwant %s", js(c.SecurityContext), js(want))
	}
	if !equality.Semantic.DeepEqual(pod.SecurityContext, wantPod) {
		t.Errorf("pod securityContext:\n got %s\nwant %s", js(pod.SecurityContext), js(wantPod))
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestClusterRole: read-only access to pods and namespaces, exactly, bound to the chart's
// ServiceAccount; no other RBAC object; none at all when enrichment is off.
func TestClusterRole(t *testing.T) {
	for _, vs := range valueSets(t) {
		t.Run(vs.name, func(t *testing.T) {
			r := render(t, vs.values, goldenRelease, goldenNamespace)
			ds := r.daemonSet(t)
			for _, kind := range []string{"Role", "RoleBinding"} {
				if n := len(r.all(kind)); n != 0 {
					t.Errorf("%d %s rendered; the chart needs none", n, kind)
				}
			}
			enabled := *ds.Spec.Template.Spec.AutomountServiceAccountToken
			if !enabled {
				if n := len(r.all("ClusterRole")) + len(r.all("ClusterRoleBinding")); n != 0 {
					t.Errorf("enrichment off, yet %d cluster RBAC objects rendered", n)
				}
				return
			}
			var role rbacv1.ClusterRole
			into(t, r.one(t, "ClusterRole"), &role)
			want := []rbacv1.PolicyRule{{
				APIGroups: []string{""},
				Resources: []string{"pods", "namespaces"},
				Verbs:     []string{"get", "list", "watch"},
			}}
			if !equality.Semantic.DeepEqual(role.Rules, want) || role.AggregationRule != nil {
				t.Errorf("ClusterRole rules:\n got %s\nwant %s", js(role.Rules), js(want))
			}
			var binding rbacv1.ClusterRoleBinding
			into(t, r.one(t, "ClusterRoleBinding"), &binding)
			wantRef := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name}
			wantSubj := []rbacv1.Subject{{Kind: "ServiceAccount", Name: ds.Spec.Template.Spec.ServiceAccountName, Namespace: goldenNamespace}}
			if binding.RoleRef != wantRef || !equality.Semantic.DeepEqual(binding.Subjects, wantSubj) {
				t.Errorf("ClusterRoleBinding %s → %s, want %s → %s", js(binding.Subjects), js(binding.RoleRef), js(wantSubj), js(wantRef))
			}
			sa := r.one(t, "ServiceAccount")
			if sa.GetName() != ds.Spec.Template.Spec.ServiceAccountName {
				t.Errorf("ServiceAccount %s, DaemonSet uses %s", sa.GetName(), ds.Spec.Template.Spec.ServiceAccountName)
			}
		})
	}
}

// TestConfigChangeRollsPods: the pod template carries the ConfigMap's checksum, so any change of
// the configuration changes the template and the DaemonSet rolls.
func TestConfigChangeRollsPods(t *testing.T) {
	checksum := func(vals map[string]any) (annotation, sum string) {
		r := render(t, vals, goldenRelease, goldenNamespace)
		h := sha256.Sum256([]byte(r.files["skiff/templates/configmap.yaml"]))
		return r.daemonSet(t).Spec.Template.Annotations["checksum/config"], hex.EncodeToString(h[:])
	}
	a1, s1 := checksum(map[string]any{})
	a2, s2 := checksum(map[string]any{"config": map[string]any{"log_level": "debug"}})
	if a1 != s1 || a2 != s2 {
		t.Errorf("checksum/config %s and %s, want the ConfigMap's sha256 %s and %s", a1, a2, s1, s2)
	}
	if a1 == a2 {
		t.Error("changing log_level left the pod template's checksum unchanged")
	}
}

// TestSchemaMatchesConfig: values.schema.json describes `config` with exactly the keys of skiff's
// config structs (yaml tags), section by section, so values map 1:1 to the configuration and a
// key added to skiff without the chart (or a typo in the schema) fails here.
func TestSchemaMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	cfgSchema := dig(schema, "properties", "config")
	compareSchema(t, "config", cfgSchema, reflect.TypeFor[config.Config]())
	// The audit webhook's configuration is a skiff configuration file too: the same schema.
	if ref := dig(schema, "properties", "auditWebhook", "properties", "config")["$ref"]; ref != "#/properties/config" {
		t.Errorf("auditWebhook.config: $ref %v, want #/properties/config", ref)
	}
}

// yamlFields collects the yaml keys of struct type typ and their types into fields, with the
// keys of `yaml:",inline"` structs (config.WebhookInput in config.Input) as typ's own, as
// skiff's decoder reads them.
func yamlFields(typ reflect.Type, fields map[string]reflect.Type) {
	for f := range typ.Fields() {
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case tag == "" && opts == "inline" && f.Type.Kind() == reflect.Struct:
			yamlFields(f.Type, fields)
		case tag != "" && tag != "-":
			fields[tag] = f.Type
		}
	}
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, _ := m[k].(map[string]any)
		m = next
	}
	return m
}

// compareSchema checks that schema s (an object schema) has additionalProperties false and the
// same properties as struct type typ, recursing into struct and []struct fields.
func compareSchema(t *testing.T, key string, s map[string]any, typ reflect.Type) {
	t.Helper()
	if s == nil {
		t.Errorf("%s: missing from values.schema.json", key)
		return
	}
	if ap, ok := s["additionalProperties"].(bool); !ok || ap {
		t.Errorf("%s: schema must set additionalProperties: false, as skiff rejects unknown keys", key)
	}
	props := dig(s, "properties")
	fields := map[string]reflect.Type{}
	yamlFields(typ, fields)
	for name, ft := range fields {
		sub, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s.%s: a skiff config key the schema does not describe", key, name)
			continue
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			items, _ := sub["items"].(map[string]any)
			compareSchema(t, key+"."+name+"[]", items, ft.Elem())
		} else if ft.Kind() == reflect.Struct {
			compareSchema(t, key+"."+name, sub, ft)
		}
	}
	for name := range props {
		if _, ok := fields[name]; !ok {
			t.Errorf("%s.%s: in the schema, but skiff has no such key", key, name)
		}
	}
}

// TestKibanaAssets checks the saved objects against the import format (one JSON object per line
// with type, id and attributes; references that resolve within the files) and what they must
// show, and that the import Job carries them byte for byte.
func TestKibanaAssets(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "kibana", "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no kibana/*.ndjson (%v)", err)
	}
	type ref struct{ Name, Type, ID string }
	type object struct {
		Type                 string          `json:"type"`
		ID                   string          `json:"id"`
		Attributes           json.RawMessage `json:"attributes"`
		References           []ref           `json:"references"`
		CoreMigrationVersion string          `json:"coreMigrationVersion"`
		TypeMigrationVersion string          `json:"typeMigrationVersion"`
	}
	byID := map[string]object{}
	contents := map[string]string{}
	var all []object
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		contents[filepath.Base(f)] = string(raw)
		if !strings.HasSuffix(string(raw), "\n") {
			t.Errorf("%s: does not end with a newline", f)
		}
		for i, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
			var o object
			if err := json.Unmarshal([]byte(line), &o); err != nil {
				t.Fatalf("%s:%d: not one JSON object per line: %v", f, i+1, err)
			}
			if o.Type == "" || o.ID == "" || len(o.Attributes) == 0 || o.CoreMigrationVersion == "" || o.TypeMigrationVersion == "" {
				t.Errorf("%s:%d: want type, id, attributes, coreMigrationVersion, typeMigrationVersion: %s", f, i+1, line)
			}
			if _, dup := byID[o.Type+"/"+o.ID]; dup {
				t.Errorf("%s: %s/%s defined twice", f, o.Type, o.ID)
			}
			byID[o.Type+"/"+o.ID] = o
			all = append(all, o)
		}
	}
	for _, o := range all {
		for _, r := range o.References {
			if _, ok := byID[r.Type+"/"+r.ID]; !ok {
				t.Errorf("%s/%s refers to %s/%s, which no file defines", o.Type, o.ID, r.Type, r.ID)
			}
		}
	}

	type dataView struct{ Title, TimeFieldName, Name string }
	views := map[string]dataView{}
	for _, o := range all {
		if o.Type == "index-pattern" {
			var dv dataView
			if err := json.Unmarshal(o.Attributes, &dv); err != nil {
				t.Fatal(err)
			}
			views[dv.Title] = dv
		}
	}
	for _, title := range []string{"k8s-logs-*", "k8s-audit-*"} {
		if dv, ok := views[title]; !ok || dv.TimeFieldName != "@timestamp" || dv.Name == "" {
			t.Errorf("data view %s: %+v, want a named view with time field @timestamp", title, dv)
		}
	}

	search, ok := byID["search/skiff-container-logs"]
	if !ok {
		t.Fatal("no saved search skiff-container-logs")
	}
	var attrs struct {
		Title                 string
		Columns               []string
		Sort                  [][]string
		KibanaSavedObjectMeta struct{ SearchSourceJSON string }
	}
	if err := json.Unmarshal(search.Attributes, &attrs); err != nil {
		t.Fatal(err)
	}
	wantCols := []string{"kubernetes.namespace", "kubernetes.pod.name", "kubernetes.container.name", "message"}
	if !slices.Equal(attrs.Columns, wantCols) || fmt.Sprint(attrs.Sort) != "[[@timestamp desc]]" {
		t.Errorf("saved search columns %v sort %v, want %v newest first", attrs.Columns, attrs.Sort, wantCols)
	}
	var source struct {
		IndexRefName string
		Query        struct{ Language string }
	}
	if err := json.Unmarshal([]byte(attrs.KibanaSavedObjectMeta.SearchSourceJSON), &source); err != nil {
		t.Fatalf("searchSourceJSON: %v", err)
	}
	if !slices.Contains(search.References, ref{Name: source.IndexRefName, Type: "index-pattern", ID: "skiff-k8s-logs"}) {
		t.Errorf("saved search's indexRefName %q does not resolve to data view skiff-k8s-logs: %v", source.IndexRefName, search.References)
	}

	// The import Job ships exactly these files.
	vals := map[string]any{"kibana": map[string]any{"url": "http://kibana:5601", "importJob": map[string]any{"enabled": true}}}
	r := render(t, vals, goldenRelease, goldenNamespace)
	var cm corev1.ConfigMap
	for _, o := range r.all("ConfigMap") {
		if strings.HasSuffix(o.GetName(), "-kibana") {
			into(t, o, &cm)
		}
	}
	for name, text := range contents {
		if cm.Data[name] != text {
			t.Errorf("the import ConfigMap's %s differs from kibana/%s", name, name)
		}
	}
	script := cm.Data["import.sh"]
	for _, want := range []string{"/api/saved_objects/_import?overwrite=true", "kbn-xsrf: true", "file=@"} {
		if !strings.Contains(script, want) {
			t.Errorf("import.sh lacks %q", want)
		}
	}
	job := r.one(t, "Job")
	if job.GetAnnotations()["helm.sh/hook"] != "post-install,post-upgrade" {
		t.Errorf("import Job is not a post-install/post-upgrade hook: %v", job.GetAnnotations())
	}
}

// TestDefaultsOff: the optional parts stay out of a default install.
func TestDefaultsOff(t *testing.T) {
	r := render(t, map[string]any{}, goldenRelease, goldenNamespace)
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "Job", "Secret"} {
		if n := len(r.all(kind)); n != 0 {
			t.Errorf("default install renders %d %s", n, kind)
		}
	}
	var got []string
	for _, o := range r.objects {
		got = append(got, o.GetKind())
	}
	slices.Sort(got)
	want := []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Service", "ServiceAccount"}
	if !slices.Equal(got, want) {
		t.Errorf("default objects %v, want %v", got, want)
	}
	// values.yaml documents every default the schema requires.
	var vals map[string]any
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	if dig(vals, "config", "kubernetes")["node_name"] != "${NODE_NAME}" {
		t.Error("config.kubernetes.node_name must default to ${NODE_NAME}")
	}
}
