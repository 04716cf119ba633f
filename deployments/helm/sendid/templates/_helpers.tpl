{{/* Names, in the style of the official NATS chart. */}}
{{- define "sendid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sendid.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sendid.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "sendid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sendid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sendid.labels" -}}
{{ include "sendid.selectorLabels" . }}
app.kubernetes.io/component: worker
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.global.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sendid.metadata" -}}
name: {{ include "sendid.fullname" . }}
namespace: {{ include "sendid.namespace" . }}
labels:
  {{- include "sendid.labels" . | nindent 2 }}
{{- end }}

{{- define "sendid.brazeSecretName" -}}
{{- .Values.brazeKeys.secretName | default (printf "%s-braze-keys" (include "sendid.fullname" .)) }}
{{- end }}

{{- define "sendid.natsSecretName" -}}
{{- .Values.natsAuth.secretName | default (printf "%s-nats" (include "sendid.fullname" .)) }}
{{- end }}

{{- define "sendid.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "sendid.fullname" .) }}
{{- end }}

{{/* The HTTP port: the port of config.http_addr. */}}
{{- define "sendid.httpPort" -}}
{{- splitList ":" .Values.config.http_addr | last }}
{{- end }}

{{/*
sendid.config is the worker's YAML: config with each app group pointed at
its key file and the NATS files of natsAuth.
*/}}
{{- define "sendid.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- range $name, $g := $cfg.app_groups }}
{{- if not (or $g.api_key_file $g.api_key_env) }}
{{- $_ := set $g "api_key_file" (printf "/run/secrets/braze/%s" $name) }}
{{- end }}
{{- end }}
{{- if .Values.natsAuth.enabled }}
{{- $nats := $cfg.nats | default dict }}
{{- if .Values.natsAuth.creds }}
{{- $_ := set $nats "creds_file" "/run/secrets/nats/sendid.creds" }}
{{- end }}
{{- if .Values.natsAuth.tls }}
{{- $_ := set $nats "tls" (dict "ca_file" "/run/secrets/nats/ca.crt") }}
{{- end }}
{{- $_ := set $cfg "nats" $nats }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
sendid.render prints an object (YAML from template .tpl) with .merge
merged over it, like the NATS chart's merge values.
*/}}
{{- define "sendid.render" -}}
{{- $obj := include .tpl .ctx | fromYaml }}
{{- if $obj.Error }}{{ fail (printf "%s: %s" .tpl $obj.Error) }}{{ end }}
{{- toYaml (mergeOverwrite $obj (deepCopy (.merge | default dict))) }}
{{- end }}
