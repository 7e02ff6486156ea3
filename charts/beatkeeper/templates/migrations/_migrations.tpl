{{/*
Migration hook phases. An external database exists before the release, so the schema is
upgraded before any pod starts (pre-install). The built-in PostgreSQL is created by the
release itself, so on a first install the migration can only run after it (post-install),
and operator, beat and worker wait for it in their wait-for-migrations init containers.
*/}}
{{- define "beatkeeper.migrations.hookPhases" -}}
{{- if .Values.postgresql.enabled }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}

{{/*
The Job's name. A hook Job is replaced on every run (before-hook-creation). A plain Job's
pod template is immutable, so its name carries a hash of the whole rendered pod template
(image, command, environment, resources, scheduling...): any change to what the pod runs
makes a new Job, which Argo CD / Flux / helm apply as a new object, and an unchanged one
keeps its name.
*/}}
{{- define "beatkeeper.migrations.jobName" -}}
{{- $base := include "beatkeeper.componentName" (list . "migrate") }}
{{- if .Values.migrations.useHelmHooks }}
{{- $base }}
{{- else }}
{{- $fingerprint := include "beatkeeper.migrations.podTemplate" . | sha256sum | trunc 8 }}
{{- printf "%s-%s" ($base | trunc 54 | trimSuffix "-") $fingerprint }}
{{- end }}
{{- end }}

{{/* The Job's pod template (spec.template), also what the plain Job's name hashes. */}}
{{- define "beatkeeper.migrations.podTemplate" -}}
{{- $component := .Values.migrations -}}
metadata:
  labels:
    {{- include "beatkeeper.labels" (list . "migrate") | nindent 4 }}
    {{- with $component.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $component.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  {{- if $component.useHelmHooks }}
  serviceAccountName: {{ include "beatkeeper.componentName" (list . "migrate") }}
  {{- else }}
  serviceAccountName: {{ include "beatkeeper.componentName" (list . "workload") }}
  {{- end }}
  automountServiceAccountToken: false
  {{- with include "beatkeeper.imagePullSecrets" . }}{{- . | trim | nindent 2 }}{{- end }}
  securityContext:
    {{- include "beatkeeper.podSecurityContext" (list . $component) | nindent 4 }}
  {{- with include "beatkeeper.scheduling" $component }}{{- . | trim | nindent 2 }}{{- end }}
  {{- if .Values.postgresql.enabled }}
  initContainers:
    {{- include "beatkeeper.postgresql.waitContainer" . | nindent 4 }}
  {{- end }}
  containers:
    - name: migrate
      image: {{ include "beatkeeper.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["beatkeeper", "migrate"]
      env:
        {{- include "beatkeeper.env" (dict "ctx" . "database" true "extraEnv" $component.extraEnv) | trim | nindent 8 }}
      {{- with include "beatkeeper.envFrom" . }}{{- . | trim | nindent 6 }}{{- end }}
      securityContext:
        {{- include "beatkeeper.securityContext" (list . $component) | nindent 8 }}
      resources:
        {{- toYaml $component.resources | nindent 8 }}
      volumeMounts:
        {{- include "beatkeeper.tmpVolumeMount" . | nindent 8 }}
  volumes:
    {{- include "beatkeeper.tmpVolume" . | nindent 4 }}
{{- end }}

{{/*
Holds a pod until the built-in PostgreSQL accepts connections. pg_isready reads its
target from the PG* variables. PGUSER is not optional: the container runs as a uid with
no passwd entry in the postgres image, and without a user name libpq makes no attempt
at all (pg_isready exits 3, "no attempt") however ready the server is.
*/}}
{{- define "beatkeeper.postgresql.waitContainer" -}}
- name: wait-for-postgresql
  image: {{ printf "%s:%s" .Values.postgresql.image.repository .Values.postgresql.image.tag }}
  imagePullPolicy: {{ .Values.postgresql.image.pullPolicy }}
  command:
    - sh
    - -c
    - until pg_isready --quiet; do echo "waiting for PostgreSQL at $PGHOST:$PGPORT"; sleep 2; done
  env:
    - name: PGHOST
      value: {{ include "beatkeeper.componentName" (list . "postgresql") }}
    - name: PGPORT
      value: "5432"
    - name: PGUSER
      value: {{ .Values.postgresql.username | quote }}
    - name: PGDATABASE
      value: {{ .Values.postgresql.database | quote }}
    - name: PGCONNECT_TIMEOUT
      value: "5"
  securityContext:
    {{- include "beatkeeper.securityContext" (list . .Values.migrations) | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 64Mi}
  volumeMounts:
    {{- include "beatkeeper.tmpVolumeMount" . | nindent 4 }}
{{- end }}
