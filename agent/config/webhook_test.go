package config

import (
	"os"
	"strings"
	"testing"
)

const webhookBase = `
data_dir: /var/lib/skiff
inputs:
  - name: apiserver-webhook
    type: audit_webhook
    tls_cert_file: /etc/skiff/tls/tls.crt
    tls_key_file: /etc/skiff/tls/tls.key
    client_ca_file: /etc/skiff/tls/ca.crt
outputs:
  - name: f
    type: file
    path: /tmp/x/{tag}.gz
`

func TestWebhookInputDefaults(t *testing.T) {
	c, err := Parse([]byte(webhookBase))
	if err != nil {
		t.Fatal(err)
	}
	in := c.Inputs[0]
	w := in.WebhookInput
	if w.Listen != DefaultWebhookListen || w.URLPath != "/" || w.MaxBodyBytes != 16<<20 ||
		w.SpoolFileBytes != 16<<20 || w.MaxSpoolBytes != 1<<30 || in.Tag != "audit" || in.MaxEventBytes != 0 {
		t.Errorf("defaults: %+v", in)
	}
	if got := c.WebhookSpoolDir(in.Name); got != "/var/lib/skiff/webhook/apiserver-webhook" {
		t.Errorf("spool dir %q", got)
	}
	c, err = Parse([]byte(strings.Replace(webhookBase, "    client_ca_file", `    listen: "127.0.0.1:9443"
    url_path: /audit
    token_file: /etc/skiff/token
    max_body_bytes: 4MiB
    spool_file_bytes: 1MiB
    max_spool_bytes: 100MiB
    max_event_bytes: 256KiB
    tag: audit.webhook
    client_ca_file`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	in = c.Inputs[0]
	w = in.WebhookInput
	if w.Listen != "127.0.0.1:9443" || w.URLPath != "/audit" || w.TokenFile != "/etc/skiff/token" || w.MaxBodyBytes != 4<<20 ||
		w.SpoolFileBytes != 1<<20 || w.MaxSpoolBytes != 100<<20 || in.MaxEventBytes != 256<<10 || in.Tag != "audit.webhook" {
		t.Errorf("settings: %+v", in)
	}
}

func TestWebhookInputErrors(t *testing.T) {
	edit := func(old, new string) string { return strings.Replace(webhookBase, old, new, 1) }
	for _, tc := range []struct{ name, yaml, want string }{
		{"negative event size", edit("    client_ca_file", "    max_event_bytes: -1\n    client_ca_file"), "inputs[0].max_event_bytes"},
		{"no cert", edit("    tls_cert_file: /etc/skiff/tls/tls.crt\n", ""), "inputs[0].tls_cert_file: must be set"},
		{"no key", edit("    tls_key_file: /etc/skiff/tls/tls.key\n", ""), "inputs[0].tls_key_file: must be set"},
		{"no auth", edit("    client_ca_file: /etc/skiff/tls/ca.crt\n", ""), "inputs[0].client_ca_file: set client_ca_file, token_file or both"},
		{"auth both ways", edit("    client_ca_file", "    auth_disable: true\n    client_ca_file"), "inputs[0].auth_disable: is true, but"},
		{"client CA without TLS", edit("    client_ca_file", "    tls_disable: true\n    client_ca_file"), "inputs[0].client_ca_file: client certificates need TLS"},
		{"bad listen", edit("    client_ca_file", "    listen: 8443\n    client_ca_file"), "inputs[0].listen: want host:port"},
		{"bad path", edit("    client_ca_file", "    url_path: audit\n    client_ca_file"), "inputs[0].url_path: must start with '/'"},
		{"name with slash", edit("name: apiserver-webhook", "name: ../etc"), "inputs[0].name: \"../etc\" names the spool directory"},
		{"paths", edit("    client_ca_file", "    paths: [/var/log/*.log]\n    client_ca_file"), "inputs[0].paths: does not apply to audit_webhook"},
		{"start at end", edit("    client_ca_file", "    start_at: end\n    client_ca_file"), "inputs[0].start_at: must be beginning"},
		{"spool smaller than body", edit("    client_ca_file", "    max_spool_bytes: 1MiB\n    client_ca_file"), "inputs[0].max_spool_bytes: must be at least max_body_bytes"},
		{"unknown key", edit("    client_ca_file", "    tls_cert: x\n    client_ca_file"), "inputs[0].tls_cert: unknown key"},
		{"webhook key on containers", strings.Replace(base, "  - name: c\n", "  - name: c\n    listen: :8443\n    token_file: /x\n", 1), "inputs[0].listen: only applies to audit_webhook inputs, this one is containers"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestWebhookDocConfig loads the skiff configuration shown in docs/audit-webhook.md, so the
// document cannot drift from the keys skiff reads.
func TestWebhookDocConfig(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit-webhook.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- skiff-config")
	if !ok {
		t.Fatal("docs/audit-webhook.md has no <!-- skiff-config --> block")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	c, err := Parse([]byte(block))
	if err != nil {
		t.Fatalf("the documented config does not load: %v", err)
	}
	if in := c.Inputs[0]; in.Type != InputAuditWebhook || in.ClientCAFile == "" || in.MaxEventBytes != 1<<20 {
		t.Errorf("documented input: %+v", in)
	}
}
