{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "logaas-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: release-chart, or the release name when it already contains the chart
name; truncated so that suffixed names (-tls, -agent, -daemonset) stay within 63 characters.
*/}}
{{- define "logaas-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "logaas-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries (no component). */}}
{{- define "logaas-webhook.baseLabels" -}}
helm.sh/chart: {{ include "logaas-webhook.chart" . }}
app.kubernetes.io/name: {{ include "logaas-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: logaas-webhook
{{- end }}

{{/* Labels of the webhook's objects. */}}
{{- define "logaas-webhook.labels" -}}
{{ include "logaas-webhook.baseLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Selector labels of the webhook pods. */}}
{{- define "logaas-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logaas-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Labels of the DaemonSet companion. */}}
{{- define "logaas-webhook.companionLabels" -}}
{{ include "logaas-webhook.baseLabels" . }}
app.kubernetes.io/component: daemonset-companion
{{- end }}

{{- define "logaas-webhook.companionSelectorLabels" -}}
app.kubernetes.io/name: {{ include "logaas-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: daemonset-companion
{{- end }}

{{/* ServiceAccount of the webhook. */}}
{{- define "logaas-webhook.serviceAccountName" -}}
{{- include "logaas-webhook.fullname" . }}
{{- end }}

{{/* Names shared between templates. */}}
{{- define "logaas-webhook.tlsSecretName" -}}
{{- if eq .Values.tls.mode "provided" }}
{{- required "tls.provided.secretName is required with tls.mode=provided: the name of a kubernetes.io/tls Secret in the release namespace" .Values.tls.provided.secretName }}
{{- else }}
{{- printf "%s-tls" (include "logaas-webhook.fullname" .) }}
{{- end }}
{{- end }}

{{- define "logaas-webhook.companionName" -}}
{{- printf "%s-daemonset" (include "logaas-webhook.fullname" .) }}
{{- end }}

{{/*
The name `logaas-webhook daemonset` gives the agent's ServiceAccount, ClusterRole(Binding),
ConfigMap and DaemonSet (webhook/daemonset: <prefix>-agent with prefix "logaas"); the
companion's RBAC is limited to it. tests/test_chart.py runs the companion against this RBAC.
*/}}
{{- define "logaas-webhook.agentName" -}}
logaas-agent
{{- end }}

{{/* The credentials Secret name: the existing one, or the one the chart creates. */}}
{{- define "logaas-webhook.credentialsSecretName" -}}
{{- default .Values.credentials.name .Values.credentials.existingSecret }}
{{- end }}

{{/* image reference: repository@digest or repository:tag (appVersion by default). */}}
{{- define "logaas-webhook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Namespaces no webhook entry ever selects. */}}
{{- define "logaas-webhook.excludedNamespaces" -}}
{{- $all := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace }}
{{- range .Values.logaas.excludedNamespaces }}
{{- $all = append $all . }}
{{- end }}
{{- toYaml (uniq $all) }}
{{- end }}

{{/* The caBundle to render: only tls.mode=provided knows it at install time. */}}
{{- define "logaas-webhook.caBundle" -}}
{{- if eq .Values.tls.mode "provided" }}
{{- $_ := include "logaas-webhook.tlsSecretName" . }}
{{- $bundle := required "tls.provided.caBundle is required with tls.mode=provided: base64 of the PEM CA certificate(s)" .Values.tls.provided.caBundle }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $bundle)) }}
{{- fail "tls.provided.caBundle must be the base64 encoding of PEM CA certificate(s) (-----BEGIN CERTIFICATE-----)" }}
{{- end }}
{{- $bundle }}
{{- end }}
{{- end }}

{{/* Checks that make a broken install fail at template time with a clear message. */}}
{{- define "logaas-webhook.validate" -}}
{{- $_ := required "logaas.projectId is required: the Cloud.ru project ID (--set logaas.projectId=...)" .Values.logaas.projectId }}
{{- $_ = required "logaas.groupId is required: the default LogaaS log group ID (--set logaas.groupId=...)" .Values.logaas.groupId }}
{{- if not .Values.credentials.existingSecret }}
{{- if or (not .Values.credentials.clientId) (not .Values.credentials.clientSecret) }}
{{- fail "credentials: set credentials.existingSecret to the name of a Secret holding the service account key (recommended), or both credentials.clientId and credentials.clientSecret to have the chart create it" }}
{{- end }}
{{- end }}
{{- $_ = include "logaas-webhook.caBundle" . }}
{{- if and .Values.sidecar.native (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "sidecar.native=true needs Kubernetes 1.29 or later (native sidecars) and this cluster is %s: set sidecar.native=false" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and .Values.credentials.existingSecret (or .Values.credentials.clientId .Values.credentials.clientSecret) }}
{{- fail "credentials: credentials.existingSecret and credentials.clientId/clientSecret are mutually exclusive" }}
{{- end }}
{{- end }}

{{/* The webhook's config file: the fields of webhook/settings.py Settings. */}}
{{- define "logaas-webhook.config" -}}
{{- $l := .Values.logaas }}
{{- $s := .Values.sidecar }}
{{- $config := dict
  "logaas_address" $l.logaasAddress
  "iam_address" $l.iamAddress
  "project_id" $l.projectId
  "group_id" $l.groupId
  "default_labels" $l.defaultLabels
  "log_path" $l.logPath
  "log_files" $l.logFiles
  "parsers" $l.parsers
  "excluded_namespaces" $l.excludedNamespaces
  "own_namespace" .Release.Namespace
  "inject_host_network" $l.injectHostNetwork
  "group_policy" $l.groupPolicy
  "credentials" (dict
    "secret_name" (include "logaas-webhook.credentialsSecretName" .)
    "client_id_key" .Values.credentials.clientIdKey
    "client_secret_key" .Values.credentials.clientSecretKey)
  "sidecar" (dict
    "image" (printf "%s:%s" $s.image.repository $s.image.tag)
    "pull_policy" $s.image.pullPolicy
    "native" $s.native
    "cpu_request" $s.resources.requests.cpu
    "memory_request" $s.resources.requests.memory
    "cpu_limit" $s.resources.limits.cpu
    "memory_limit" $s.resources.limits.memory
    "http_port" $s.httpPort
    "run_as_user" $s.runAsUser
    "logs_size_limit" $s.logsSizeLimit
    "state_size_limit" $s.stateSizeLimit
    "mem_buf_limit" $s.memBufLimit
    "storage_limit" $s.storageLimit
    "flush_seconds" $s.flushSeconds) }}
{{- toYaml $config }}
{{- end }}
