{{/* Names, labels, images and the environment every pod shares. */}}

{{- define "warrior.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "warrior.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "warrior.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pipeline as the code defines it (generated from warrior.common.queues). */}}
{{- define "warrior.pipeline" -}}
{{- .Files.Get "files/pipeline.json" -}}
{{- end -}}

{{/* A Kubernetes-safe name part: lower case, dashes for dots and underscores. */}}
{{- define "warrior.dnsPart" -}}
{{- . | lower | replace "_" "-" | replace "." "-" -}}
{{- end -}}

{{/* Object name of a component: (dict "root" $ "component" "judge") */}}
{{- define "warrior.componentName" -}}
{{- printf "%s-%s" (include "warrior.fullname" .root) (include "warrior.dnsPart" .component) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "warrior.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warrior.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .expert }}
warrior/expert: {{ include "warrior.dnsPart" .expert | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end -}}

{{/* Standard labels: (dict "root" $ "component" "judge" ["expert" NAME]) */}}
{{- define "warrior.labels" -}}
{{ include "warrior.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: warrior
helm.sh/chart: {{ include "warrior.chart" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels shared by every pod of the release (NetworkPolicy peers). */}}
{{- define "warrior.releasePodLabels" -}}
app.kubernetes.io/name: {{ include "warrior.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warrior.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warrior.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: (dict "root" $ "image" .image) */}}
{{- define "warrior.image" -}}
{{- $g := .root.Values.image -}}
{{- $repo := .image.repository -}}
{{- if $g.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" $g.registry) $repo -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | default $g.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "warrior.pullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end -}}

{{/* Required values, checked once so every template can rely on them. */}}
{{- define "warrior.validate" -}}
{{- if not .Values.redis.host -}}
{{- fail "redis.host is required: the Redis the pipeline shares (this chart does not bundle one)" -}}
{{- end -}}
{{- if and .Values.redis.tlsCa.existingSecret (not .Values.redis.tls) -}}
{{- fail "redis.tlsCa.existingSecret needs redis.tls: true (the CA verifies a TLS connection)" -}}
{{- end -}}
{{- if not .Values.objectStore.url -}}
{{- fail "objectStore.url is required: s3://bucket/prefix?endpoint=https://host:9000 or file:///path" -}}
{{- end -}}
{{- if and (hasPrefix "s3://" .Values.objectStore.url) (not .Values.objectStore.existingSecret) -}}
{{- fail "objectStore.existingSecret is required for an s3:// store: the Secret with its access keys (never put keys in values)" -}}
{{- end -}}
{{- if and (hasPrefix "file://" .Values.objectStore.url) (not .Values.objectStore.claimName) -}}
{{- fail "objectStore.claimName is required for a file:// store: a ReadWriteMany PVC every pod mounts at the URL's path" -}}
{{- end -}}
{{- if regexMatch "://[^/?]*@" .Values.objectStore.url -}}
{{- fail "objectStore.url must not carry credentials: put them in objectStore.existingSecret" -}}
{{- end -}}
{{- $tls := .Values.grpc.tls -}}
{{- if and $tls.enabled (not $tls.existingSecret) -}}
{{- fail "grpc.tls.existingSecret is required with grpc.tls.enabled: the Secret with the experts' tls.crt, tls.key and ca.crt" -}}
{{- end -}}
{{- if and $tls.clientAuth.enabled (not $tls.enabled) -}}
{{- fail "grpc.tls.clientAuth.enabled (mutual TLS) needs grpc.tls.enabled" -}}
{{- end -}}
{{- if and $tls.clientAuth.enabled (not $tls.clientAuth.existingSecret) -}}
{{- fail "grpc.tls.clientAuth.existingSecret is required with mutual TLS: the Secret with the callers' tls.crt and tls.key" -}}
{{- end -}}
{{- end -}}

{{/* "true" when the experts' gRPC port needs TLS or a token (probes then use the plain health port), else "". */}}
{{- define "warrior.grpcLocked" -}}
{{- if or .Values.grpc.tls.enabled .Values.grpc.token.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
The gRPC security environment (warrior.common.security), as files from existing Secrets:
(dict "root" $ "role" "expert"|"client"). Experts get their certificate and key (and the CA when
callers must present certificates); callers get the CA, the name to check and their own certificate
for mutual TLS. Both get the token file.
*/}}
{{- define "warrior.grpcEnv" -}}
{{- $g := .root.Values.grpc -}}
{{- if $g.tls.enabled }}
{{- if eq .role "expert" }}
- name: WARRIOR_GRPC_TLS_CERT
  value: /etc/warrior-grpc/tls/tls.crt
- name: WARRIOR_GRPC_TLS_KEY
  value: /etc/warrior-grpc/tls/tls.key
{{- if $g.tls.clientAuth.enabled }}
- name: WARRIOR_GRPC_TLS_CA
  value: /etc/warrior-grpc/tls/ca.crt
- name: WARRIOR_GRPC_TLS_CLIENT_AUTH
  value: require
{{- end }}
{{- else }}
- name: WARRIOR_GRPC_TLS_CA
  value: /etc/warrior-grpc/ca/ca.crt
- name: WARRIOR_GRPC_TLS_SERVER_NAME
  value: {{ $g.tls.serverName | quote }}
{{- if $g.tls.clientAuth.enabled }}
- name: WARRIOR_GRPC_TLS_CLIENT_CERT
  value: /etc/warrior-grpc/client/tls.crt
- name: WARRIOR_GRPC_TLS_CLIENT_KEY
  value: /etc/warrior-grpc/client/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- if $g.token.existingSecret }}
- name: WARRIOR_GRPC_TOKEN_FILE
  value: /etc/warrior-grpc/token/token
{{- end }}
{{- end -}}

{{- define "warrior.grpcVolumeMounts" -}}
{{- $g := .root.Values.grpc -}}
{{- if $g.tls.enabled }}
{{- if eq .role "expert" }}
- name: grpc-tls
  mountPath: /etc/warrior-grpc/tls
  readOnly: true
{{- else }}
- name: grpc-ca
  mountPath: /etc/warrior-grpc/ca
  readOnly: true
{{- if $g.tls.clientAuth.enabled }}
- name: grpc-client-tls
  mountPath: /etc/warrior-grpc/client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- if $g.token.existingSecret }}
- name: grpc-token
  mountPath: /etc/warrior-grpc/token
  readOnly: true
{{- end }}
{{- end -}}

{{- define "warrior.grpcVolumes" -}}
{{- $g := .root.Values.grpc -}}
{{- if $g.tls.enabled }}
{{- if eq .role "expert" }}
- name: grpc-tls
  secret:
    secretName: {{ $g.tls.existingSecret }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      {{- if $g.tls.clientAuth.enabled }}
      - {key: ca.crt, path: ca.crt}
      {{- end }}
{{- else }}
# Only the CA of the experts' Secret: callers never see the experts' private key.
- name: grpc-ca
  secret:
    secretName: {{ $g.tls.existingSecret }}
    defaultMode: 0440
    items:
      - {key: ca.crt, path: ca.crt}
{{- if $g.tls.clientAuth.enabled }}
- name: grpc-client-tls
  secret:
    secretName: {{ $g.tls.clientAuth.existingSecret }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- end }}
{{- end }}
{{- if $g.token.existingSecret }}
- name: grpc-token
  secret:
    secretName: {{ $g.token.existingSecret }}
    defaultMode: 0440
    items:
      - {key: {{ $g.token.key }}, path: token}
{{- end }}
{{- end -}}

{{/* The environment every warrior process reads (warrior.common.settings). */}}
{{- define "warrior.env" -}}
{{- $v := .Values -}}
{{- if $v.redis.auth.existingSecret }}
# warrior.common.settings puts it into REDIS_URL, percent-encoded: REDIS_URL itself never holds it.
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.auth.existingSecret }}
      key: {{ $v.redis.auth.passwordKey }}
{{- end }}
- name: REDIS_URL
  value: {{ printf "%s://%s%s:%d/%d%s" (ternary "rediss" "redis" $v.redis.tls) (ternary (printf "%s@" $v.redis.auth.username) "" (not (empty $v.redis.auth.username))) $v.redis.host (int $v.redis.port) (int $v.redis.db) (ternary "?ssl_cert_reqs=required" "" $v.redis.tls) | quote }}
{{- if $v.redis.tlsCa.existingSecret }}
- name: REDIS_TLS_CA_FILE
  value: /etc/warrior-redis/ca.crt
{{- end }}
- name: WARRIOR_STORE_URL
  value: {{ $v.objectStore.url | quote }}
{{- if $v.objectStore.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $v.objectStore.existingSecret }}
      key: {{ $v.objectStore.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.objectStore.existingSecret }}
      key: {{ $v.objectStore.secretAccessKeyKey }}
{{- end }}
- name: WARRIOR_REGISTRY_TTL_S
  value: {{ $v.settings.registryTtlSeconds | toString | quote }}
- name: WARRIOR_GRPC_DEADLINE_S
  value: {{ $v.settings.grpcDeadlineSeconds | toString | quote }}
- name: WARRIOR_VISIBILITY_TIMEOUT_S
  value: {{ $v.settings.visibilityTimeoutSeconds | toString | quote }}
- name: WARRIOR_INFLIGHT_PER_EXPERT
  value: {{ $v.settings.inflightPerExpert | toString | quote }}
- name: WARRIOR_HOME
  value: {{ $v.settings.home | quote }}
- name: WARRIOR_CACHE_DIR
  value: {{ $v.settings.cacheDir | quote }}
# One JSON object per log line (warrior.common.logs); settings.extraEnv may set text.
- name: WARRIOR_LOG_FORMAT
  value: json
- name: HOME
  value: /home/warrior
- name: XDG_CACHE_HOME
  value: /home/warrior/.cache
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with $v.settings.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable places under a read-only root filesystem. */}}
{{- define "warrior.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/warrior
- name: state
  mountPath: {{ .Values.settings.home }}
- name: cache
  mountPath: {{ .Values.settings.cacheDir }}
{{- if .Values.redis.tlsCa.existingSecret }}
- name: redis-ca
  mountPath: /etc/warrior-redis
  readOnly: true
{{- end }}
{{- if .Values.objectStore.claimName }}
- name: store
  mountPath: {{ trimPrefix "file://" .Values.objectStore.url | required "objectStore.url" }}
{{- end }}
{{- end -}}

{{- define "warrior.volumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
- name: state
  emptyDir: {}
- name: cache
{{- if .Values.settings.cacheClaimName }}
  persistentVolumeClaim:
    claimName: {{ .Values.settings.cacheClaimName }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- if .Values.objectStore.claimName }}
- name: store
  persistentVolumeClaim:
    claimName: {{ .Values.objectStore.claimName }}
{{- end }}
{{- with .Values.redis.tlsCa.existingSecret }}
- name: redis-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - {key: {{ $.Values.redis.tlsCa.key }}, path: ca.crt}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every workload: (dict "root" $ "spec" $entry) */}}
{{- define "warrior.podCommon" -}}
serviceAccountName: {{ include "warrior.serviceAccountName" .root }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountServiceAccountToken }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .spec.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .spec.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget: (dict "root" $ "name" NAME "labels" (dict ...) "pdb" .pdb) */}}
{{- define "warrior.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "warrior.labels" .labels | nindent 4 }}
spec:
  {{- if hasKey .pdb "minAvailable" }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "warrior.selectorLabels" .labels | nindent 6 }}
{{- end -}}

{{/*
Merge .src into .dst in place, key by key: maps merge recursively, anything else (false and 0
included, unlike mergeOverwrite) replaces. (dict "dst" $map "src" $map)
*/}}
{{- define "warrior.merge" -}}
{{- $dst := .dst -}}
{{- range $key, $value := .src -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) -}}
{{- include "warrior.merge" (dict "dst" (get $dst $key) "src" $value) -}}
{{- else -}}
{{- $_ := set $dst $key $value -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The metrics endpoint of a pod (values.metrics, warrior.common.metrics): its env, container port, pod
label (the metrics Service selects it) and prometheus.io annotations. Each renders nothing when it is off. */}}
{{- define "warrior.metricsEnv" -}}
{{- if .Values.metrics.enabled }}
- name: WARRIOR_METRICS_PORT
  value: {{ .Values.metrics.port | toString | quote }}
{{- end }}
{{- end -}}

{{- define "warrior.metricsContainerPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end -}}

{{- define "warrior.metricsPodLabels" -}}
{{- if .Values.metrics.enabled }}
warrior/metrics: "true"
{{- end }}
{{- end -}}

{{/* Pod annotations: the metrics ones, under the pod's own (podAnnotations win). (dict "root" $ "own" MAP) */}}
{{- define "warrior.podAnnotations" -}}
{{- $out := deepCopy (.own | default dict) }}
{{- $m := .root.Values.metrics }}
{{- if and $m.enabled $m.podAnnotations }}
{{- $_ := merge $out (dict "prometheus.io/scrape" "true" "prometheus.io/port" ($m.port | toString) "prometheus.io/path" "/metrics") }}
{{- end }}
{{- with $out }}
{{- toYaml . }}
{{- end }}
{{- end -}}
