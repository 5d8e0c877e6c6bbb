{{/*
NetworkPolicy of one component. Only the gateway's HTTP port takes traffic from
outside the release (networkPolicy.gatewayFrom, plus the release's gateway test pod
when that list narrows it); a gRPC port takes only the components that call it and
the gRPC health test; the admin port takes networkPolicy.adminFrom (Prometheus).
With egress restricted: DNS, the gRPC peers this component calls, the collector on
the port of the OTLP endpoint, the backends of `backends.environment` (labels of
the operator, see LABELS.md) and egress.extraTo.
Takes (dict "root" $ "name" NAME "c" SETTINGS "components" ALL).
*/}}
{{- define "douyin.networkPolicy" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $np := $v.networkPolicy }}
{{- $self := .name }}
{{- $allInOne := include "douyin.allInOne" $root }}
{{- /* gRPC components other than this one: whom it calls, who calls it */}}
{{- $peers := list }}
{{- range $name, $c := .components }}
{{- if and $c.grpcService (ne $name $self) }}{{ $peers = append $peers $name }}{{ end }}
{{- end }}
{{- $callers := list }}
{{- range $name, $c := .components }}
{{- if ne $name $self }}{{ $callers = append $callers $name }}{{ end }}
{{- end }}
{{- if $v.tests.enabled }}{{ $callers = append $callers "test-grpc-health" }}{{ end }}
{{- if $np.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ printf "%s-%s" (include "douyin.fullname" $root) .name | trunc 63 | trimSuffix "-" }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "douyin.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "douyin.componentSelectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if $np.egress.enabled }}
    - Egress
    {{- end }}
  ingress:
    {{- if .c.gateway }}
    - ports:
        - port: {{ $v.ports.http | int }}
          protocol: TCP
      {{- with $np.gatewayFrom }}
      from:
        {{- toYaml . | nindent 8 }}
        {{- if $v.tests.enabled }}
        # the release's `helm test` pod
        - podSelector:
            matchLabels:
              {{- include "douyin.componentSelectorLabels" (dict "root" $root "name" "test-gateway") | nindent 14 }}
        {{- end }}
        {{- if $v.loadGenerator.enabled }}
        # the release's load generator
        - podSelector:
            matchLabels:
              {{- include "douyin.componentSelectorLabels" (dict "root" $root "name" "load-generator") | nindent 14 }}
        {{- end }}
      {{- end }}
    {{- end }}
    {{- if and .c.grpcService (not $allInOne) $callers }}
    - ports:
        - port: {{ $v.ports.grpc | int }}
          protocol: TCP
      from:
        - podSelector:
            matchLabels:
              {{- include "douyin.selectorLabels" $root | nindent 14 }}
            matchExpressions:
              - key: app.kubernetes.io/component
                operator: In
                values:
                  {{- toYaml $callers | nindent 18 }}
    {{- end }}
    - ports:
        - port: {{ $v.ports.admin | int }}
          protocol: TCP
        {{- if $v.linkerd.inject }}
        # linkerd proxy admin (metrics, readiness of the proxy)
        - port: 4191
          protocol: TCP
        {{- end }}
      {{- with $np.adminFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- if $np.egress.enabled }}
  egress:
    # cluster DNS (CoreDNS/kube-dns, NodeLocal DNSCache)
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
      {{- with $np.egress.dnsTo }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- if and $peers (not $allInOne) }}
    # the gRPC roles this component calls
    - to:
        - podSelector:
            matchLabels:
              {{- include "douyin.selectorLabels" $root | nindent 14 }}
            matchExpressions:
              - key: app.kubernetes.io/component
                operator: In
                values:
                  {{- toYaml $peers | nindent 18 }}
      ports:
        - port: {{ $v.ports.grpc | int }}
          protocol: TCP
    {{- end }}
    {{- if $v.otel.enabled }}
    # OpenTelemetry Collector, on the port of the OTLP endpoint
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $v.otel.collectorNamespace }}
          {{- with $v.otel.collectorPodLabels }}
          podSelector:
            matchLabels:
              {{- toYaml . | nindent 14 }}
          {{- end }}
      ports:
        - port: {{ include "douyin.otelPort" $root | int }}
          protocol: TCP
    {{- end }}
    {{- if and $v.backends.existingSecret $v.backends.environment }}
    # MySQL, Redis and MinIO of the operator's environment
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/part-of: douyin
              app.kubernetes.io/instance: {{ $v.backends.environment | quote }}
              app.kubernetes.io/managed-by: douyin-operator
      ports:
        - port: 3306
          protocol: TCP
        {{- if $v.backends.redis }}
        - port: 6379
          protocol: TCP
        {{- end }}
        - port: 9000
          protocol: TCP
    {{- end }}
    {{- if $v.linkerd.inject }}
    # linkerd control plane (identity, destination, policy)
    - to:
        - namespaceSelector:
            matchLabels:
              linkerd.io/is-control-plane: "true"
    {{- end }}
    {{- with $np.egress.extraTo }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}
