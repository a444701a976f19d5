{{/* Names, labels and the rendered skiff configuration. */}}

{{- define "skiff.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skiff.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "skiff.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skiff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skiff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skiff.labels" -}}
helm.sh/chart: {{ include "skiff.chart" . }}
{{ include "skiff.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: log-shipper
{{- end -}}

{{- define "skiff.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "skiff.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "skiff.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The port number of config.http.listen (":2020", "0.0.0.0:2020"). */}}
{{- define "skiff.httpPort" -}}
{{- $listen := required "config.http.listen must be set: the probes and metrics need it" ((.Values.config.http | default dict).listen) -}}
{{- splitList ":" $listen | last | int -}}
{{- end -}}

{{- define "skiff.kubernetesEnabled" -}}
{{- if (.Values.config.kubernetes | default dict).enabled -}}true{{- end -}}
{{- end -}}

{{/* Where the Elasticsearch secrets are mounted, and the file each config key names. */}}
{{- define "skiff.esSecretDir" -}}/etc/skiff/secrets/es{{- end -}}

{{- define "skiff.hasEsSecrets" -}}
{{- with .Values.elasticsearch -}}
{{- if or .apiKeySecret.name .passwordSecret.name .caSecret.name -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
skiff.config renders the DaemonSet's configuration file: .Values.config as given, with the
elasticsearch section's hosts, username and secret file paths filled into every elasticsearch
output that does not set them.
*/}}
{{- define "skiff.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- include "skiff.fillElasticsearch" (dict "config" $cfg "root" .) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
skiff.fillElasticsearch sets, in place, the hosts, username and secret file paths of the
elasticsearch section into every elasticsearch output of .config that does not set them. It
renders nothing; call it with (dict "config" $cfg "root" $).
*/}}
{{- define "skiff.fillElasticsearch" -}}
{{- $es := .root.Values.elasticsearch -}}
{{- $dir := include "skiff.esSecretDir" .root -}}
{{- range $o := (.config.outputs | default list) -}}
{{- if eq (toString $o.type) "elasticsearch" -}}
{{- if and $es.hosts (not (hasKey $o "hosts")) -}}
{{- $_ := set $o "hosts" $es.hosts -}}
{{- end -}}
{{- if and $es.apiKeySecret.name (not (hasKey $o "api_key")) (not (hasKey $o "api_key_file")) -}}
{{- $_ := set $o "api_key_file" (printf "%s/api_key" $dir) -}}
{{- end -}}
{{- if and $es.username (not (hasKey $o "username")) -}}
{{- $_ := set $o "username" $es.username -}}
{{- end -}}
{{- if and $es.passwordSecret.name (not (hasKey $o "password")) (not (hasKey $o "password_file")) -}}
{{- $_ := set $o "password_file" (printf "%s/password" $dir) -}}
{{- end -}}
{{- if and $es.caSecret.name (not (hasKey $o "ca_file")) -}}
{{- $_ := set $o "ca_file" (printf "%s/ca.crt" $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
skiff.esSecretsVolume is the pod volume "es-secrets": the elasticsearch section's Secrets
projected into one directory, each key under the file name skiff.fillElasticsearch gives it.
Call it with (dict "root" $ "mode" "0400") only when skiff.hasEsSecrets.
*/}}
{{- define "skiff.esSecretsVolume" -}}
- name: es-secrets
  projected:
    defaultMode: {{ .mode }}
    sources:
      {{- $es := .root.Values.elasticsearch }}
      {{- range $p := list (list "api_key" $es.apiKeySecret) (list "password" $es.passwordSecret) (list "ca.crt" $es.caSecret) }}
      {{- $file := index $p 0 }}
      {{- $s := index $p 1 }}
      {{- if $s.name }}
      - secret:
          name: {{ $s.name }}
          items:
            - key: {{ $s.key }}
              path: {{ $file }}
      {{- end }}
      {{- end }}
{{- end -}}

{{/* The audit webhook (auditWebhook.*): a Deployment + Service apart from the DaemonSet. */}}

{{- define "skiff.auditWebhook.name" -}}
{{- printf "%s-audit-webhook" (include "skiff.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Its own app.kubernetes.io/name, so that neither the DaemonSet's selector nor the metrics Service
picks the webhook's pods up.
*/}}
{{- define "skiff.auditWebhook.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-audit-webhook" (include "skiff.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skiff.auditWebhook.labels" -}}
helm.sh/chart: {{ include "skiff.chart" . }}
{{ include "skiff.auditWebhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: audit-webhook
{{- end -}}

{{/* Where the webhook's TLS key pair, client CA and token are mounted. */}}
{{- define "skiff.auditWebhook.secretDir" -}}/etc/skiff/secrets/webhook{{- end -}}

{{/*
skiff.auditWebhook.input is the one audit_webhook input of auditWebhook.config, as JSON (use
fromJson). The chart serves exactly one: the Service and the apiserver's kubeconfig point at one
port and path.
*/}}
{{- define "skiff.auditWebhook.input" -}}
{{- $found := list -}}
{{- range $in := (.Values.auditWebhook.config.inputs | default list) -}}
{{- if eq (toString $in.type) "audit_webhook" -}}
{{- $found = append $found $in -}}
{{- end -}}
{{- end -}}
{{- if ne (len $found) 1 -}}
{{- fail (printf "auditWebhook.config.inputs: want exactly one input of type audit_webhook, found %d" (len $found)) -}}
{{- end -}}
{{- first $found | toJson -}}
{{- end -}}

{{/* The port number of the audit_webhook input's listen address (default :8443). */}}
{{- define "skiff.auditWebhook.port" -}}
{{- $in := include "skiff.auditWebhook.input" . | fromJson -}}
{{- splitList ":" ($in.listen | default ":8443") | last | int -}}
{{- end -}}

{{/* The port number of auditWebhook.config.http.listen: probes and metrics. */}}
{{- define "skiff.auditWebhook.httpPort" -}}
{{- $listen := required "auditWebhook.config.http.listen must be set: the probes need it" ((.Values.auditWebhook.config.http | default dict).listen) -}}
{{- splitList ":" $listen | last | int -}}
{{- end -}}

{{/* "true" when the webhook has an elasticsearch output and the elasticsearch section names Secrets. */}}
{{- define "skiff.auditWebhook.hasEsSecrets" -}}
{{- $es := false -}}
{{- range $o := (.Values.auditWebhook.config.outputs | default list) -}}
{{- if eq (toString $o.type) "elasticsearch" -}}{{- $es = true -}}{{- end -}}
{{- end -}}
{{- if $es -}}{{- include "skiff.hasEsSecrets" . -}}{{- end -}}
{{- end -}}

{{/*
skiff.auditWebhook.config renders the webhook Deployment's configuration file:
auditWebhook.config with the elasticsearch section filled in as for the DaemonSet, and the
audit_webhook input's tls_cert_file, tls_key_file, client_ca_file and token_file pointing at the
Secrets of auditWebhook.tls, .clientCA and .token where the input does not set them.
*/}}
{{- define "skiff.auditWebhook.config" -}}
{{- $w := .Values.auditWebhook -}}
{{- $cfg := deepCopy $w.config -}}
{{- if ($cfg.kubernetes | default dict).enabled -}}
{{- fail "auditWebhook.config.kubernetes.enabled: audit events name no pod to enrich, and the webhook's pods have no API access" -}}
{{- end -}}
{{- $_ := include "skiff.auditWebhook.input" . -}}
{{- include "skiff.fillElasticsearch" (dict "config" $cfg "root" .) -}}
{{- $dir := include "skiff.auditWebhook.secretDir" . -}}
{{- range $in := $cfg.inputs -}}
{{- if eq (toString $in.type) "audit_webhook" -}}
{{- if not $in.tls_disable -}}
{{- if not (or $in.tls_cert_file $w.tls.secretName) -}}
{{- fail "auditWebhook.tls.secretName: name the kubernetes.io/tls Secret holding the webhook's serving certificate (tls.crt, tls.key)" -}}
{{- end -}}
{{- end -}}
{{- if $w.tls.secretName -}}
{{- if not (hasKey $in "tls_cert_file") -}}{{- $_ := set $in "tls_cert_file" (printf "%s/tls.crt" $dir) -}}{{- end -}}
{{- if not (hasKey $in "tls_key_file") -}}{{- $_ := set $in "tls_key_file" (printf "%s/tls.key" $dir) -}}{{- end -}}
{{- end -}}
{{- if and $w.clientCA.secretName (not (hasKey $in "client_ca_file")) -}}
{{- $_ := set $in "client_ca_file" (printf "%s/client-ca.crt" $dir) -}}
{{- end -}}
{{- if and $w.token.secretName (not (hasKey $in "token_file")) -}}
{{- $_ := set $in "token_file" (printf "%s/token" $dir) -}}
{{- end -}}
{{- if not (or $in.client_ca_file $in.token_file $in.auth_disable) -}}
{{- fail "auditWebhook.clientCA.secretName or auditWebhook.token.secretName: the webhook accepts only authenticated requests; name the Secret with the CA of the apiserver's client certificate, or with a bearer token, or both" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
skiff.auditWebhook.server is the URL the kube-apiserver posts to: auditWebhook.kubeconfig.server,
or https://<Service clusterIP, or DNS name>:<Service port><url_path>.
*/}}
{{- define "skiff.auditWebhook.server" -}}
{{- $w := .Values.auditWebhook -}}
{{- if $w.kubeconfig.server -}}
{{- $w.kubeconfig.server -}}
{{- else -}}
{{- $in := include "skiff.auditWebhook.input" . | fromJson -}}
{{- $host := printf "%s.%s.svc" (include "skiff.auditWebhook.name" .) .Release.Namespace -}}
{{- with $w.service.clusterIP -}}
{{- $host = ternary (printf "[%s]" .) . (contains ":" .) -}}
{{- end -}}
{{- printf "https://%s:%d%s" $host (int $w.service.port) ($in.url_path | default "/") -}}
{{- end -}}
{{- end -}}
