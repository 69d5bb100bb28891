{{/* Names and labels shared by every template. */}}

{{- define "pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A Kubernetes name of at most 63 characters (a DNS-1123 label: Services, label values, and so every name the
chart makes): the name itself when it fits, else its first 54 characters and "-" and 8 hex digits of its
sha256, so two long names that differ only past the cut stay distinct.
*/}}
{{- define "pipeline.boundedName" -}}
{{- if le (len .) 63 }}
{{- . }}
{{- else }}
{{- printf "%s-%s" (regexReplaceAll "[-.]+$" (trunc 54 .) "") (sha256sum . | trunc 8) }}
{{- end }}
{{- end }}

{{/* <release>-<chart> unless the release name already contains the chart name (pipeline.boundedName). */}}
{{- define "pipeline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- include "pipeline.boundedName" .Values.fullnameOverride }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- include "pipeline.boundedName" .Release.Name }}
{{- else }}
{{- include "pipeline.boundedName" (printf "%s-%s" .Release.Name $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
<base>-<suffix> in at most 63 characters: as it is when it fits, else the base cut short and tagged with 8 hex
digits of its sha256, then the suffix, which stays readable (<cut base>-<hash>-correlate-metrics); two bases
that differ only past the cut keep distinct names. Call with (dict "base" "..." "suffix" "...").
*/}}
{{- define "pipeline.suffixedName" -}}
{{- $name := printf "%s-%s" .base .suffix }}
{{- if le (len $name) 63 }}
{{- $name }}
{{- else }}
{{- $cut := regexReplaceAll "[-.]+$" (trunc (int (sub 53 (len .suffix))) .base) "" }}
{{- printf "%s-%s-%s" $cut (sha256sum .base | trunc 8) .suffix }}
{{- end }}
{{- end }}

{{/* <fullname>-<suffix> (e.g. "correlate", "correlate-metrics"); call with (dict "root" $ "suffix" "correlate"). */}}
{{- define "pipeline.componentName" -}}
{{- include "pipeline.suffixedName" (dict "base" (include "pipeline.fullname" .root) "suffix" .suffix) }}
{{- end }}

{{/*
A name that must be unique beyond the release namespace (cluster-scoped objects, Roles in watched namespaces):
<release namespace>-<fullname>-<suffix>; call with (dict "root" $ "suffix" "watch").
*/}}
{{- define "pipeline.crossNamespaceName" -}}
{{- include "pipeline.suffixedName" (dict "base" (printf "%s-%s" .root.Release.Namespace (include "pipeline.fullname" .root)) "suffix" .suffix) }}
{{- end }}

{{- define "pipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipeline.name" . }}
app.kubernetes.io/instance: {{ include "pipeline.boundedName" .Release.Name }}
{{- end }}

{{- define "pipeline.labels" -}}
helm.sh/chart: {{ include "pipeline.chart" . }}
{{ include "pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pipeline
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "ingest"). */}}
{{- define "pipeline.componentSelectorLabels" -}}
{{ include "pipeline.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pipeline.componentLabels" -}}
{{ include "pipeline.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pipeline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pipeline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pipeline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Service name of an HTTP component: its service.name, or <fullname>-<component>. */}}
{{- define "pipeline.serviceName" -}}
{{- $values := index .root.Values .component }}
{{- default (include "pipeline.componentName" (dict "root" .root "suffix" .component)) $values.service.name }}
{{- end }}

{{- define "pipeline.bootstrapServers" -}}
{{- required "kafka.bootstrapServers is required (host:port of an existing Kafka cluster)" .Values.kafka.bootstrapServers }}
{{- end }}

{{/*
Environment every container shares: where Kafka is and how to authenticate, the topic names. Secrets are
only referenced (secretKeyRef) and files mounted by pipeline.kafkaVolumeMounts.
*/}}
{{- define "pipeline.kafkaEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "pipeline.bootstrapServers" . | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: KAFKA_CLIENT_ID
  value: {{ .Values.kafka.clientId | quote }}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ required "kafka.sasl.username is required with a SASL security protocol" .Values.kafka.sasl.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.passwordSecret.name is required with a SASL security protocol" .Values.kafka.sasl.passwordSecret.name | quote }}
      key: {{ .Values.kafka.sasl.passwordSecret.key | quote }}
{{- end }}
{{- if hasSuffix "SSL" .Values.kafka.securityProtocol }}
{{- if .Values.kafka.tls.caSecret.name }}
- name: KAFKA_SSL_CAFILE
  value: /etc/pipeline/kafka/ca/{{ .Values.kafka.tls.caSecret.key }}
{{- end }}
{{- if .Values.kafka.tls.clientSecret.name }}
- name: KAFKA_SSL_CERTFILE
  value: /etc/pipeline/kafka/client/{{ .Values.kafka.tls.clientSecret.certKey }}
- name: KAFKA_SSL_KEYFILE
  value: /etc/pipeline/kafka/client/{{ .Values.kafka.tls.clientSecret.keyKey }}
{{- end }}
{{- end }}
- name: TOPIC_PREFIX
  value: {{ .Values.topicPrefix | quote }}
- name: TOPIC_REPLICATION_FACTOR
  value: {{ .Values.kafka.topicReplicationFactor | quote }}
- name: NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pipeline.kafkaVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if hasSuffix "SSL" .Values.kafka.securityProtocol }}
{{- if .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/pipeline/kafka/ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.clientSecret.name }}
- name: kafka-client
  mountPath: /etc/pipeline/kafka/client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "pipeline.kafkaVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if hasSuffix "SSL" .Values.kafka.securityProtocol }}
{{- if .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret.name | quote }}
    items:
      - key: {{ .Values.kafka.tls.caSecret.key | quote }}
        path: {{ .Values.kafka.tls.caSecret.key | quote }}
{{- end }}
{{- if .Values.kafka.tls.clientSecret.name }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.tls.clientSecret.name | quote }}
    items:
      - key: {{ .Values.kafka.tls.clientSecret.certKey | quote }}
        path: {{ .Values.kafka.tls.clientSecret.certKey | quote }}
      - key: {{ .Values.kafka.tls.clientSecret.keyKey | quote }}
        path: {{ .Values.kafka.tls.clientSecret.keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the Deployments and the topics Job. */}}
{{- define "pipeline.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The full name of a logical topic, as Settings.topic() builds it. */}}
{{- define "pipeline.topicName" -}}
{{- printf "%s%s" .root.Values.topicPrefix .name }}
{{- end }}

{{/*
The spec's config with min.insync.replicas chosen as pipeline.bus.topics.effective_config does, so the
KafkaTopic CRs and `pipeline topics apply` agree (and `topics apply` reports no drift on CR-made topics).
Call with (dict "spec" $spec "replicas" $rf); renders a YAML map.
*/}}
{{- define "pipeline.topicConfig" -}}
{{- $minIsr := max 1 (min 2 (sub .replicas 1)) }}
{{- $config := merge (dict) (default (dict) .spec.config) (dict "min.insync.replicas" (toString $minIsr)) }}
{{- range $key := keys $config | sortAlpha }}
{{ $key }}: {{ index $config $key | toString | quote }}
{{- end }}
{{- end }}

{{/* Every topic spec of files/topics/, parsed; fails on a file that is not YAML. Renders a JSON list. */}}
{{- define "pipeline.topicSpecs" -}}
{{- $specs := list }}
{{- range $path, $_ := .Files.Glob "files/topics/*.yaml" }}
{{- $spec := $.Files.Get $path | fromYaml }}
{{- if hasKey $spec "Error" }}
{{- fail (printf "%s is not valid YAML: %s" $path $spec.Error) }}
{{- end }}
{{- if not (and $spec.name $spec.partitions $spec.replication) }}
{{- fail (printf "%s needs name, partitions and replication" $path) }}
{{- end }}
{{- $specs = append $specs $spec }}
{{- end }}
{{- if not $specs }}
{{- fail "no topic specs in files/topics/ (copy topics/*.yaml there)" }}
{{- end }}
{{- toJson $specs }}
{{- end }}

{{/*
Prometheus / Thanos Querier settings, only for the components that query it (enrich, gateway). Nothing
when prometheus.url is empty. The token comes from a Secret (secretKeyRef) or from the projected
ServiceAccount token that pipeline.prometheusVolumes adds; PROMETHEUS_TOKEN_FILE is otherwise set empty
so that a ServiceAccount token mounted for another reason is never sent to Prometheus.
*/}}
{{- define "pipeline.prometheusEnv" -}}
{{- $p := .Values.prometheus }}
{{- if $p.url }}
{{- if and $p.tokenSecret.name $p.useServiceAccountToken }}
{{- fail "prometheus.tokenSecret.name and prometheus.useServiceAccountToken are mutually exclusive (the Secret's token would win)" }}
{{- end }}
- name: PROMETHEUS_URL
  value: {{ $p.url | quote }}
{{- if $p.tokenSecret.name }}
- name: PROMETHEUS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $p.tokenSecret.name | quote }}
      key: {{ $p.tokenSecret.key | quote }}
{{- end }}
- name: PROMETHEUS_TOKEN_FILE
{{- if $p.useServiceAccountToken }}
  value: /var/run/secrets/pipeline/prometheus/token
{{- else }}
  value: ""
{{- end }}
{{- if $p.caConfigMap.name }}
- name: PROMETHEUS_CA_FILE
  value: /etc/pipeline/prometheus/ca/{{ $p.caConfigMap.key }}
{{- end }}
- name: PROMETHEUS_TIMEOUT_S
  value: {{ $p.timeoutSeconds | quote }}
- name: PROMETHEUS_MAX_CONCURRENCY
  value: {{ $p.maxConcurrency | quote }}
{{- if kindIs "bool" $p.thanos.dedup }}
- name: THANOS_DEDUP
  value: {{ $p.thanos.dedup | quote }}
{{- end }}
{{- if kindIs "bool" $p.thanos.partialResponse }}
- name: THANOS_PARTIAL_RESPONSE
  value: {{ $p.thanos.partialResponse | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pipeline.prometheusVolumeMounts" -}}
{{- $p := .Values.prometheus }}
{{- if $p.url }}
{{- if $p.useServiceAccountToken }}
- name: prometheus-token
  mountPath: /var/run/secrets/pipeline/prometheus
  readOnly: true
{{- end }}
{{- if $p.caConfigMap.name }}
- name: prometheus-ca
  mountPath: /etc/pipeline/prometheus/ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The projected token is audience-less: the API server's audience, which TokenReview (kube-rbac-proxy) accepts. */}}
{{- define "pipeline.prometheusVolumes" -}}
{{- $p := .Values.prometheus }}
{{- if $p.url }}
{{- if $p.useServiceAccountToken }}
- name: prometheus-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ $p.tokenExpirationSeconds }}
{{- end }}
{{- if $p.caConfigMap.name }}
- name: prometheus-ca
  configMap:
    name: {{ $p.caConfigMap.name | quote }}
    items:
      - key: {{ $p.caConfigMap.key | quote }}
        path: {{ $p.caConfigMap.key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
ML settings, only for the components that call the model (score, gateway). Each KServe model becomes
KSERVE_<NAME>_SERVICE (and _MODEL, _URL when given), NAME being its name upper-cased with "-" -> "_", which
adapters.ml.ModelRegistry.from_env turns back into the name. Fails on a model without service or url, on
a name listed twice, and on names the app would read as configuration (KSERVE_NAMESPACE*, KSERVE_TIMEOUT*,
KSERVE_PREDICTOR_PORT*) rather than as a model.
*/}}
{{- define "pipeline.mlEnv" -}}
{{- $ml := .Values.ml }}
{{- if $ml.serviceUrl }}
- name: ML_SERVICE_URL
  value: {{ $ml.serviceUrl | quote }}
{{- end }}
- name: ML_TIMEOUT_S
  value: {{ $ml.timeoutSeconds | quote }}
- name: ML_RETRY_ATTEMPTS
  value: {{ $ml.retryAttempts | quote }}
- name: ML_CIRCUIT_BREAKER_THRESHOLD
  value: {{ $ml.circuitBreaker.threshold | quote }}
- name: ML_CIRCUIT_BREAKER_TIMEOUT_S
  value: {{ $ml.circuitBreaker.resetSeconds | quote }}
- name: KSERVE_NAMESPACE
  value: {{ default .Release.Namespace $ml.kserve.namespace | quote }}
- name: KSERVE_PREDICTOR_PORT
  value: {{ $ml.kserve.predictorPort | quote }}
- name: KSERVE_TIMEOUT_S
  value: {{ $ml.kserve.timeoutSeconds | quote }}
{{- $protocol := default "v1" $ml.kserve.protocol }}
{{- if not (has $protocol (list "v1" "v2")) }}
{{- fail (printf "ml.kserve.protocol must be v1 or v2, got %s" $protocol) }}
{{- end }}
- name: KSERVE_PROTOCOL
  value: {{ $protocol | quote }}
{{- $seen := dict }}
{{- range $i, $m := $ml.kserve.models }}
{{- $env := printf "KSERVE_%s" ($m.name | upper | replace "-" "_") }}
{{- if hasKey $seen $m.name }}
{{- fail (printf "ml.kserve.models: %s is listed twice" $m.name) }}
{{- end }}
{{- $_ := set $seen $m.name true }}
{{- if or (hasPrefix "KSERVE_NAMESPACE" $env) (hasPrefix "KSERVE_TIMEOUT" $env) (hasPrefix "KSERVE_PREDICTOR_PORT" $env) }}
{{- fail (printf "ml.kserve.models[%d]: the name %s is reserved (%s_* would be read as KServe configuration, not a model)" $i $m.name $env) }}
{{- end }}
{{- if not (or $m.service $m.url) }}
{{- fail (printf "ml.kserve.models[%d] (%s) needs service (the predictor Service) or url" $i $m.name) }}
{{- end }}
{{- with $m.service }}
- name: {{ $env }}_SERVICE
  value: {{ . | quote }}
{{- end }}
{{- with $m.model }}
- name: {{ $env }}_MODEL
  value: {{ . | quote }}
{{- end }}
{{- with $m.url }}
- name: {{ $env }}_URL
  value: {{ . | quote }}
{{- end }}
{{- with $m.protocol }}
{{- if not (has . (list "v1" "v2")) }}
{{- fail (printf "ml.kserve.models[%d] (%s): protocol must be v1 or v2, got %s" $i $m.name .) }}
{{- end }}
- name: {{ $env }}_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The remediation rules file (the versioned actions, exclusive groups and rules): remediation.rules when
set, else the chart's copy files/rules/remediation.yaml (of rules/remediation.yaml, kept in sync by
deploy/check-topics-in-sync.sh). Fails when it is not a YAML map with version and actions; the app
validates the rest on start (pipeline.domain.arbitration.load_rules).
*/}}
{{- define "pipeline.remediationRules" -}}
{{- $source := "remediation.rules" }}
{{- $text := .Values.remediation.rules }}
{{- if not $text }}
{{- $source = "files/rules/remediation.yaml" }}
{{- $text = .Files.Get $source }}
{{- end }}
{{- if not $text }}
{{- fail "files/rules/remediation.yaml is missing (copy rules/remediation.yaml there) and remediation.rules is empty" }}
{{- end }}
{{- $parsed := fromYaml $text }}
{{- if hasKey $parsed "Error" }}
{{- fail (printf "%s is not a YAML map: %s" $source $parsed.Error) }}
{{- end }}
{{- if not (and (hasKey $parsed "version") (hasKey $parsed "actions")) }}
{{- fail (printf "%s needs version and actions (see rules/remediation.yaml)" $source) }}
{{- end }}
{{- $text }}
{{- end }}

{{- define "pipeline.remediationRulesName" -}}
{{- include "pipeline.componentName" (dict "root" . "suffix" "remediation-rules") }}
{{- end }}

{{/*
Remediation settings, only for the components that read them; call with
(dict "root" $ "policy" bool "mode" bool "executor" bool). Every such component gets REMEDIATION_RULES_PATH
(the rules ConfigMap mounted by pipeline.remediationVolumeMounts); with policy (arbitrate, gateway) also the
arbitration policy, the same values in both, so the gateway's /api/v1/status shows what arbitrate enforces;
with executor (remediate) REMEDIATION_ACTION_TIMEOUT_S and the executor's settings (pipeline.remediateEnv);
with mode (gateway) REMEDIATION_MODE, the executor's, shown on /api/v1/status. remediation.approval null
leaves REMEDIATION_APPROVAL unset (the app's defaults); a list, even [], is sent as JSON.
*/}}
{{- define "pipeline.remediationEnv" -}}
{{- $r := .root.Values.remediation }}
- name: REMEDIATION_RULES_PATH
  value: /etc/pipeline/rules/remediation.yaml
{{- if .executor }}
- name: REMEDIATION_ACTION_TIMEOUT_S
  value: {{ $r.actionTimeoutSeconds | quote }}
{{- include "pipeline.remediateEnv" .root }}
{{- end }}
{{- if .mode }}
- name: REMEDIATION_MODE
  value: {{ $r.mode | quote }}
{{- end }}
{{- if .policy }}
- name: REMEDIATION_KILL_SWITCH
  value: {{ $r.killSwitch | quote }}
- name: REMEDIATION_PROTECTED_NAMESPACES
  value: {{ join "," (default (list) $r.protectedNamespaces) | quote }}
- name: REMEDIATION_COOLDOWN_S
  value: {{ $r.cooldownSeconds | quote }}
- name: REMEDIATION_NAMESPACE_BUDGET
  value: {{ $r.namespaceBudget | int | quote }}
- name: REMEDIATION_ACTION_TIMEOUT_S
  value: {{ $r.actionTimeoutSeconds | quote }}
- name: REMEDIATION_DECIDED_MEMORY
  value: {{ $r.decidedMemory | int | quote }}
- name: CONFIDENCE_THRESHOLD
  value: {{ $r.confidenceThreshold | quote }}
{{- if not (kindIs "invalid" $r.approval) }}
- name: REMEDIATION_APPROVAL
  value: {{ $r.approval | toJson | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pipeline.remediationVolumeMounts" -}}
- name: remediation-rules
  mountPath: /etc/pipeline/rules
  readOnly: true
{{- end }}

{{- define "pipeline.remediationVolumes" -}}
- name: remediation-rules
  configMap:
    name: {{ include "pipeline.remediationRulesName" . }}
    items:
      - key: remediation.yaml
        path: remediation.yaml
{{- end }}

{{/*
The watcher's own ServiceAccount: watch.serviceAccount.name, else <fullname>-watch when the chart creates
ServiceAccounts. Never the shared one (nor "default"): its token is mounted and bound to a ClusterRole.
*/}}
{{- define "pipeline.watchServiceAccountName" -}}
{{- $name := .Values.watch.serviceAccount.name }}
{{- if not $name }}
{{- if not .Values.serviceAccount.create }}
{{- fail "watch.serviceAccount.name is required when serviceAccount.create is false (the watcher needs a ServiceAccount of its own; or set watch.enabled=false)" }}
{{- end }}
{{- $name = include "pipeline.componentName" (dict "root" . "suffix" "watch") }}
{{- end }}
{{- if eq $name (include "pipeline.serviceAccountName" .) }}
{{- fail (printf "watch.serviceAccount.name must differ from the other components' ServiceAccount (%s): only the watcher gets API rights and a token" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* Cluster-scoped names carry the namespace, so releases of the same name in two namespaces do not clash. */}}
{{- define "pipeline.watchClusterRoleName" -}}
{{- include "pipeline.crossNamespaceName" (dict "root" . "suffix" "watch") }}
{{- end }}

{{/*
Settings of the Kubernetes watcher, for the watch container only. The Lease lives in the release
namespace (where the Role grants it); WATCH_IDENTITY is the pod name, so the Lease names its holder.
KUBECONFIG stays unset: the in-cluster ServiceAccount. NAMESPACE comes with pipeline.kafkaEnv.
*/}}
{{- define "pipeline.watchEnv" -}}
{{- $w := .Values.watch }}
{{- if ge (float64 $w.lease.renewSeconds) (float64 $w.lease.durationSeconds) }}
{{- fail (printf "watch.lease.renewSeconds (%v) must be less than watch.lease.durationSeconds (%v): the leader would lose the Lease between renewals" $w.lease.renewSeconds $w.lease.durationSeconds) }}
{{- end }}
- name: WATCH_NAMESPACES
  value: {{ join "," (default (list) $w.namespaces) | quote }}
- name: WATCH_EXCLUDE_NAMESPACES
  value: {{ join "," (default (list) $w.excludeNamespaces) | quote }}
- name: WATCH_EVENT_APIS
  value: {{ join "," (default (list) $w.eventApis) | quote }}
- name: WATCH_PROBE_FAILURE_THRESHOLD
  value: {{ $w.probeFailureThreshold | int | quote }}
- name: WATCH_TIMEOUT_S
  value: {{ $w.timeoutSeconds | int | quote }}
- name: CLUSTER_NAME
  value: {{ $w.clusterName | quote }}
- name: WATCH_LEASE_NAME
  value: {{ include "pipeline.watchLeaseName" . | quote }}
- name: WATCH_LEASE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: WATCH_LEASE_DURATION_S
  value: {{ $w.lease.durationSeconds | int | quote }}
- name: WATCH_LEASE_RENEW_S
  value: {{ $w.lease.renewSeconds | quote }}
- name: WATCH_LEASE_RETRY_S
  value: {{ $w.lease.retrySeconds | quote }}
- name: WATCH_IDENTITY
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/*
The ServiceAccount of a component that calls the Kubernetes API with a token of its own (remediate; the
gateway with detection); call with (dict "root" $ "component" "remediate" "values" "remediate"). Its
serviceAccount.name, else <fullname>-<component> when the chart creates ServiceAccounts. Never the shared
one, nor the watcher's: its token is mounted and bound to a ClusterRole of its own.
*/}}
{{- define "pipeline.componentServiceAccountName" -}}
{{- $root := .root }}
{{- $name := (index $root.Values .component).serviceAccount.name }}
{{- if not $name }}
{{- if not $root.Values.serviceAccount.create }}
{{- fail (printf "%s.serviceAccount.name is required when serviceAccount.create is false (%s needs a ServiceAccount of its own)" .component .component) }}
{{- end }}
{{- $name = include "pipeline.componentName" (dict "root" $root "suffix" .component) }}
{{- end }}
{{- if eq $name (include "pipeline.serviceAccountName" $root) }}
{{- fail (printf "%s.serviceAccount.name must differ from the other components' ServiceAccount (%s): only %s gets its API rights and a token" .component $name .component) }}
{{- end }}
{{- if and $root.Values.watch.enabled (eq $name (include "pipeline.watchServiceAccountName" $root)) }}
{{- fail (printf "%s.serviceAccount.name must differ from the watcher's ServiceAccount (%s)" .component $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "pipeline.remediateServiceAccountName" -}}
{{- $name := include "pipeline.componentServiceAccountName" (dict "root" . "component" "remediate") }}
{{- if and .Values.gateway.enabled .Values.gateway.detection.enabled (eq $name (include "pipeline.componentServiceAccountName" (dict "root" . "component" "gateway"))) }}
{{- fail (printf "remediate.serviceAccount.name and gateway.serviceAccount.name must differ (%s): the gateway reads, remediate writes" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "pipeline.gatewayServiceAccountName" -}}
{{- include "pipeline.componentServiceAccountName" (dict "root" . "component" "gateway") }}
{{- end }}

{{/* Cluster-scoped names, with the namespace (as the watcher's). */}}
{{- define "pipeline.remediateClusterRoleName" -}}
{{- include "pipeline.crossNamespaceName" (dict "root" . "suffix" "remediate") }}
{{- end }}

{{- define "pipeline.gatewayClusterRoleName" -}}
{{- include "pipeline.crossNamespaceName" (dict "root" . "suffix" "gateway-detection") }}
{{- end }}

{{/*
The executor's settings, for the remediate container only (REMEDIATION_MODE also reaches the gateway, which
shows it on /api/v1/status). REMEDIATION_IDENTITY is the pod name; KUBECONFIG stays unset: the in-cluster
ServiceAccount. REMEDIATION_RULES_PATH and REMEDIATION_ACTION_TIMEOUT_S (the same as arbitrate's: a
workflow waiting for approval longer than that ends skipped) come with pipeline.remediationEnv.
*/}}
{{- define "pipeline.remediateEnv" -}}
{{- $r := .Values.remediation }}
- name: REMEDIATION_MODE
  value: {{ $r.mode | quote }}
- name: REMEDIATION_STEP_TIMEOUT_S
  value: {{ $r.stepTimeoutSeconds | quote }}
- name: REMEDIATION_CHECKPOINT_TIMEOUT_S
  value: {{ $r.checkpointTimeoutSeconds | quote }}
- name: REMEDIATION_POLL_S
  value: {{ $r.pollSeconds | quote }}
- name: REMEDIATION_STORM_MAX_UNHEALTHY
  value: {{ $r.stormMaxUnhealthy | quote }}
- name: REMEDIATION_STORM_MIN_UNHEALTHY
  value: {{ $r.stormMinUnhealthy | int | quote }}
- name: HELM_BINARY
  value: {{ $r.helmBinary | quote }}
- name: REMEDIATION_IDENTITY
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- $scope := include "pipeline.rbacScope" . | fromJson }}
{{- if $scope.scoped }}
# Namespace-scoped RBAC: the start-up self-check asks in these namespaces (pipeline.rbacScope).
- name: REMEDIATION_NAMESPACES
  value: {{ join "," $scope.namespaces | quote }}
{{- end }}
{{- include "pipeline.argocdEnv" . }}
{{- end }}

{{/*
The watcher's Lease: watch.lease.name, else <fullname>-watch, so two releases in one namespace never share one
(a shared Lease would let only one of them watch).
*/}}
{{- define "pipeline.watchLeaseName" -}}
{{- default (include "pipeline.componentName" (dict "root" . "suffix" "watch")) .Values.watch.lease.name }}
{{- end }}

{{/*
Namespace-scoped RBAC. When every entry of watch.namespaces is an exact namespace name (no glob), the watcher
lists and watches those namespaces one by one (pipeline.domain.kube_signals.WatchFilter.exact_namespaces), and
the watcher, remediate and the gateway's detection get Roles in them instead of ClusterRoles on namespaced
resources. Renders JSON {"scoped": bool, "namespaces": [...]}: the listed namespaces, less those
watch.excludeNamespaces matches (globs: * and ? as fnmatch reads them), as the app leaves them out.
*/}}
{{- define "pipeline.rbacScope" -}}
{{- $include := default (list) .Values.watch.namespaces }}
{{- $exact := true }}
{{- range $include }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}{{ $exact = false }}{{ end }}
{{- end }}
{{- $out := list }}
{{- if and $include $exact }}
{{- range $ns := $include }}
{{- $excluded := false }}
{{- range $p := default (list) $.Values.watch.excludeNamespaces }}
{{- $re := printf "^%s$" ($p | replace "." "\\." | replace "*" ".*" | replace "?" "." | replace "[!" "[^") }}
{{- if regexMatch $re $ns }}{{ $excluded = true }}{{ end }}
{{- end }}
{{- if and (not $excluded) (not (has $ns $out)) }}{{ $out = append $out $ns }}{{ end }}
{{- end }}
{{- end }}
{{- toJson (dict "scoped" (and (gt (len $include) 0) $exact) "namespaces" $out) }}
{{- end }}

{{/*
ArgoCD Applications in namespace-scoped RBAC: rbac.argocdNamespaces, where detection lists them one namespace at a
time (ARGOCD_NAMESPACES, for remediate and the gateway) and where their Roles grant it. Renders the env entries,
nothing when the RBAC is cluster-wide or the list is empty (detection then lists every namespace, which a
Role cannot allow: "ArgoCD Applications not readable", and no workload is taken for a GitOps one).
*/}}
{{- define "pipeline.argocdEnv" -}}
{{- $scope := include "pipeline.rbacScope" . | fromJson }}
{{- if and $scope.scoped .Values.rbac.argocdNamespaces }}
- name: ARGOCD_NAMESPACES
  value: {{ join "," .Values.rbac.argocdNamespaces | quote }}
{{- end }}
{{- end }}

{{/*
remediate's rules on namespaced kinds but ArgoCD's (rbac-remediate.yaml): in its ClusterRole, or in a Role per
namespace with namespace-scoped RBAC.
*/}}
{{- define "pipeline.remediateNamespacedRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, delete]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list]
# Detection: the controllers of a pod that are no workload the remediator changes (read-only).
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get]
- apiGroups: [""]
  resources: [replicationcontrollers]
  verbs: [get]
{{- range $i, $o := .Values.remediation.operatorResources }}
- apiGroups: [{{ $o.apiGroup | quote }}]
  resources: {{ toJson $o.resources }}
  verbs: [get, patch]
{{- end }}
{{- end }}

{{/*
The gateway's detection reads on namespaced kinds but ArgoCD's (rbac-gateway.yaml): in its ClusterRole, or in a
Role per namespace with namespace-scoped RBAC.
*/}}
{{- define "pipeline.detectionNamespacedRules" -}}
- apiGroups: [""]
  resources: [pods, replicationcontrollers]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets, replicasets]
  verbs: [get]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get]
{{- end }}
