{{/* Names and labels. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "portcullis.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "portcullis.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* More than one gateway per Service needs sessions that every replica can read. */}}
{{- define "portcullis.checkReplicas" -}}
{{- $many := or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}
{{- $store := "" -}}
{{- with .Values.config.session }}{{ $store = default "" .store }}{{ end -}}
{{- if and $many (not (hasPrefix "redis" $store)) -}}
{{- fail "replicaCount > 1 or autoscaling needs shared sessions: set config.session.store to redis://… (and config.session.keys from a Secret)" -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (not .Values.app.image) -}}
{{- fail "mode: sidecar needs app.image (the workload Portcullis guards)" -}}
{{- end -}}
{{- end -}}

{{/*
The Portcullis config: the user's config with the keys the chart owns set from values, so the
listeners, probes, Service ports and termination grace period agree.
*/}}
{{- define "portcullis.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := dict -}}
{{- if hasKey $cfg "server" }}{{ $server = deepCopy (get $cfg "server") }}{{ end -}}
{{- $_ := set $server "http" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.http))) -}}
{{- if gt (int .Values.ports.https) 0 -}}
{{- $https := dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.https)) -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $https "cert" "/etc/portcullis/tls/tls.crt" -}}
{{- $_ := set $https "key" "/etc/portcullis/tls/tls.key" -}}
{{- end -}}
{{- $_ := set $server "https" $https -}}
{{- else -}}
{{- $_ := set $server "https" nil -}}
{{- end -}}
{{- $admin := dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) -}}
{{- if .Values.metrics.tokenSecret.name -}}
{{- $_ := set $admin "metrics_token" "${PORTCULLIS_METRICS_TOKEN}" -}}
{{- end -}}
{{- $_ := set $server "admin" $admin -}}
{{- $_ := set $server "data_dir" "/var/lib/portcullis" -}}
{{- $_ := set $server "grace_period" (printf "%ds" (int .Values.shutdown.gracePeriodSeconds)) -}}
{{- $_ := set $server "shutdown_timeout" (printf "%ds" (int .Values.shutdown.shutdownTimeoutSeconds)) -}}
{{- if not (hasKey $server "watch_interval") }}{{ $_ := set $server "watch_interval" "5s" }}{{ end -}}
{{- $_ := set $cfg "server" $server -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "portcullis.terminationGracePeriodSeconds" -}}
{{- add (int .Values.shutdown.preStopSleepSeconds) (int .Values.shutdown.gracePeriodSeconds) (int .Values.shutdown.shutdownTimeoutSeconds) 5 -}}
{{- end -}}

{{/* The Portcullis container (the gateway Deployment's container, or the native sidecar). */}}
{{- define "portcullis.container" -}}
name: portcullis
image: {{ include "portcullis.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["run", "--config", "/etc/portcullis/config/config.yaml"]
ports:
  - { name: http, containerPort: {{ .Values.ports.http }}, protocol: TCP }
  {{- if gt (int .Values.ports.https) 0 }}
  - { name: https, containerPort: {{ .Values.ports.https }}, protocol: TCP }
  {{- end }}
  - { name: admin, containerPort: {{ .Values.ports.admin }}, protocol: TCP }
env:
  - { name: PORTCULLIS_POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
  {{- if .Values.metrics.tokenSecret.name }}
  - name: PORTCULLIS_METRICS_TOKEN
    valueFrom: { secretKeyRef: { name: {{ .Values.metrics.tokenSecret.name }}, key: {{ .Values.metrics.tokenSecret.key }} } }
  {{- end }}
  {{- range .Values.secretEnv }}
  - name: {{ .name }}
    valueFrom: { secretKeyRef: { name: {{ .secretName }}, key: {{ .key }} } }
  {{- end }}
  {{- with .Values.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
startupProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: admin }
  periodSeconds: 5
  # One probe in flight during a zero-downtime upgrade may be reset; never act on one.
  failureThreshold: 2
lifecycle:
  preStop:
    sleep: { seconds: {{ .Values.shutdown.preStopSleepSeconds }} }
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  privileged: false
  capabilities: { drop: [ALL] }
  seccompProfile: { type: RuntimeDefault }
volumeMounts:
  - { name: config, mountPath: /etc/portcullis/config, readOnly: true }
  - { name: data, mountPath: /var/lib/portcullis }
  - { name: tmp, mountPath: /tmp }
  {{- if .Values.tls.secretName }}
  - { name: tls, mountPath: /etc/portcullis/tls, readOnly: true }
  {{- end }}
  {{- range .Values.secretMounts }}
  - { name: {{ .name }}, mountPath: {{ .mountPath }}, readOnly: true }
  {{- end }}
{{- end -}}

{{/* Pod-level settings shared by both modes. */}}
{{- define "portcullis.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{- define "portcullis.volumes" -}}
- name: config
  configMap: { name: {{ include "portcullis.fullname" . }} }
- name: tmp
  emptyDir: { sizeLimit: 64Mi }
{{- if not (and .Values.persistence.enabled (eq .Values.mode "gateway")) }}
- name: data
  emptyDir: { sizeLimit: 1Gi }
{{- end }}
{{- if .Values.tls.secretName }}
- name: tls
  secret: { secretName: {{ .Values.tls.secretName }} }
{{- end }}
{{- range .Values.secretMounts }}
- name: {{ .name }}
  secret: { secretName: {{ .secretName }} }
{{- end }}
{{- end -}}
