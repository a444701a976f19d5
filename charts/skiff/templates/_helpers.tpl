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
skiff.config renders skiff's configuration file: .Values.config as given, with the elasticsearch
section's hosts, username and secret file paths filled into every elasticsearch output that does
not set them.
*/}}
{{- define "skiff.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $es := .Values.elasticsearch -}}
{{- $dir := include "skiff.esSecretDir" . -}}
{{- range $o := ($cfg.outputs | default list) -}}
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
{{- toYaml $cfg -}}
{{- end -}}
