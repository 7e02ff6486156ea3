{{/*
The validating admission webhook the operator serves. Names and settings shared by the
webhook configuration, its Service, certificates, RBAC and the operator's pod spec.
*/}}

{{/* The ValidatingWebhookConfiguration (cluster-scoped, so the namespace is in its name). */}}
{{- define "beatkeeper.webhook.configurationName" -}}
{{- printf "%s-%s" .Release.Namespace (include "beatkeeper.componentName" (list . "webhook")) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "beatkeeper.webhook.serviceName" -}}
{{- include "beatkeeper.componentName" (list . "webhook") }}
{{- end }}

{{/* The names the API server may use for the Service (the certificate's DNS names). */}}
{{- define "beatkeeper.webhook.hosts" -}}
{{- $service := include "beatkeeper.webhook.serviceName" . }}
{{- $ns := .Release.Namespace }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local,%s.%s,%s" $service $ns $service $ns $service $ns $service }}
{{- end }}

{{- define "beatkeeper.webhook.certificateName" -}}
{{- include "beatkeeper.componentName" (list . "webhook") }}
{{- end }}

{{/* The operator container's environment for the webhook. */}}
{{- define "beatkeeper.webhook.env" -}}
{{- if .Values.webhook.enabled }}
- name: BEATKEEPER_WEBHOOK_PORT
  value: {{ .Values.webhook.port | quote }}
- name: BEATKEEPER_WEBHOOK_CERT_DIR
  value: /run/beatkeeper/webhook
- name: BEATKEEPER_WEBHOOK_HOSTS
  value: {{ include "beatkeeper.webhook.hosts" . | quote }}
{{- if .Values.webhook.certManager.enabled }}
- name: BEATKEEPER_WEBHOOK_CERTIFICATES
  value: files
{{- else }}
- name: BEATKEEPER_WEBHOOK_CERTIFICATES
  value: self-signed
- name: BEATKEEPER_WEBHOOK_CONFIGURATION
  value: {{ include "beatkeeper.webhook.configurationName" . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the operator reads (cert-manager) or writes (self-signed) the certificates. */}}
{{- define "beatkeeper.webhook.volume" -}}
{{- if .Values.webhook.enabled }}
- name: webhook-certificates
  {{- if .Values.webhook.certManager.enabled }}
  secret:
    secretName: {{ include "beatkeeper.webhook.certificateName" . }}
  {{- else }}
  # Memory-backed: the private key never touches a node's disk.
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
  {{- end }}
{{- end }}
{{- end }}

{{- define "beatkeeper.webhook.volumeMount" -}}
{{- if .Values.webhook.enabled }}
- name: webhook-certificates
  mountPath: /run/beatkeeper/webhook
  readOnly: {{ .Values.webhook.certManager.enabled }}
{{- end }}
{{- end }}
