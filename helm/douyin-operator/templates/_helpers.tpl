{{- define "douyin-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "douyin-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "douyin-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "douyin-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "douyin-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "douyin-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: douyin
{{- end }}

{{- define "douyin-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "douyin-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image: global.imageRegistry wins over image.registry, a digest over the tag.
*/}}
{{- define "douyin-operator.image" -}}
{{- $registry := .Values.global.imageRegistry | default .Values.image.registry | default "" -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end }}

{{/*
The operator's RBAC rules, the same as k8s/operator/rbac.yaml (.ci/operator-check.sh
compares both with the API calls the operator makes).
*/}}
{{- define "douyin-operator.rules" -}}
# the custom resource: watch it, add/remove the finalizer, write status
- apiGroups: ["douyin.rs"]
  resources: ["douyinenvironments"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["douyin.rs"]
  resources: ["douyinenvironments/status"]
  verbs: ["patch"]
# owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement)
- apiGroups: ["douyin.rs"]
  resources: ["douyinenvironments/finalizers"]
  verbs: ["update"]
# credentials and application Secrets (server-side apply), external backends'
# Secrets (get by name); list/watch: a Secret deleted by hand is restored at once
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "patch", "delete"]
# claims: found before credentials are generated or a StatefulSet removed;
# deletionPolicy Delete removes an environment's claims by label
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "deletecollection"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# the MinIO bucket Job
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events about environments (a repeated Event is patched into a series)
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
