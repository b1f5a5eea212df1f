{{/*
Names, labels and the environment shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "kinesis-loader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-NAME, or RELEASE when it already contains the name; at most 63 characters. */}}
{{- define "kinesis-loader.fullname" -}}
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

{{- define "kinesis-loader.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kinesis-loader.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kinesis-loader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kinesis-loader.labels" -}}
helm.sh/chart: {{ include "kinesis-loader.chart" . }}
{{ include "kinesis-loader.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kinesis-loader
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kinesis-loader.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kinesis-loader.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kinesis-loader.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* The Secret the chart creates for values given in plain text. */}}
{{- define "kinesis-loader.secretName" -}}
{{- include "kinesis-loader.fullname" . }}
{{- end }}

{{/* "true" when an entry of extraEnv is named like the argument. */}}
{{- define "kinesis-loader.inExtraEnv" -}}
{{- $found := "" }}
{{- range .root.Values.extraEnv }}
{{- if eq (toString .name) $.name }}{{ $found = "true" }}{{ end }}
{{- end }}
{{- $found }}
{{- end }}

{{/* "true" when DATABASE_URL reaches the pods (PostgreSQL), else "". */}}
{{- define "kinesis-loader.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret (include "kinesis-loader.inExtraEnv" (dict "root" . "name" "DATABASE_URL")) }}true{{ end }}
{{- end }}

{{/* "true" when REDIS_URL reaches the pods (shared state), else "". */}}
{{- define "kinesis-loader.hasRedis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret (include "kinesis-loader.inExtraEnv" (dict "root" . "name" "REDIS_URL")) }}true{{ end }}
{{- end }}

{{/* "true" when the API needs a bearer token, else "". */}}
{{- define "kinesis-loader.hasApiToken" -}}
{{- if or .Values.apiToken.value .Values.apiToken.existingSecret (include "kinesis-loader.inExtraEnv" (dict "root" . "name" "KL_API_TOKEN")) (include "kinesis-loader.inExtraEnv" (dict "root" . "name" "KL_API_TOKEN_FILE")) }}true{{ end }}
{{- end }}

{{/* "true" when the chart must create its Secret, else "". */}}
{{- define "kinesis-loader.needsSecret" -}}
{{- if or (and .Values.database.url (not .Values.database.existingSecret)) (and .Values.redis.url (not .Values.redis.existingSecret)) (and .Values.apiToken.value (not .Values.apiToken.existingSecret)) }}true{{ end }}
{{- end }}

{{/* preStop wait + grace, or the explicit terminationGracePeriodSeconds. */}}
{{- define "kinesis-loader.terminationGracePeriod" -}}
{{- $need := add (int .Values.shutdown.preStopSleepSeconds) (int .Values.shutdown.graceSeconds) }}
{{- if and (ne (toString .Values.terminationGracePeriodSeconds) "") (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $need) }}
{{- fail (printf "terminationGracePeriodSeconds=%v is shorter than shutdown.preStopSleepSeconds + shutdown.graceSeconds = %d: Kubernetes would kill the service while it finishes its chunks. Raise it, or leave it empty to have it computed." .Values.terminationGracePeriodSeconds $need) }}
{{- end }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $need (int .Values.shutdown.marginSeconds) }}
{{- end }}
{{- end }}

{{/*
Checks between values that no schema can express. Rendering stops with a
message naming the values to change.
*/}}
{{- define "kinesis-loader.validate" -}}
{{- range $what := list "database" "redis" }}
{{- $v := index $.Values $what }}
{{- if and $v.url $v.existingSecret }}
{{- fail (printf "%s.url and %s.existingSecret are both set: set only one" $what $what) }}
{{- end }}
{{- end }}
{{- if and .Values.apiToken.value .Values.apiToken.existingSecret }}
{{- fail "apiToken.value and apiToken.existingSecret are both set: set only one" }}
{{- end }}
{{- if hasPrefix "rediss://" (lower (toString .Values.redis.url)) }}
{{- fail "redis.url: rediss:// (TLS) is not supported by kinesis-loader; use redis:// or unix://" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are both set: two autoscalers would fight over the Deployment's replicas; set only one (keda scales on shard lag, autoscaling on CPU)" }}
{{- end }}
{{- /* More than one pod, now or when an autoscaler adds them: the state must be shared. */}}
{{- $replicas := int .Values.replicaCount }}
{{- $many := "" }}
{{- if gt $replicas 1 }}
{{- $many = printf "replicaCount=%d" $replicas }}
{{- else if .Values.keda.enabled }}
{{- $many = printf "keda.enabled (up to keda.maxReplicas=%d pods)" (int .Values.keda.maxReplicas) }}
{{- else if .Values.autoscaling.enabled }}
{{- $many = printf "autoscaling.enabled (up to autoscaling.maxReplicas=%d pods)" (int .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if and $many (not (include "kinesis-loader.hasRedis" .)) }}
{{- fail (printf "%s needs shared state: set redis.url or redis.existingSecret (REDIS_URL). Without Redis each pod keeps its jobs, task queue and shard leases in its own memory, which other replicas cannot see; run 1 replica or add Redis." $many) }}
{{- end }}
{{- if and $many (not (include "kinesis-loader.hasDatabase" .)) }}
{{- fail (printf "%s needs PostgreSQL: set database.url or database.existingSecret (DATABASE_URL). Without it each pod writes its own SQLite file." $many) }}
{{- end }}
{{- range $what := list "autoscaling" "keda" }}
{{- $a := index $.Values $what }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "%s.minReplicas=%d is above %s.maxReplicas=%d" $what (int $a.minReplicas) $what (int $a.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (dig "requests" "cpu" "" (.Values.resources | default dict))) }}
{{- fail "autoscaling.enabled scales on CPU utilisation, which Kubernetes measures against resources.requests.cpu: set resources.requests.cpu" }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.keda.prometheus.serverAddress) }}
{{- fail "keda.enabled needs keda.prometheus.serverAddress: the URL of the Prometheus that scrapes kinesis-loader, such as http://prometheus-operated.monitoring.svc:9090" }}
{{- end }}
{{- if .Values.cronJob.enabled }}
{{- if not (include "kinesis-loader.hasDatabase" .) }}
{{- fail "cronJob.enabled needs PostgreSQL: set database.url or database.existingSecret (DATABASE_URL). A scheduled load would write to an SQLite file in its own pod, which is gone when the pod ends." }}
{{- end }}
{{- if not .Values.cronJob.loads }}
{{- fail "cronJob.enabled is true but cronJob.loads is empty: add an entry such as {stream: orders}" }}
{{- end }}
{{- end }}
{{- if and (ne (toString .Values.podDisruptionBudget.minAvailable) "") (ne (toString .Values.podDisruptionBudget.maxUnavailable) "") }}
{{- fail "podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are both set: set one, and the other to \"\"" }}
{{- end }}
{{- $_ := include "kinesis-loader.terminationGracePeriod" . }}
{{- end }}

{{/*
Adds one environment variable to the list in .env when the value is not
empty: {"name": NAME, "value": "TEXT"}.
*/}}
{{- define "kinesis-loader.addEnv" -}}
{{- if and (not (kindIs "invalid" .value)) (ne (toString .value) "") }}
{{- $_ := set .list "env" (append .list.env (dict "name" .name "value" (toString .value))) }}
{{- end }}
{{- end }}

{{/*
Adds NAME from a Secret: the user's Secret (existingSecret, key) or the
chart's (plain value, key NAME).
*/}}
{{- define "kinesis-loader.addSecretEnv" -}}
{{- if .source.existingSecret }}
{{- $ref := dict "name" .source.existingSecret "key" .source.existingSecretKey }}
{{- $_ := set .list "env" (append .list.env (dict "name" .name "valueFrom" (dict "secretKeyRef" $ref))) }}
{{- else if .plain }}
{{- $ref := dict "name" (include "kinesis-loader.secretName" .root) "key" .name }}
{{- $_ := set .list "env" (append .list.env (dict "name" .name "valueFrom" (dict "secretKeyRef" $ref))) }}
{{- end }}
{{- end }}

{{/*
The environment shared by the service and the scheduled loads, as JSON
{"env": [...]}: logging, AWS, database and Redis.
*/}}
{{- define "kinesis-loader.sharedEnv" -}}
{{- $l := dict "env" (list) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_LOG_LEVEL" "value" .Values.config.logLevel) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "AWS_REGION" "value" .Values.aws.region) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "AWS_ENDPOINT_URL_KINESIS" "value" .Values.aws.kinesisEndpointUrl) }}
{{- include "kinesis-loader.addSecretEnv" (dict "list" $l "root" . "name" "DATABASE_URL" "source" .Values.database "plain" .Values.database.url) }}
{{- include "kinesis-loader.addSecretEnv" (dict "list" $l "root" . "name" "REDIS_URL" "source" .Values.redis "plain" .Values.redis.url) }}
{{- toJson $l }}
{{- end }}

{{/* The service's environment as JSON {"env": [...]}. */}}
{{- define "kinesis-loader.serviceEnv" -}}
{{- $l := dict "env" (list) }}
{{- $host := toString .Values.listen.host }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_LISTEN" "value" (printf "%s:%d" $host (int .Values.listen.port))) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_WORKERS" "value" .Values.config.workers) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_LEASE_TTL_S" "value" .Values.config.leaseTtlSeconds) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_TASK_SLICE_S" "value" .Values.config.taskSliceSeconds) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_KINESIS_CALL_TIMEOUT_S" "value" .Values.config.kinesisCallTimeoutSeconds) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_JOB_RETENTION_HOURS" "value" .Values.config.jobRetentionHours) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_KINESIS_PACING" "value" .Values.config.kinesisPacing) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_MEMORY_MAX" "value" .Values.config.memoryMax) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_SHUTDOWN_GRACE_S" "value" .Values.shutdown.graceSeconds) }}
{{- if .Values.continuousLoads }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_CONTINUOUS_LOADS" "value" (toJson .Values.continuousLoads)) }}
{{- end }}
{{- if not (include "kinesis-loader.hasDatabase" .) }}
{{- include "kinesis-loader.addEnv" (dict "list" $l "name" "KL_SQLITE_PATH" "value" .Values.sqlite.path) }}
{{- end }}
{{- $_ := set $l "env" (concat $l.env (include "kinesis-loader.sharedEnv" . | fromJson).env) }}
{{- include "kinesis-loader.addSecretEnv" (dict "list" $l "root" . "name" "KL_API_TOKEN" "source" .Values.apiToken "plain" .Values.apiToken.value) }}
{{- toJson $l }}
{{- end }}

{{/*
Renders an env list ({"env": [...]} as JSON in .json) followed by extraEnv,
and fails when extraEnv repeats a name the chart sets.
*/}}
{{- define "kinesis-loader.renderEnv" -}}
{{- $env := (.json | fromJson).env }}
{{- $names := dict }}
{{- range $env }}{{ $_ := set $names .name true }}{{ end }}
{{- range .root.Values.extraEnv }}
{{- if hasKey $names (toString .name) }}
{{- fail (printf "extraEnv sets %s, which the chart already sets from its values; set it there (see values.yaml) or remove it from extraEnv" .name) }}
{{- end }}
{{- end }}
{{- $all := concat $env .root.Values.extraEnv }}
{{- if $all }}
{{- toYaml $all }}
{{- end }}
{{- end }}

{{/* The preStop hook, or nothing when preStopSleepSeconds is 0. */}}
{{- define "kinesis-loader.lifecycle" -}}
{{- $s := int .Values.shutdown.preStopSleepSeconds }}
{{- if gt $s 0 }}
lifecycle:
  preStop:
    {{- if .Values.shutdown.nativeSleep }}
    sleep:
      seconds: {{ $s }}
    {{- else }}
    exec:
      command: ["sleep", "{{ $s }}"]
    {{- end }}
{{- end }}
{{- end }}

{{/* A CronJob's name: FULLNAME-load-SUFFIX, at most 52 characters. */}}
{{- define "kinesis-loader.loadName" -}}
{{- $suffix := default .load.stream .load.name | toString | lower | replace "_" "-" | replace "." "-" }}
{{- $suffix = regexReplaceAll "[^a-z0-9-]" $suffix "" | trimAll "-" }}
{{- if not $suffix }}
{{- fail (printf "cronJob.loads: cannot make a CronJob name from %v; give the entry a name of letters and digits" .load) }}
{{- end }}
{{- printf "%s-load-%s" (include "kinesis-loader.fullname" .root | trunc 30 | trimSuffix "-") $suffix | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* "true" when an autoscaler (HorizontalPodAutoscaler or KEDA) owns the replicas. */}}
{{- define "kinesis-loader.autoscaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}true{{ end }}
{{- end }}

{{/*
The PromQL label matchers of this release's series (metrics.selector, or
the release's namespace), joined with the extra matchers in .extra:
METRIC{MATCHERS}. Called with {"root": ., "metric": NAME, "extra": "a=\"b\""}.
*/}}
{{- define "kinesis-loader.series" -}}
{{- $sel := .root.Values.metrics.selector | default (printf "namespace=%q" .root.Release.Namespace) }}
{{- $all := compact (list $sel (.extra | default "")) | join "," }}
{{- printf "%s{%s}" .metric $all }}
{{- end }}

{{/* A duration of the form NUMBER UNIT (s, m, h, d, w), in seconds. */}}
{{- define "kinesis-loader.seconds" -}}
{{- $d := toString . }}
{{- $n := int (regexReplaceAll "[a-z]+$" $d "") }}
{{- $unit := regexReplaceAll "^[0-9]+" $d "" }}
{{- mul $n (get (dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800) $unit) }}
{{- end }}
