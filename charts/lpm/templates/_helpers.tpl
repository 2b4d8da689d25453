{{/*
Labels on every object. app.kubernetes.io/part-of is also in config/;
the Helm labels are the ones make verify ignores when it compares the
chart with config/default.
*/}}
{{- define "lpm.labels" -}}
app.kubernetes.io/part-of: lpm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "lpm.controller.labels" -}}
app.kubernetes.io/name: lpm-controller
{{ include "lpm.labels" . }}
{{- end }}

{{- define "lpm.agent.labels" -}}
app.kubernetes.io/name: lpm-agent
{{ include "lpm.labels" . }}
{{- end }}

{{/*
Labels of the pod templates. Selectors use app.kubernetes.io/name only,
so they never change on an upgrade.
*/}}
{{- define "lpm.controller.podLabels" -}}
app.kubernetes.io/name: lpm-controller
app.kubernetes.io/part-of: lpm
{{- end }}

{{- define "lpm.agent.podLabels" -}}
app.kubernetes.io/name: lpm-agent
app.kubernetes.io/part-of: lpm
{{- end }}

{{- define "lpm.image" -}}
{{ .repository }}:{{ .tag }}
{{- end }}

{{/*
The rules of a generated ClusterRole in files/, which make generate copies
from config/rbac.
*/}}
{{- define "lpm.generatedRules" -}}
{{- $role := .Files.Get .path | fromYaml -}}
{{- if not $role.rules }}
{{- fail (printf "%s has no rules: run make generate" .path) }}
{{- end }}
{{- toYaml $role.rules }}
{{- end }}
