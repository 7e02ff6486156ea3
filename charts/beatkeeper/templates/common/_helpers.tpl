{{/*
Names, labels and the image. Every resource name is "<fullname>-<component>".
*/}}

{{- define "beatkeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "beatkeeper.fullname" -}}
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

{{/* "<fullname>-<component>", cut to fit a DNS label. Call with (list . "component"). */}}
{{- define "beatkeeper.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "beatkeeper.fullname" $root | trunc 40 | trimSuffix "-") (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "beatkeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels; call with (list . "component"). Never change them: selectors are immutable. */}}
{{- define "beatkeeper.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "beatkeeper.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Every label of a resource; call with (list . "component"). */}}
{{- define "beatkeeper.labels" -}}
{{- $root := index . 0 -}}
{{ include "beatkeeper.selectorLabels" . }}
helm.sh/chart: {{ include "beatkeeper.chart" $root }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: beatkeeper
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the pods NetworkPolicies treat as "beatkeeper pods" of this release. */}}
{{- define "beatkeeper.releasePodLabels" -}}
app.kubernetes.io/name: {{ include "beatkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "beatkeeper.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "beatkeeper.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Security contexts for pods running the beatkeeper image: the component's own when set,
else the chart-wide one. Call with (list . .Values.<component>).
*/}}
{{- define "beatkeeper.podSecurityContext" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- toYaml (default $root.Values.podSecurityContext $component.podSecurityContext) }}
{{- end }}

{{- define "beatkeeper.securityContext" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- toYaml (default $root.Values.securityContext $component.securityContext) }}
{{- end }}

{{/* nodeSelector, tolerations, affinity, spread and priority of a component's pods. */}}
{{- define "beatkeeper.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* Probe timings from values; the handler is written by each template. */}}
{{- define "beatkeeper.probeTiming" -}}
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end }}

{{/* The writable /tmp of every container (the root filesystem is read-only). */}}
{{- define "beatkeeper.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end }}

{{- define "beatkeeper.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
A generated secret value that survives upgrades: the value already stored in the named
Secret when there is one (lookup), else a new random string. `helm template` and
--dry-run cannot look up, so they always show a fresh value; a real install or upgrade
keeps the stored one. Call with (dict "ctx" . "name" <secret> "key" <key> "length" <n>).
*/}}
{{- define "beatkeeper.keptRandom" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
