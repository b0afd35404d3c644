{{/*
The release's name for its objects: fullnameOverride, else the release name
when it contains the chart's name (release "lameduck": lameduck), else
<release>-<name>. 63 characters at most, as DNS names allow.
*/}}
{{- define "lameduck.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lameduck.fullname" -}}
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

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "lameduck.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The labels every object carries. app.kubernetes.io/version follows the image
tag (made a valid label value). k8s/ is this chart rendered by make k8s, for
kubectl: there .Release.Service is "kubectl" and no chart version is named.
*/}}
{{- define "lameduck.labels" -}}
{{ include "lameduck.selectorLabels" . }}
app.kubernetes.io/component: server
{{ include "lameduck.metaLabels" . }}
{{- end }}

{{/* The labels of every object but the selector's and the component. */}}
{{- define "lameduck.metaLabels" -}}
app.kubernetes.io/version: {{ include "lameduck.tag" . | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: lameduck
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if eq .Release.Service "Helm" }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The labels the selectors use: never the version, which changes. */}}
{{- define "lameduck.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lameduck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
lameduck.millis: a Go duration (values.schema.json's pattern: 0, or numbers
with ms, s, m or h, such as 1m30s or 1.5s) in milliseconds, as a string.
*/}}
{{- define "lameduck.millis" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h)" (toString .) -1 }}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" . | float64 }}
{{- $unit := regexFind "(ms|s|m|h)$" . }}
{{- $scale := get (dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0) $unit }}
{{- $total = addf $total (mulf $n $scale) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
lameduck.grace: the pod's terminationGracePeriodSeconds. The shutdown budget
is config.prestopDelay + shutdownTimeout + drainTimeout + 1s (lameduck's
config.GraceSpare); unset, the grace period is that, rounded up to a whole
second; set, it must fit it, or the render fails.
*/}}
{{- define "lameduck.grace" -}}
{{- $c := .Values.config }}
{{- $need := addf (include "lameduck.millis" $c.prestopDelay | float64) (include "lameduck.millis" $c.shutdownTimeout | float64) (include "lameduck.millis" $c.drainTimeout | float64) 1000.0 }}
{{- $needSeconds := divf $need 1000.0 | ceil | int64 }}
{{- $set := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- $needSeconds }}
{{- else if lt (mulf $set 1000.0) $need }}
{{- fail (printf "terminationGracePeriodSeconds %v is too short: config.prestopDelay %s + config.shutdownTimeout %s + config.drainTimeout %s + 1s = %gs do not fit; set it to %d or more, or leave it unset to derive it" $set $c.prestopDelay $c.shutdownTimeout $c.drainTimeout (divf $need 1000.0) $needSeconds) }}
{{- else }}
{{- $set | int64 }}
{{- end }}
{{- end }}

{{/* lameduck.port: the port number of a listen address such as ":8080". */}}
{{- define "lameduck.port" -}}
{{- regexFind "[0-9]+$" . | int }}
{{- end }}

{{/* lameduck.podSecurityContext and lameduck.securityContext: the restricted Pod Security Standard, for the app and the test pods alike. */}}
{{- define "lameduck.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "lameduck.securityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* lameduck.image: repository:tag. */}}
{{- define "lameduck.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "lameduck.tag" .) }}
{{- end }}

{{/*
The NATS JetStream of the job queue (nats.enabled): its objects are named
<fullname>-nats..., and its pods carry app.kubernetes.io/name "nats", so that
none of lameduck's selectors (name lameduck) picks them, nor theirs lameduck's.
*/}}
{{- define "lameduck.nats.fullname" -}}
{{- printf "%s-nats" (include "lameduck.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lameduck.nats.selectorLabels" -}}
app.kubernetes.io/name: nats
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lameduck.nats.labels" -}}
{{ include "lameduck.nats.selectorLabels" . }}
app.kubernetes.io/component: queue
app.kubernetes.io/version: {{ .Values.nats.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: lameduck
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if eq .Release.Service "Helm" }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* lameduck.nats.url: the client Service's URL, what LAMEDUCK_QUEUE_URL defaults to with nats.enabled. */}}
{{- define "lameduck.nats.url" -}}
{{- printf "nats://%s:4222" (include "lameduck.nats.fullname" .) }}
{{- end }}
