{{/*
Where the database and broker credentials come from, the environment every beatkeeper
process reads, and the checks that fail a release with a clear message.
*/}}

{{- define "beatkeeper.database.secretName" -}}
{{- if .Values.postgresql.enabled }}
{{- include "beatkeeper.componentName" (list . "postgresql") }}
{{- else }}
{{- .Values.externalDatabase.existingSecret }}
{{- end }}
{{- end }}

{{- define "beatkeeper.database.secretKey" -}}
{{- if .Values.postgresql.enabled }}database-url{{ else }}{{ .Values.externalDatabase.existingSecretKey }}{{ end }}
{{- end }}

{{- define "beatkeeper.broker.secretName" -}}
{{- if .Values.redis.enabled }}
{{- include "beatkeeper.componentName" (list . "redis") }}
{{- else }}
{{- .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "beatkeeper.broker.secretKey" -}}
{{- if .Values.redis.enabled }}broker-url{{ else }}{{ .Values.externalRedis.existingSecretKey }}{{ end }}
{{- end }}

{{/*
The Secret and key holding a built-in server's password: the user's (auth.existingSecret,
for GitOps, where `helm template` cannot look up a generated one) or the generated one.
Call with (list . "postgresql") or (list . "redis").
*/}}
{{- define "beatkeeper.builtin.passwordSecret" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $auth := (index $root.Values $component).auth }}
{{- $auth.existingSecret | default (include "beatkeeper.componentName" (list $root $component)) }}
{{- end }}

{{- define "beatkeeper.builtin.passwordKey" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $auth := (index $root.Values $component).auth }}
{{- if $auth.existingSecret }}{{ $auth.existingSecretPasswordKey }}{{ else }}{{ get (dict "postgresql" "postgres-password" "redis" "redis-password") $component }}{{ end }}
{{- end }}

{{/*
A URL environment variable for a built-in server whose password is in the user's Secret:
the password comes first as its own variable, and the URL refers to it with Kubernetes'
$(VAR) expansion, so no URL is ever stored. Call with (dict "ctx" . "component" name
"variable" BEATKEEPER_* "url" format with one %s for the password).
*/}}
{{- define "beatkeeper.builtin.urlFromPassword" -}}
{{- $passwordVariable := printf "BUILTIN_%s_PASSWORD" (upper .component) -}}
- name: {{ $passwordVariable }}
  valueFrom:
    secretKeyRef:
      name: {{ include "beatkeeper.builtin.passwordSecret" (list .ctx .component) }}
      key: {{ include "beatkeeper.builtin.passwordKey" (list .ctx .component) }}
- name: {{ .variable }}
  value: {{ printf .url (printf "$(%s)" $passwordVariable) | quote }}
{{- end }}

{{/*
Fails the release on settings that cannot work. values.schema.json catches most of these
first; these remain for `--skip-schema-validation` and for rules a schema states poorly.
*/}}
{{- define "beatkeeper.validate" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.externalDatabase.existingSecret) }}
{{- fail "no database configured: set postgresql.enabled=true, or externalDatabase.existingSecret to a Secret holding the database URL" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.existingSecret) }}
{{- fail "no Redis configured: set redis.enabled=true, or externalRedis.existingSecret to a Secret holding the broker URL" }}
{{- end }}
{{- include "beatkeeper.worker.validate" . }}
{{- if and .Values.flower.enabled (eq .Values.flower.auth.mode "none") (not .Values.flower.readOnly) }}
{{- fail "flower.auth.mode=none needs flower.readOnly=true: anonymous users must not shut down workers or revoke tasks" }}
{{- end }}
{{- if and .Values.flower.enabled (eq .Values.flower.auth.mode "oauth") (not .Values.flower.auth.oauth.existingSecret) }}
{{- fail "flower.auth.mode=oauth needs flower.auth.oauth.existingSecret (a Secret with the OAuth client id and secret)" }}
{{- end }}
{{- if and .Values.flower.enabled (eq .Values.flower.auth.mode "oauth") (not (trim .Values.flower.auth.oauth.emails)) }}
{{- fail "flower.auth.mode=oauth needs flower.auth.oauth.emails (a regular expression of the e-mail addresses allowed in): with none, Flower lets in anyone" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (or (not .Values.postgresql.enabled) (not .Values.redis.enabled)) (not .Values.networkPolicy.extraEgress) }}
{{- fail "networkPolicy.enabled with an external database or Redis needs networkPolicy.extraEgress rules that reach them (see docs/install.md, Network policies)" }}
{{- end }}
{{- end }}

{{/*
Settings environment of a beatkeeper container. Call with (dict "ctx" . "database" bool
"broker" bool "extraEnv" list). Each process gets only the credentials it uses: the
operator, migrations and the smoke test never talk to Celery; Flower never to PostgreSQL.
*/}}
{{- define "beatkeeper.env" -}}
{{- $ctx := .ctx -}}
{{- $pg := $ctx.Values.postgresql -}}
{{- $redis := $ctx.Values.redis -}}
{{- if and .database $pg.enabled $pg.auth.existingSecret }}
{{- $url := printf "postgresql+psycopg://%s:%%s@%s:5432/%s" $pg.username (include "beatkeeper.componentName" (list $ctx "postgresql")) $pg.database }}
{{ include "beatkeeper.builtin.urlFromPassword" (dict "ctx" $ctx "component" "postgresql" "variable" "BEATKEEPER_DATABASE_URL" "url" $url) }}
{{- else if .database }}
- name: BEATKEEPER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "beatkeeper.database.secretName" $ctx }}
      key: {{ include "beatkeeper.database.secretKey" $ctx }}
{{- end }}
{{- if and .broker $redis.enabled $redis.auth.existingSecret }}
{{- $url := printf "redis://:%%s@%s:6379/0" (include "beatkeeper.componentName" (list $ctx "redis")) }}
{{ include "beatkeeper.builtin.urlFromPassword" (dict "ctx" $ctx "component" "redis" "variable" "BEATKEEPER_BROKER_URL" "url" $url) }}
{{- else if .broker }}
- name: BEATKEEPER_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "beatkeeper.broker.secretName" $ctx }}
      key: {{ include "beatkeeper.broker.secretKey" $ctx }}
{{- end }}
- name: BEATKEEPER_DB_SCHEMA
  value: {{ $ctx.Values.config.dbSchema | quote }}
- name: BEATKEEPER_LOG_FORMAT
  value: {{ $ctx.Values.config.logFormat | quote }}
- name: BEATKEEPER_LOG_LEVEL
  value: {{ $ctx.Values.config.logLevel | quote }}
- name: BEATKEEPER_METRICS_PORT
  value: {{ $ctx.Values.config.metricsPort | quote }}
- name: BEATKEEPER_METRICS_SCHEDULE_LABELS
  value: {{ $ctx.Values.config.metricsScheduleLabels | quote }}
- name: BEATKEEPER_METRICS_SCHEDULE_LIMIT
  value: {{ $ctx.Values.config.metricsScheduleLimit | quote }}
{{- with $ctx.Values.config.imports }}
- name: BEATKEEPER_IMPORTS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $ctx.Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "beatkeeper.envFrom" -}}
{{- with .Values.config.extraEnvFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whether operator, beat and worker wait for the schema in an init container. */}}
{{- define "beatkeeper.migrations.waitInPods" -}}
{{- if or (not .Values.migrations.useHelmHooks) .Values.postgresql.enabled }}true{{ end }}
{{- end }}

{{/*
The init container that holds a pod until the schema is at head. It never migrates:
`beatkeeper migrate --wait` only watches.
*/}}
{{- define "beatkeeper.migrations.waitContainer" -}}
{{- if include "beatkeeper.migrations.waitInPods" . }}
- name: wait-for-migrations
  image: {{ include "beatkeeper.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["beatkeeper", "migrate", "--wait", "--timeout", {{ .Values.migrations.waitTimeout | quote }}]
  env:
    {{- include "beatkeeper.env" (dict "ctx" . "database" true) | trim | nindent 4 }}
  securityContext:
    {{- include "beatkeeper.securityContext" (list . .Values.migrations) | nindent 4 }}
  resources:
    {{- toYaml .Values.migrations.resources | nindent 4 }}
  volumeMounts:
    {{- include "beatkeeper.tmpVolumeMount" . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
A pod's initContainers: wait-for-migrations first (when "waitForMigrations" and the
release needs it), then the component's own `initContainers`, as given. Nothing when
both are empty. Call with (dict "ctx" . "component" .Values.<component>
"waitForMigrations" bool).
*/}}
{{- define "beatkeeper.initContainers" -}}
{{- $wait := "" }}
{{- if .waitForMigrations }}
{{- $wait = include "beatkeeper.migrations.waitContainer" .ctx | trim }}
{{- end }}
{{- if or $wait .component.initContainers }}
initContainers:
{{- with $wait }}
  {{- . | nindent 2 }}
{{- end }}
{{- with .component.initContainers }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
