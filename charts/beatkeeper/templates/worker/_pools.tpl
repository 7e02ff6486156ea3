{{/*
Worker pools. `worker` itself is the default pool (component "worker": today's names, so an
upgrade renames nothing); each entry of worker.pools is one more Deployment (component
"worker-<pool>") with its own queues, concurrency, resources, autoscaling, budget and node
placement. A key a pool leaves out inherits worker's value; maps (resources, autoscaling,
keda, pdb, nodeSelector, ...) merge key by key, lists (queues, tolerations, ...) replace.
*/}}

{{/*
`base` with `override` laid over it; maps merge recursively, anything else (false, 0 and
null included, unlike sprig's mergeOverwrite) replaces. Returns JSON: call with
(list base override) and read it with fromJson.
*/}}
{{- define "beatkeeper.deepMerge" -}}
{{- $merged := deepCopy (index . 0) }}
{{- range $key, $value := index . 1 }}
{{- $current := index $merged $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := set $merged $key (include "beatkeeper.deepMerge" (list $current $value) | fromJson) }}
{{- else }}
{{- $_ := set $merged $key $value }}
{{- end }}
{{- end }}
{{- toJson $merged }}
{{- end }}

{{/*
Every pool to run, as JSON {"pools": [{"name", "component", "values"}]}: the default pool
first (unless worker.enabled is false), then worker.pools in name order.
*/}}
{{- define "beatkeeper.worker.pools" -}}
{{- $base := omit .Values.worker "pools" "enabled" }}
{{- $pools := list }}
{{- if .Values.worker.enabled }}
{{- $pools = append $pools (dict "name" "" "component" "worker" "values" $base) }}
{{- end }}
{{- range $name := keys (.Values.worker.pools | default dict) | sortAlpha }}
{{- $pool := index $.Values.worker.pools $name | default dict }}
{{- if or (not (hasKey $pool "enabled")) $pool.enabled }}
{{- $values := include "beatkeeper.deepMerge" (list $base (omit $pool "enabled")) | fromJson }}
{{- $pools = append $pools (dict "name" $name "component" (printf "worker-%s" $name) "values" $values) }}
{{- end }}
{{- end }}
{{- toJson (dict "pools" $pools) }}
{{- end }}

{{/* Whether any pool scales with KEDA (the built-in Redis then admits KEDA's namespace). */}}
{{- define "beatkeeper.worker.anyKeda" -}}
{{- range (include "beatkeeper.worker.pools" . | fromJson).pools }}
{{- if .values.keda.enabled }}true{{ end }}
{{- end }}
{{- end }}

{{/* Fails on a pool setting that cannot work; names the pool's values key. */}}
{{- define "beatkeeper.worker.validate" -}}
{{- range $pool := (include "beatkeeper.worker.pools" . | fromJson).pools }}
{{- $key := ternary "worker" (printf "worker.pools.%s" $pool.name) (eq $pool.name "") }}
{{- $values := $pool.values }}
{{- if and $values.autoscaling.enabled $values.keda.enabled }}
{{- fail (printf "%s.autoscaling.enabled and %s.keda.enabled are mutually exclusive: KEDA creates its own HorizontalPodAutoscaler; enable one of them" $key $key) }}
{{- end }}
{{- if and $values.keda.enabled (not $.Values.redis.enabled) (not $values.keda.redis.address) }}
{{- fail (printf "%s.keda.enabled with an external Redis needs %s.keda.redis.address (host:port) for KEDA's redis trigger" $key $key) }}
{{- end }}
{{- if not $values.queues }}
{{- fail (printf "%s.queues must name at least one queue" $key) }}
{{- end }}
{{- end }}
{{- end }}
