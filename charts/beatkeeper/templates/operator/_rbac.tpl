{{/*
The operator's permissions. manifests/rbac/ holds the same rules as plain manifests and
tests/chart asserts the two agree: change both together.

The operator runs kopf in standalone mode (one replica, Deployment strategy Recreate), so
it needs no kopf.dev peering resources.
*/}}

{{/* Rules needed in every namespace the operator serves. */}}
{{- define "beatkeeper.operator.namespacedRules" -}}
# Watch Schedules and patch them: kopf's finalizer (beatkeeper.io/finalizer) and its
# progress annotations live on the object. get is for the operator's own re-reads.
- apiGroups: [beatkeeper.io]
  resources: [schedules]
  verbs: [get, list, watch, patch]
# Write status: conditions, nextRunTimes, lastRun, counts.
- apiGroups: [beatkeeper.io]
  resources: [schedules/status]
  verbs: [patch]
# Post Events about reconciliation; kopf posts to the core v1 events API.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
Rules only a cluster-wide operator gets. kopf watches CRDs to notice the Schedule CRD being
created or changed after it started (without this it scans once at startup and warns).
Namespaces are not listed: kopf observes namespaces only when it serves a list of
namespaces, and then a Role cannot grant that (namespaces are cluster-scoped), so the
operator must run with kopf's scanning disabled and serve the exact names it is given.
*/}}
{{- define "beatkeeper.operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{- define "beatkeeper.operator.clusterRoleName" -}}
{{- printf "%s-%s" .Release.Namespace (include "beatkeeper.componentName" (list . "operator")) | trunc 63 | trimSuffix "-" }}
{{- end }}
