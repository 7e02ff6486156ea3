{{- /*
The one tenancy policy (operator.policy, rendered into the ConfigMap of
operator/configmap-policy.yaml), mounted read-only into every component a run can start by:
the operator and its webhook refuse forbidden Schedules, Beat publishes no forbidden run,
workers execute no forbidden message. A policy change restarts them all (the checksum).
*/ -}}

{{- define "beatkeeper.policy.checksum" -}}
checksum/policy: {{ include (print .Template.BasePath "/operator/configmap-policy.yaml") . | sha256sum }}
{{- end }}

{{- define "beatkeeper.policy.env" -}}
- name: BEATKEEPER_POLICY_FILE
  value: /etc/beatkeeper/policy.yaml
{{- end }}

{{- define "beatkeeper.policy.volumeMount" -}}
- name: policy
  mountPath: /etc/beatkeeper
  readOnly: true
{{- end }}

{{- define "beatkeeper.policy.volume" -}}
- name: policy
  configMap:
    name: {{ include "beatkeeper.componentName" (list . "policy") }}
{{- end }}
