{{/*
Refusals at render time: settings that cannot work together, and (when the cluster
is reachable) a backends Secret that is missing or lacks keys. Included once, from
components.yaml.
*/}}
{{- define "douyin.validate" -}}
{{- $v := .Values }}
{{- $allInOne := include "douyin.allInOne" . }}
{{- if and (not $allInOne) (not (hasKey $v.config.extraEnv "DOUYIN_DATABASE_URL")) }}
{{- $_ := required "mode=mesh needs shared backends: set backends.existingSecret (the operator's <env>-douyin-backends Secret or your own), or use mode=all-in-one for embedded SQLite" $v.backends.existingSecret }}
{{- end }}
{{- include "douyin.validateBackendsSecret" . }}
{{- include "douyin.validateGatewayReplicas" . }}
{{- include "douyin.validateLinkerd" . }}
{{- if and (not $v.jwt.existingSecret) (not $v.jwt.secret) (not $v.jwt.generator.enabled) }}
{{- fail "no JWT key: set jwt.existingSecret (a Secret you made, e.g. kubectl create secret generic douyin-jwt --from-literal=DOUYIN_JWT_SECRET=\"$(openssl rand -base64 48)\"), jwt.secret, or jwt.generator.enabled=true" }}
{{- end }}
{{- end }}

{{/*
"true" when the chart renders against a live cluster. Every namespace holds the
ConfigMap kube-root-ca.crt (published by the controller manager); `lookup` returns
nothing under `helm template`, `--dry-run=client` and for a namespace that does not
exist yet.
*/}}
{{- define "douyin.clusterReachable" -}}
{{- if lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt" }}true{{ end }}
{{- end }}

{{- define "douyin.validateBackendsSecret" -}}
{{- $v := .Values }}
{{- $b := $v.backends }}
{{- if and $b.existingSecret (not $b.optional) (include "douyin.clusterReachable" .) }}
{{- $need := $b.requiredKeys | default list }}
{{- if $b.redis }}{{ $need = append $need "DOUYIN_REDIS_URL" | uniq }}{{ end }}
{{- if $b.readReplica }}{{ $need = append $need "DOUYIN_DATABASE_READ_URL" | uniq }}{{ end }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace $b.existingSecret }}
{{- if not $secret }}
{{- fail (printf "Secret %s/%s not found. The app reads its backends from it (keys %s, and DOUYIN_S3_BUCKET, DOUYIN_S3_ACCESS_KEY, DOUYIN_S3_SECRET_KEY for object storage). Create the operator's environment (kubectl apply -f k8s/examples/dev-environment.yaml writes dev-douyin-backends) and wait for it to be Ready, or create the Secret yourself (k8s/examples/backends-secret.yaml) and set backends.existingSecret; backends.optional=true starts without it." .Release.Namespace $b.existingSecret (join ", " $need)) }}
{{- end }}
{{- /* A Redis Cluster (DOUYIN_REDIS_CLUSTER_NODES) stands in for DOUYIN_REDIS_URL. */}}
{{- if hasKey ($secret.data | default dict) "DOUYIN_REDIS_CLUSTER_NODES" }}{{ $need = without $need "DOUYIN_REDIS_URL" }}{{ end }}
{{- $missing := list }}
{{- range $need }}
{{- if not (hasKey ($secret.data | default dict) .) }}{{ $missing = append $missing . }}{{ end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "Secret %s/%s lacks key(s) %s.%s" .Release.Namespace $b.existingSecret (join ", " $missing) (ternary " Without Redis set backends.redis=false (one gateway replica)." "" (has "DOUYIN_REDIS_URL" $missing))) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chat pushes reach the WebSockets held by one gateway process unless Redis carries
them between pods, so more than one gateway without Redis loses messages.
*/}}
{{- define "douyin.validateGatewayReplicas" -}}
{{- $v := .Values }}
{{- $redis := or $v.backends.redis (hasKey $v.config.extraEnv "DOUYIN_REDIS_URL") (hasKey $v.config.extraEnv "DOUYIN_REDIS_CLUSTER_NODES") }}
{{- if and (not $redis) (not (include "douyin.allInOne" .)) }}
{{- $c := get (include "douyin.components" . | fromYaml) "api" }}
{{- if $c }}
{{- if or $c.autoscaling.enabled (gt ($c.replicas | int) 1) }}
{{- fail (printf "services.api runs %s without Redis (backends.redis=false): chat messages are pushed to WebSockets through Redis pub/sub, so a push made on one gateway pod never reaches clients connected to another (rate limits and caches would also be per pod). Run one gateway replica with autoscaling off (services.api.replicas=1), or give the backends Redis (DOUYIN_REDIS_URL) and set backends.redis=true." (ternary "with autoscaling" (printf "%d replicas" ($c.replicas | int)) $c.autoscaling.enabled)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "douyin.validateLinkerd" -}}
{{- $l := .Values.linkerd }}
{{- if and $l.inject (not $l.proxyInit) }}
{{- fail "linkerd.inject=true needs linkerd.proxyInit: the injected linkerd-init container needs NET_ADMIN and NET_RAW, which the namespace's restricted Pod Security level refuses. Either install linkerd-cni (linkerd install --set cniEnabled=true) and set linkerd.proxyInit=cni, or label the namespace pod-security.kubernetes.io/enforce=privileged and set linkerd.proxyInit=init-container." }}
{{- end }}
{{- end }}

{{/*
OTLP endpoint: otel.endpoint, else the k8s/observability collector on the
protocol's port. And the port that endpoint names (for the egress policy).
*/}}
{{- define "douyin.otelEndpoint" -}}
{{- $o := .Values.otel }}
{{- $o.endpoint | default (printf "http://otel-collector.%s.svc:%s" $o.collectorNamespace (ternary "4317" "4318" (eq $o.protocol "grpc"))) }}
{{- end }}

{{- define "douyin.otelPort" -}}
{{- $u := urlParse (include "douyin.otelEndpoint" .) }}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" }}
{{- if $port }}{{ $port }}
{{- else if eq $u.scheme "https" }}443
{{- else }}80
{{- end }}
{{- end }}
