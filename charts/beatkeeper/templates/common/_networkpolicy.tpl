{{/*
NetworkPolicy building blocks. Each component's policy lives in its own folder and allows
only what that component does; everything else is denied once a policy selects the pod.
*/}}

{{/*
A NetworkPolicy for one beatkeeper component. Call with (dict "ctx" . "component" name
"database" bool "broker" bool "apiServer" bool "metrics" bool "restrictEgress" bool
"webhook" bool).
*/}}
{{- define "beatkeeper.networkPolicy" -}}
{{- $ctx := .ctx }}
{{- $np := $ctx.Values.networkPolicy }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "beatkeeper.componentName" (list $ctx .component) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "beatkeeper.labels" (list $ctx .component) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "beatkeeper.selectorLabels" (list $ctx .component) | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if .restrictEgress }}
    - Egress
    {{- end }}
  {{- if not (or .metrics .webhook) }}
  ingress: []
  {{- else }}
  ingress:
    {{- if .metrics }}
    # Prometheus scrapes /metrics.
    - from:
        - namespaceSelector:
            {{- toYaml $np.metrics.namespaceSelector | nindent 12 }}
      ports:
        - port: metrics
          protocol: TCP
    {{- end }}
    {{- if .webhook }}
    # The Kubernetes API server calls the validating webhook (it is not a pod: by address).
    - {{- with $np.kubeAPIServer.cidrs }}
      from:
        {{- range . }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      {{- end }}
      ports:
        - port: webhook
          protocol: TCP
    {{- end }}
  {{- end }}
  {{- if .restrictEgress }}
  egress:
    {{- include "beatkeeper.networkPolicy.dnsEgress" $ctx | nindent 4 }}
    {{- if and .database $ctx.Values.postgresql.enabled }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "beatkeeper.selectorLabels" (list $ctx "postgresql") | nindent 14 }}
      ports:
        - port: 5432
          protocol: TCP
    {{- end }}
    {{- if and .broker $ctx.Values.redis.enabled }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "beatkeeper.selectorLabels" (list $ctx "redis") | nindent 14 }}
      ports:
        - port: 6379
          protocol: TCP
    {{- end }}
    {{- if .apiServer }}
    # The Kubernetes API server (watching Schedules, writing status and Events).
    - {{- with $np.kubeAPIServer.cidrs }}
      to:
        {{- range . }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      {{- end }}
      ports:
        {{- range $np.kubeAPIServer.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- end }}
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}

{{- define "beatkeeper.networkPolicy.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
