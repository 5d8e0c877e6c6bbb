{{/*
Chart name, truncated to 63 characters (DNS label).
*/}}
{{- define "douyin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of the chart's resources (Deployments, ConfigMap, Jobs, …).
*/}}
{{- define "douyin.fullname" -}}
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

{{- define "douyin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels shared by every resource of the release.
*/}}
{{- define "douyin.labels" -}}
helm.sh/chart: {{ include "douyin.chart" . }}
{{ include "douyin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: douyin
{{- end }}

{{/*
Selects every pod of the release (the peers a gRPC role accepts calls from).
*/}}
{{- define "douyin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "douyin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector of one component. Takes (dict "root" $ "name" ROLE).
*/}}
{{- define "douyin.componentLabels" -}}
{{ include "douyin.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "douyin.componentSelectorLabels" -}}
{{ include "douyin.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "douyin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "douyin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference. Takes (dict "image" IMAGE "root" $ "defaultTag" TAG): global.imageRegistry
wins over image.registry, a digest wins over the tag.
*/}}
{{- define "douyin.imageRef" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry | default "" -}}
{{- $repository := .image.repository -}}
{{- if $registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.image.tag | default .defaultTag | toString) -}}
{{- end -}}
{{- end }}

{{/*
The app image (Deployments, migration Job, gRPC health test).
*/}}
{{- define "douyin.image" -}}
{{- include "douyin.imageRef" (dict "image" .Values.image "root" . "defaultTag" .Chart.AppVersion) -}}
{{- end }}

{{- define "douyin.configMapName" -}}
{{- printf "%s-config" (include "douyin.fullname" .) }}
{{- end }}

{{/*
Secret and key holding DOUYIN_JWT_SECRET.
*/}}
{{- define "douyin.jwtSecretName" -}}
{{- if .Values.jwt.existingSecret }}
{{- .Values.jwt.existingSecret }}
{{- else }}
{{- printf "%s-jwt" (include "douyin.fullname" .) }}
{{- end }}
{{- end }}

{{- define "douyin.jwtSecretKey" -}}
{{- if .Values.jwt.existingSecret }}
{{- .Values.jwt.existingSecretKey }}
{{- else -}}
DOUYIN_JWT_SECRET
{{- end }}
{{- end }}

{{/*
Secret and key holding DOUYIN_SERVICE_SECRET, the key of service credentials.
*/}}
{{- define "douyin.serviceAuthSecretName" -}}
{{- if .Values.serviceAuth.existingSecret }}
{{- .Values.serviceAuth.existingSecret }}
{{- else }}
{{- printf "%s-service-auth" (include "douyin.fullname" .) }}
{{- end }}
{{- end }}

{{- define "douyin.serviceAuthSecretKey" -}}
{{- if .Values.serviceAuth.existingSecret }}
{{- .Values.serviceAuth.existingSecretKey }}
{{- else -}}
DOUYIN_SERVICE_SECRET
{{- end }}
{{- end }}

{{- define "douyin.allInOne" -}}
{{- if eq .Values.mode "all-in-one" }}true{{ end }}
{{- end }}

{{/*
Service name of a role: services.<role>.serviceName, else <serviceNamePrefix>-<role>.
Takes (dict "root" $ "name" ROLE).
*/}}
{{- define "douyin.serviceName" -}}
{{- $svc := get .root.Values.services .name | default dict }}
{{- $svc.serviceName | default (printf "%s-%s" .root.Values.serviceNamePrefix .name) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
douyin.overlay: (dict "base" B "over" O) → YAML of B with every key of O laid
over it. Unlike sprig's merge helpers, an explicit false, 0 or "" in O wins; maps
are overlaid key by key.
*/}}
{{- define "douyin.overlay" -}}
{{- $out := deepCopy (.base | default dict) }}
{{- range $k, $v := (.over | default dict) }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $out $k)) }}
{{- $_ := set $out $k (include "douyin.overlay" (dict "base" (get $out $k) "over" $v) | fromYaml) }}
{{- else }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The components to deploy, as YAML: name → settings (defaults overlaid by the
component's own), each with `roles` (the args after `serve`), `gateway` and
`grpcService`. In all-in-one mode: a single `api` component running every role.
*/}}
{{- define "douyin.components" -}}
{{- $out := dict }}
{{- if include "douyin.allInOne" . }}
{{- $api := include "douyin.overlay" (dict "base" .Values.defaults "over" (.Values.services.api | default dict)) | fromYaml }}
{{- $_ := set $api "roles" (list "all") }}
{{- $_ := set $api "gateway" true }}
{{- $_ := set $api "grpcService" "" }}
{{- $_ := set $api "autoscaling" (dict "enabled" false) }}
{{- $_ := set $api "replicas" 1 }}
{{- $_ := set $out "api" $api }}
{{- else }}
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}
{{- $c := include "douyin.overlay" (dict "base" $.Values.defaults "over" $svc) | fromYaml }}
{{- if not $c.roles }}
{{- $_ := set $c "roles" (list $name) }}
{{- end }}
{{- $_ := set $c "gateway" (default false $c.gateway) }}
{{- $_ := set $c "grpcService" (default "" $c.grpcService) }}
{{- $_ := set $out $name $c }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Replica count a component runs with at least (HPA minimum or replicas).
*/}}
{{- define "douyin.minReplicas" -}}
{{- if .autoscaling.enabled }}{{ .autoscaling.minReplicas | int }}{{ else }}{{ .replicas | int }}{{ end }}
{{- end }}

{{/*
Whether migrations run as the pre-install/pre-upgrade Job: mesh mode with a
backend Secret (all-in-one on SQLite migrates its own data dir on start).
*/}}
{{- define "douyin.migrationJob" -}}
{{- if and .Values.migrations.job.enabled (not (include "douyin.allInOne" .)) .Values.backends.existingSecret }}true{{ end }}
{{- end }}
