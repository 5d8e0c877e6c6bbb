{{/*
Service of one component, named douyin-<role> by default (see douyin.serviceName).
The gateway's is a ClusterIP Service with only the http port (the Ingress target).
Each gRPC role's is headless: its name resolves to the address of every ready pod,
and the gRPC client balances calls over all of them (a ClusterIP would pin each
HTTP/2 connection, so every call, to one pod). No Service carries the admin port.
*/}}
{{- define "douyin.service" -}}
{{- $v := .root.Values }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "douyin.serviceName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "douyin.componentLabels" . | nindent 4 }}
spec:
  {{- if .c.gateway }}
  type: ClusterIP
  {{- else }}
  clusterIP: None
  {{- end }}
  publishNotReadyAddresses: false
  selector:
    {{- include "douyin.componentSelectorLabels" . | nindent 4 }}
  ports:
    {{- if .c.gateway }}
    - name: http
      port: {{ $v.ports.http | int }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- else }}
    - name: grpc
      port: {{ $v.ports.grpc | int }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    {{- end }}
{{- end }}
