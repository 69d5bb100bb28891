#!/usr/bin/env bash
# Check the Helm chart: topic specs in sync with topics/, `helm lint --strict`, and `helm template` with
# the defaults and with each deploy/helm/pipeline/ci/*-values.yaml; every rendered document must parse as
# YAML, the expected kinds must be there, no Secret is rendered, HOST is 0.0.0.0, Prometheus settings only
# reach enrich and gateway and ML settings only score and gateway (the same in both), and missing required
# values, misspelt keys (values.schema.json) and invalid ML models fail rendering with their message.
#
# Needs helm 3 on PATH (see the message below when it is not); PyYAML for the YAML checks (the project's
# .venv has it). KUBE_VERSION (default 1.31.0) is the cluster version rendered for.
# CHECK_CHART_REQUIRE_HELM=1 turns "helm not found" into a failure (for CI).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart="$root/deploy/helm/pipeline"
kube_version="${KUBE_VERSION:-1.31.0}"
cd "$root"

"$root/deploy/check-topics-in-sync.sh"

if ! command -v helm >/dev/null 2>&1; then
  cat <<'MSG'
helm not found on PATH: lint and template checks SKIPPED.
Get it from the Go module proxy (Go >= 1.22), with the same version stamps as the release binaries:
  P=helm.sh/helm/v3
  GOFLAGS=-mod=mod go install -ldflags "-X $P/internal/version.version=v3.16.4 \
    -X $P/pkg/chartutil.k8sVersionMajor=1 -X $P/pkg/chartutil.k8sVersionMinor=31 \
    -X $P/pkg/lint/rules.k8sVersionMajor=1 -X $P/pkg/lint/rules.k8sVersionMinor=31" $P/cmd/helm@v3.16.4
  export PATH="$PATH:$(go env GOPATH)/bin"
(or any helm 3 release binary: https://helm.sh/docs/intro/install/)
MSG
  [[ "${CHECK_CHART_REQUIRE_HELM:-0}" == 1 ]] && exit 1
  exit 0
fi

python=""
for candidate in "$root/.venv/bin/python" python3; do
  if "$candidate" -c 'import yaml' >/dev/null 2>&1; then python="$candidate"; break; fi
done

topics=$(ls -1 "$chart"/files/topics/*.yaml | wc -l)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check_render NAME EXPECTED HELM_ARGS...   EXPECTED: "Kind=count ..." (count 0: absent) and
# "env:NAME=value ..." (every score and gateway container has env NAME with that value)
check_render() {
  local name="$1" expected="$2"
  shift 2
  echo "== $name"
  if ! helm lint --strict --kube-version "$kube_version" "$chart" "$@" >"$out/$name.lint" 2>&1; then
    cat "$out/$name.lint"; fail "$name: helm lint"; return
  fi
  if ! helm template pipeline "$chart" --namespace alerts --kube-version "$kube_version" "$@" \
      >"$out/$name.yaml" 2>"$out/$name.err"; then
    cat "$out/$name.err"; fail "$name: helm template"; return
  fi
  if [[ -z "$python" ]]; then
    echo "   rendered $(grep -c '^kind:' "$out/$name.yaml") objects (no PyYAML: YAML checks skipped)"
    return
  fi
  "$python" - "$out/$name.yaml" "$expected" <<'PY' || fail "$name: rendered manifests"
import collections, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = collections.Counter(d["kind"] for d in docs)
problems = []
ml_env = {}
for item in sys.argv[2].split():
    if item.startswith("env:"):
        name, value = item.removeprefix("env:").split("=", 1)
        ml_env[name] = value
        continue
    kind, count = item.split("=")
    if kinds.get(kind, 0) != int(count):
        problems.append(f"expected {count} {kind}, got {kinds.get(kind, 0)}")
ml_settings = {}
if kinds.get("Secret"):
    problems.append("a Secret is rendered: secrets must only be referenced")
for d in docs:
    if d["kind"] != "Deployment":
        continue
    for c in d["spec"]["template"]["spec"]["containers"]:
        env = {e["name"]: e for e in c.get("env", [])}
        if env.get("HOST", {}).get("value") != "0.0.0.0":
            problems.append(f"{d['metadata']['name']}: HOST is not 0.0.0.0")
        for secret in ("API_TOKEN", "KAFKA_SASL_PASSWORD", "PROMETHEUS_TOKEN"):
            if secret in env and "valueFrom" not in env[secret]:
                problems.append(f"{d['metadata']['name']}: {secret} is a plain value")
        component = d["metadata"]["labels"].get("app.kubernetes.io/component")
        prom = sorted(n for n in env if n.startswith(("PROMETHEUS_", "THANOS_")))
        if prom and component not in ("enrich", "gateway"):
            problems.append(f"{d['metadata']['name']}: Prometheus settings outside enrich/gateway: {prom}")
        ml = {n: e.get("value") for n, e in env.items() if n.startswith(("ML_", "KSERVE_"))}
        if ml and component not in ("score", "gateway"):
            problems.append(f"{d['metadata']['name']}: ML settings outside score/gateway: {sorted(ml)}")
        if component in ("score", "gateway"):
            ml_settings[d["metadata"]["name"]] = ml
            for name, value in ml_env.items():
                if ml.get(name) != value:
                    problems.append(f"{d['metadata']['name']}: {name} is {ml.get(name)!r}, expected {value!r}")
        if "PROMETHEUS_URL" in env and env.get("PROMETHEUS_TOKEN_FILE", {}).get("value") not in (
                "", "/var/run/secrets/pipeline/prometheus/token"):
            problems.append(f"{d['metadata']['name']}: PROMETHEUS_TOKEN_FILE left at the app default")
        volumes = {v["name"] for v in d["spec"]["template"]["spec"].get("volumes", [])}
        if "prometheus-token" in volumes and component not in ("enrich", "gateway"):
            problems.append(f"{d['metadata']['name']}: Prometheus token mounted outside enrich/gateway")
        sc = c.get("securityContext", {})
        if not (sc.get("readOnlyRootFilesystem") and sc.get("runAsNonRoot")
                and sc.get("capabilities", {}).get("drop") == ["ALL"]):
            problems.append(f"{d['metadata']['name']}: container securityContext is not locked down")
if len({tuple(sorted(m.items())) for m in ml_settings.values()}) > 1:
    problems.append(f"score and gateway get different ML settings: {ml_settings}")
print("   " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
for p in problems:
    print("   " + p)
sys.exit(1 if problems else 0)
PY
}

# check_fails NAME MESSAGE HELM_ARGS...: rendering must fail and say MESSAGE.
check_fails() {
  local name="$1" message="$2"
  shift 2
  echo "== $name (must fail)"
  if helm template pipeline "$chart" --kube-version "$kube_version" "$@" >/dev/null 2>"$out/$name.err"; then
    fail "$name: rendered although it should not"
  elif ! grep -qF "$message" "$out/$name.err"; then
    cat "$out/$name.err"; fail "$name: wrong error"
  else
    echo "   failed as expected: $message"
  fi
}

base="Deployment=5 Service=5 ServiceAccount=1 Role=1 RoleBinding=1 Pod=1"
check_render defaults "$base ConfigMap=1 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0 \
  env:KSERVE_NAMESPACE=alerts env:ML_CIRCUIT_BREAKER_THRESHOLD=3 env:ML_CIRCUIT_BREAKER_TIMEOUT_S=30" \
  --set kafka.bootstrapServers=kafka-bootstrap:9092
check_render minimal-values "$base ConfigMap=1 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0" \
  -f "$chart/ci/minimal-values.yaml"
check_render full-values "$base ConfigMap=0 Job=0 KafkaTopic=$topics ServiceMonitor=5 ClusterRoleBinding=1 \
  env:KSERVE_NAMESPACE=self-healing-platform env:KSERVE_ANOMALY_DETECTOR_SERVICE=anomaly-detector-predictor \
  env:KSERVE_PREDICTIVE_ANALYTICS_SERVICE=predictive-analytics-predictor" \
  -f "$chart/ci/full-values.yaml"
check_render mtls-values "$base ConfigMap=1 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0 \
  env:ML_SERVICE_URL=http://aiops-ml-service:8080 env:KSERVE_PREDICTIVE_ANALYTICS_URL=http://models.example:8080 \
  env:KSERVE_PREDICTIVE_ANALYTICS_MODEL=predictive-analytics-v2" \
  -f "$chart/ci/mtls-values.yaml"
check_render prometheus-token-secret "$base ConfigMap=1 Job=1 ClusterRoleBinding=0" \
  -f "$chart/ci/minimal-values.yaml" \
  --set prometheus.url=https://prometheus.example:9090,prometheus.tokenSecret.name=prometheus-token
check_render gateway-only "Deployment=1 Service=1 ServiceAccount=1 Role=1 RoleBinding=1 Pod=1 ConfigMap=0 Job=0" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set topicsJob.enabled=false
check_render score-only "Deployment=1 Service=1 ServiceAccount=1 Role=1 RoleBinding=1 Pod=0 ConfigMap=0 Job=0 \
  env:KSERVE_ANOMALY_DETECTOR_URL=http://anomaly-detector.example:8080" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,gateway.enabled=false \
  --set topicsJob.enabled=false \
  --set ml.kserve.models[0].name=anomaly-detector,ml.kserve.models[0].url=http://anomaly-detector.example:8080

check_fails no-bootstrap "kafka.bootstrapServers is required"
check_fails no-cluster-name "kafkaTopics.clusterName is required" \
  -f "$chart/ci/minimal-values.yaml" --set kafkaTopics.enabled=true
check_fails sasl-without-secret "kafka.sasl.passwordSecret.name is required" \
  -f "$chart/ci/minimal-values.yaml" --set kafka.securityProtocol=SASL_SSL,kafka.sasl.username=u
check_fails prometheus-two-tokens "mutually exclusive" \
  -f "$chart/ci/minimal-values.yaml" --set prometheus.url=https://p:9091,prometheus.tokenSecret.name=t \
  --set prometheus.useServiceAccountToken=true
check_fails monitoring-view-without-token "prometheus.openshiftMonitoringView needs" \
  -f "$chart/ci/minimal-values.yaml" --set prometheus.openshiftMonitoringView=true
check_fails misspelt-value "Additional property serviceMonitors is not allowed" \
  -f "$chart/ci/minimal-values.yaml" --set serviceMonitors.enabled=true
check_fails misspelt-ml-value "Additional property resetSecond is not allowed" \
  -f "$chart/ci/minimal-values.yaml" --set ml.circuitBreaker.resetSecond=10
check_fails model-without-service "ml.kserve.models[0] (anomaly-detector) needs service" \
  -f "$chart/ci/minimal-values.yaml" --set ml.kserve.models[0].name=anomaly-detector
check_fails model-listed-twice "ml.kserve.models: anomaly-detector is listed twice" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ml.kserve.models[0].name=anomaly-detector,ml.kserve.models[0].service=a \
  --set ml.kserve.models[1].name=anomaly-detector,ml.kserve.models[1].service=b
check_fails model-reserved-name "the name timeout-model is reserved" \
  -f "$chart/ci/minimal-values.yaml" --set ml.kserve.models[0].name=timeout-model,ml.kserve.models[0].service=t

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "chart OK ($(helm version --short))"
