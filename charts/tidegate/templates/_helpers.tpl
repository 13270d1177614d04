{{- define "tidegate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "tidegate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tidegate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tidegate.tag" -}}{{ default .Chart.AppVersion .Values.image.tag }}{{- end -}}
{{- define "tidegate.servicesImage" -}}{{ printf "%s/%s:%s" .Values.image.registry .Values.image.services (include "tidegate.tag" .) }}{{- end -}}
{{- define "tidegate.operatorImage" -}}{{ printf "%s/%s:%s" .Values.image.registry .Values.image.operator (include "tidegate.tag" .) }}{{- end -}}

{{/* The effective config/app.yml: values.config with exchange, NATS and Prometheus settings applied. */}}
{{- define "tidegate.appConfig" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "exchange" (merge (dict "mode" .Values.exchange.mode "venue" .Values.exchange.venue) (default (dict) $cfg.exchange)) -}}
{{- $_ := set $cfg "nats" (merge (dict "url" .Values.nats.url "kv_bucket" .Values.nats.kvBucket) (default (dict) $cfg.nats)) -}}
{{- $_ := set $cfg "prometheus" (merge (dict "url" .Values.prometheus.url) (default (dict) $cfg.prometheus)) -}}
{{- $_ := set $cfg "registry" (dict "root" "/var/lib/tidegate/registry") -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "tidegate.registryVolume" -}}
- name: registry
{{- if .Values.modelRegistry.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.modelRegistry.existingClaim }}
{{- else if .Values.modelRegistry.hostPath }}
  hostPath: {path: {{ .Values.modelRegistry.hostPath | quote }}, type: Directory}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* Pod-level networking: no service links ever (the pods address peers by config); hostNetwork
     for a node without a network plugin (the single-node test tier, values-node-test.yaml). */}}
{{- define "tidegate.podNetwork" -}}
enableServiceLinks: false
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- if .Values.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- end -}}

{{/* With hostNetwork a replacement pod needs the old one's ports: it cannot surge beside it on
     the same node (a default surge waits forever for the ports), so the old pod goes first.
     Recreate, not maxSurge 0: with maxUnavailable 1 a one-replica Deployment counts as
     available with no pod ready, and `helm --wait` would return before anything serves. */}}
{{- define "tidegate.strategy" -}}
{{- if .Values.hostNetwork -}}
strategy: {type: Recreate}
{{- end -}}
{{- end -}}
