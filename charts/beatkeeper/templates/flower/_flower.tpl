{{/* The path Flower serves under, without a trailing slash ("" for the root). */}}
{{- define "beatkeeper.flower.path" -}}
{{- with trimAll "/" .Values.flower.urlPrefix }}/{{ . }}{{ end }}
{{- end }}

{{/* Flower's auth handler classes by short provider name. */}}
{{- define "beatkeeper.flower.authProvider" -}}
{{- $providers := dict "google" "flower.views.auth.GoogleAuth2LoginHandler" "github" "flower.views.auth.GithubLoginHandler" "gitlab" "flower.views.auth.GitLabLoginHandler" "okta" "flower.views.auth.OktaLoginHandler" }}
{{- get $providers .Values.flower.auth.oauth.provider | default .Values.flower.auth.oauth.provider }}
{{- end }}

{{/* Authentication environment: basic auth or OAuth, never neither unless mode is none. */}}
{{- define "beatkeeper.flower.authEnv" -}}
{{- $auth := .Values.flower.auth }}
{{- $generated := include "beatkeeper.componentName" (list . "flower") -}}
- name: FLOWER_COOKIE_SECRET
  valueFrom:
    secretKeyRef:
      {{- if $auth.cookie.existingSecret }}
      name: {{ $auth.cookie.existingSecret }}
      key: {{ $auth.cookie.existingSecretKey }}
      {{- else }}
      name: {{ $generated }}
      key: cookie-secret
      {{- end }}
{{- if eq $auth.mode "basic" }}
- name: FLOWER_BASIC_AUTH
  valueFrom:
    secretKeyRef:
      {{- if $auth.basic.existingSecret }}
      name: {{ $auth.basic.existingSecret }}
      key: {{ $auth.basic.existingSecretKey }}
      {{- else }}
      name: {{ $generated }}
      key: basic-auth
      {{- end }}
{{- else if eq $auth.mode "oauth" }}
- name: FLOWER_AUTH_PROVIDER
  value: {{ include "beatkeeper.flower.authProvider" . | quote }}
- name: FLOWER_AUTH
  value: {{ $auth.oauth.emails | quote }}
- name: FLOWER_OAUTH2_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $auth.oauth.existingSecret }}
      key: {{ $auth.oauth.clientIdKey }}
- name: FLOWER_OAUTH2_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $auth.oauth.existingSecret }}
      key: {{ $auth.oauth.clientSecretKey }}
- name: FLOWER_OAUTH2_REDIRECT_URI
  value: {{ $auth.oauth.redirectUri | quote }}
{{- end }}
{{- end }}
