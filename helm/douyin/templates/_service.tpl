{{/*
Service of one component, named douyin-<role> by default (see douyin.serviceName).
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
  type: ClusterIP
  selector:
    {{- include "douyin.componentSelectorLabels" . | nindent 4 }}
  ports:
    {{- if .c.gateway }}
    - name: http
      port: {{ $v.ports.http | int }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- end }}
    {{- if or .c.grpcService (include "douyin.allInOne" .root) }}
    - name: grpc
      port: {{ $v.ports.grpc | int }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    {{- end }}
    - name: http-admin
      port: {{ $v.ports.admin | int }}
      targetPort: admin
      protocol: TCP
      appProtocol: http
{{- end }}
