{{/*
Deployment of one component. Takes (dict "root" $ "name" NAME "c" SETTINGS "components" ALL).
*/}}
{{- define "douyin.deployment" -}}
{{- $root := .root }}
{{- $c := .c }}
{{- $v := $root.Values }}
{{- $fullname := include "douyin.fullname" $root }}
{{- $allInOne := include "douyin.allInOne" $root }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ printf "%s-%s" $fullname .name | trunc 63 | trimSuffix "-" }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "douyin.componentLabels" . | nindent 4 }}
spec:
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ $c.replicas | int }}
  {{- end }}
  revisionHistoryLimit: {{ $c.revisionHistoryLimit | int }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ $c.rollingUpdate.maxSurge }}
      maxUnavailable: {{ $c.rollingUpdate.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "douyin.componentSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "douyin.componentLabels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        checksum/secrets: {{ include "douyin.secretsChecksum" $root }}
        {{- if $v.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.ports.admin | int | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- if $v.linkerd.inject }}
        linkerd.io/inject: enabled
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "douyin.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
      # Service links would inject DOUYIN_<SERVICE>_PORT=tcp://… variables that the
      # binary reads as DOUYIN_* settings.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds | int }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- if $c.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml $c.topologySpreadConstraints | nindent 8 }}
      {{- else if $c.topologySpread.enabled }}
      topologySpreadConstraints:
        {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
        - maxSkew: {{ $c.topologySpread.maxSkew | int }}
          topologyKey: {{ $key }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "douyin.componentSelectorLabels" $ | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
        {{- end }}
      {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "douyin.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - serve
            {{- range $c.roles }}
            - {{ . | quote }}
            {{- end }}
          ports:
            {{- if $c.gateway }}
            - name: http
              containerPort: {{ $v.ports.http | int }}
              protocol: TCP
            {{- end }}
            {{- if or $c.grpcService $allInOne }}
            - name: grpc
              containerPort: {{ $v.ports.grpc | int }}
              protocol: TCP
            {{- end }}
            - name: admin
              containerPort: {{ $v.ports.admin | int }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "douyin.configMapName" $root }}
            {{- if $v.backends.existingSecret }}
            - secretRef:
                name: {{ $v.backends.existingSecret }}
                {{- if $v.backends.optional }}
                optional: true
                {{- end }}
            {{- end }}
          env:
            {{- include "douyin.containerEnv" . | nindent 12 }}
          {{- include "douyin.probes" . | nindent 10 }}
          {{- if gt ($c.preStopSleepSeconds | int) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $c.preStopSleepSeconds | int }}
          {{- end }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /data
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: data
          emptyDir:
            sizeLimit: {{ $c.dataSizeLimit }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ $c.tmpSizeLimit }}
{{- end }}

{{/*
Container env of one component: listen addresses, the peers' endpoints (every role
not in this process), OpenTelemetry identity, the JWT key and (roles in separate
processes only) the service secret.
*/}}
{{- define "douyin.containerEnv" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $c := .c }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if $c.gateway }}
- name: DOUYIN_HTTP_ADDR
  value: {{ printf "0.0.0.0:%d" ($v.ports.http | int) | quote }}
{{- end }}
- name: DOUYIN_GRPC_ADDR
  value: {{ printf "0.0.0.0:%d" ($v.ports.grpc | int) | quote }}
- name: DOUYIN_ADMIN_ADDR
  value: {{ printf "0.0.0.0:%d" ($v.ports.admin | int) | quote }}
{{- if not (include "douyin.allInOne" $root) }}
{{- range $peer, $pc := $v.services }}
{{- if and $pc.grpcService (not (has $peer $c.roles)) }}
- name: {{ printf "DOUYIN_%s_ENDPOINT" (upper $peer) }}
  value: {{ printf "http://%s:%d" (include "douyin.serviceName" (dict "root" $root "name" $peer)) ($v.ports.grpc | int) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if $v.otel.enabled }}
{{- if not (has "all" $c.roles) }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "douyin-%s" .name | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "douyin.otelResourceAttributes" . | quote }}
{{- end }}
- name: DOUYIN_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "douyin.jwtSecretName" $root }}
      key: {{ include "douyin.jwtSecretKey" $root }}
{{- if not (include "douyin.allInOne" $root) }}
- name: DOUYIN_SERVICE_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "douyin.serviceAuthSecretName" $root }}
      key: {{ include "douyin.serviceAuthSecretKey" $root }}
{{- end }}
{{- with $c.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "douyin.otelResourceAttributes" -}}
{{- $root := .root }}
{{- $attrs := list
  "service.namespace=douyin"
  (printf "service.version=%s" (default $root.Chart.AppVersion $root.Values.image.tag))
  "service.instance.id=$(K8S_POD_NAME)"
  "k8s.namespace.name=$(K8S_NAMESPACE)"
  "k8s.pod.name=$(K8S_POD_NAME)"
  "k8s.node.name=$(K8S_NODE_NAME)"
  (printf "k8s.deployment.name=%s-%s" (include "douyin.fullname" $root) .name)
}}
{{- range $k, $val := $root.Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $val)) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
Probes. The gateway: HTTP /healthz (startup, liveness) and /readyz (readiness) on
its HTTP port. gRPC roles: native gRPC readiness on the health service of the role's
own service name; startup and liveness ask the admin port's /healthz, or with
probes.grpcLiveness the gRPC health service "liveness" (SERVING whatever the
backends do). Never the overall "" service: it follows the database, and a
liveness probe on it restarts every pod during an outage. Ports are numbers
(native gRPC probes require it).
*/}}
{{- define "douyin.probes" -}}
{{- $v := .root.Values }}
{{- $p := .c.probes }}
{{- if .c.gateway }}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ $v.ports.http | int }}
  {{- include "douyin.probeTiming" $p.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $v.ports.http | int }}
  {{- include "douyin.probeTiming" $p.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $v.ports.http | int }}
  {{- include "douyin.probeTiming" $p.readiness | nindent 2 }}
{{- else }}
{{- range $kind := list "startup" "liveness" }}
{{ $kind }}Probe:
  {{- if $p.grpcLiveness }}
  grpc:
    port: {{ $v.ports.grpc | int }}
    service: liveness
  {{- else }}
  httpGet:
    path: /healthz
    port: {{ $v.ports.admin | int }}
  {{- end }}
  {{- include "douyin.probeTiming" (get $p $kind) | nindent 2 }}
{{- end }}
readinessProbe:
  grpc:
    port: {{ $v.ports.grpc | int }}
    service: {{ .c.grpcService | quote }}
  {{- include "douyin.probeTiming" $p.readiness | nindent 2 }}
{{- end }}
{{- end }}

{{- define "douyin.probeTiming" -}}
periodSeconds: {{ .periodSeconds | int }}
timeoutSeconds: {{ .timeoutSeconds | int }}
failureThreshold: {{ .failureThreshold | int }}
{{- end }}

{{/*
Hash of the secret settings the pods read, so a changed key rolls them: the inline
JWT key, and the data of the backends and JWT Secrets when the cluster is reachable
(`helm template` cannot see them). The generated JWT Secret is left out: the chart
never changes it.
*/}}
{{- define "douyin.secretsChecksum" -}}
{{- $v := .Values }}
{{- $sum := dict "jwtSecret" $v.jwt.secret "jwtKey" (include "douyin.jwtSecretKey" .) "serviceSecret" $v.serviceAuth.secret "serviceKey" (include "douyin.serviceAuthSecretKey" .) }}
{{- with $v.backends.existingSecret }}
{{- $s := lookup "v1" "Secret" $.Release.Namespace . }}
{{- $_ := set $sum "backends" (dict "name" . "data" ($s.data | default dict)) }}
{{- end }}
{{- with $v.jwt.existingSecret }}
{{- $s := lookup "v1" "Secret" $.Release.Namespace . }}
{{- $_ := set $sum "jwt" (dict "name" . "data" (get ($s.data | default dict) $v.jwt.existingSecretKey)) }}
{{- end }}
{{- with $v.serviceAuth.existingSecret }}
{{- $s := lookup "v1" "Secret" $.Release.Namespace . }}
{{- $_ := set $sum "serviceAuth" (dict "name" . "data" (get ($s.data | default dict) $v.serviceAuth.existingSecretKey)) }}
{{- end }}
{{- toJson $sum | sha256sum }}
{{- end }}
