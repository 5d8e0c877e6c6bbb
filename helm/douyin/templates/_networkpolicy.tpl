{{/*
NetworkPolicy of one component. Only the gateway's HTTP port takes traffic from
outside the release; gRPC ports accept only pods of this release (the peers and the
helm test pods); the admin port is open to networkPolicy.adminFrom (Prometheus).
*/}}
{{- define "douyin.networkPolicy" -}}
{{- $v := .root.Values }}
{{- $np := $v.networkPolicy }}
{{- if $np.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ printf "%s-%s" (include "douyin.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
  namespace: {{ .root.Release.Namespace }}
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
      {{- end }}
    {{- end }}
    {{- if or .c.grpcService (include "douyin.allInOne" .root) }}
    - ports:
        - port: {{ $v.ports.grpc | int }}
          protocol: TCP
      from:
        - podSelector:
            matchLabels:
              {{- include "douyin.selectorLabels" .root | nindent 14 }}
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
    # DNS
    - to:
        - namespaceSelector: {}
          podSelector:
            matchLabels:
              k8s-app: kube-dns
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    # peers of this release
    - to:
        - podSelector:
            matchLabels:
              {{- include "douyin.selectorLabels" .root | nindent 14 }}
      ports:
        - port: {{ $v.ports.grpc | int }}
          protocol: TCP
    {{- if $v.otel.enabled }}
    # OpenTelemetry Collector
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $v.otel.collectorNamespace }}
      ports:
        - port: 4317
          protocol: TCP
        - port: 4318
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
