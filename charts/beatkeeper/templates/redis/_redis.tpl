{{/*
The built-in Redis's maxmemory in bytes: redis.maxmemory when set, else 80% of the
container's memory limit (the rest is headroom for the append-only file rewrite's fork,
client buffers and fragmentation). Empty with neither: Redis then runs unbounded.
*/}}
{{- define "beatkeeper.redis.maxmemory" -}}
{{- $redis := .Values.redis }}
{{- if $redis.maxmemory }}
{{- $redis.maxmemory }}
{{- else if and $redis.resources.limits $redis.resources.limits.memory }}
{{- $limit := toString $redis.resources.limits.memory }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $limit }}
{{- $unit := trimPrefix $number $limit }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if or (not $number) (not (hasKey $units $unit)) }}
{{- fail (printf "redis.resources.limits.memory %q is not a memory quantity beatkeeper can read (e.g. 512Mi, 1Gi); set redis.maxmemory" $limit) }}
{{- end }}
{{- mulf (float64 $number) (float64 (get $units $unit)) 0.8 | floor | int64 }}
{{- end }}
{{- end }}
