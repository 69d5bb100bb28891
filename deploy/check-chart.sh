#!/usr/bin/env bash
# Check the Helm chart: topic specs and remediation rules in sync with topics/ and rules/,
# `helm lint --strict`, and `helm template` with the defaults and with each deploy/helm/pipeline/ci/*-values.yaml;
# every rendered document must parse as YAML, the expected kinds must be there, no Secret is rendered,
# HOST is 0.0.0.0, Prometheus settings only reach enrich and gateway and ML settings only score and gateway
# (the same in both), remediation settings only reach arbitrate and gateway (the same in both;
# REMEDIATION_RULES_PATH also propose) and the rules ConfigMap is mounted into exactly those three, every
# topic spec becomes a KafkaTopic or an entry of the topics Job's ConfigMap, and missing required values,
# misspelt keys (values.schema.json), invalid ML models and invalid rules fail rendering with their message.
#
# Needs helm 3 on PATH (see the message below when it is not); PyYAML for the YAML checks (the project's
# .venv has it; with the `pipeline` package importable too, the rendered rules file and remediation policy
# are also loaded as the app loads them). KUBE_VERSION (default 1.31.0) is the cluster version rendered for.
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

# check_render NAME EXPECTED HELM_ARGS...   EXPECTED, space-separated:
#   Kind=count                every render has that many objects of Kind (0: absent);
#   env:NAME=value            every score and gateway container has env NAME with that value;
#   remediation:NAME=value    every arbitrate and gateway container has env NAME with that value
#                             (value <unset>: has no env NAME);
#   rules-file:PATH           the rules ConfigMap holds exactly the file PATH (relative to the repository);
#   rules-values:PATH         ... exactly remediation.rules of the values file PATH.
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
  "$python" - "$out/$name.yaml" "$expected" "$chart" <<'PY' || fail "$name: rendered manifests"
import collections, hashlib, os, pathlib, sys, tempfile, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
chart = pathlib.Path(sys.argv[3])
kinds = collections.Counter(d["kind"] for d in docs)
problems = []
ml_env = {}
remediation_env = {}
expected_rules = None
for item in sys.argv[2].split():
    if item.startswith("env:"):
        name, value = item.removeprefix("env:").split("=", 1)
        ml_env[name] = value
        continue
    if item.startswith("remediation:"):
        name, value = item.removeprefix("remediation:").split("=", 1)
        remediation_env[name] = None if value == "<unset>" else value
        continue
    if item.startswith("rules-file:"):
        expected_rules = open(item.removeprefix("rules-file:")).read()
        continue
    if item.startswith("rules-values:"):
        expected_rules = yaml.safe_load(open(item.removeprefix("rules-values:")))["remediation"]["rules"]
        continue
    kind, count = item.split("=")
    if kinds.get(kind, 0) != int(count):
        problems.append(f"expected {count} {kind}, got {kinds.get(kind, 0)}")
ml_settings = {}
REMEDIATION_POLICY = ("arbitrate", "gateway")
REMEDIATION_RULES = ("propose", "arbitrate", "gateway")
RULES_PATH = "/etc/pipeline/rules/remediation.yaml"
POLICY_ENV = {"REMEDIATION_KILL_SWITCH", "REMEDIATION_PROTECTED_NAMESPACES", "REMEDIATION_COOLDOWN_S",
              "REMEDIATION_NAMESPACE_BUDGET", "REMEDIATION_ACTION_TIMEOUT_S", "REMEDIATION_DECIDED_MEMORY",
              "CONFIDENCE_THRESHOLD"}
remediation_settings = {}
rules_users = {}
rules_volume_names = set()
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
        # Remediation: the policy only in arbitrate and gateway, the rules (path, mount, checksum) also in propose.
        name = d["metadata"]["name"]
        rem = {n: e.get("value") for n, e in env.items()
               if n.startswith("REMEDIATION_") or n == "CONFIDENCE_THRESHOLD"}
        policy = {n: v for n, v in rem.items() if n != "REMEDIATION_RULES_PATH"}
        pod = d["spec"]["template"]
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        rules_volume = next((v for v in pod["spec"].get("volumes", []) if v["name"] == "remediation-rules"), None)
        checksum = (pod["metadata"].get("annotations") or {}).get("checksum/remediation-rules")
        if component in REMEDIATION_POLICY:
            missing = sorted(POLICY_ENV - set(policy))
            if missing:
                problems.append(f"{name}: remediation settings missing: {missing}")
            remediation_settings[name] = policy
            for n, value in remediation_env.items():
                if policy.get(n) != value:
                    problems.append(f"{name}: {n} is {policy.get(n)!r}, expected {value!r}")
        elif policy:
            problems.append(f"{name}: remediation settings outside arbitrate/gateway: {sorted(policy)}")
        if component in REMEDIATION_RULES:
            rules_users[name] = checksum
            if rem.get("REMEDIATION_RULES_PATH") != RULES_PATH:
                problems.append(f"{name}: REMEDIATION_RULES_PATH is {rem.get('REMEDIATION_RULES_PATH')!r}")
            mount = mounts.get("remediation-rules", {})
            if mount.get("mountPath") != os.path.dirname(RULES_PATH) or not mount.get("readOnly"):
                problems.append(f"{name}: the rules are not mounted read-only at {os.path.dirname(RULES_PATH)}")
            items = (rules_volume or {}).get("configMap", {}).get("items", [])
            if not rules_volume or items != [{"key": "remediation.yaml", "path": os.path.basename(RULES_PATH)}]:
                problems.append(f"{name}: no remediation-rules volume with the key remediation.yaml")
            else:
                rules_volume_names.add(rules_volume["configMap"]["name"])
        else:
            if "REMEDIATION_RULES_PATH" in rem or rules_volume or "remediation-rules" in mounts or checksum:
                problems.append(f"{name}: the remediation rules reach a component that does not read them")
if len({tuple(sorted(m.items())) for m in ml_settings.values()}) > 1:
    problems.append(f"score and gateway get different ML settings: {ml_settings}")
if len({tuple(sorted(m.items())) for m in remediation_settings.values()}) > 1:
    problems.append(f"arbitrate and gateway get different remediation settings: {remediation_settings}")

# The rules ConfigMap: there exactly when a component reads it, the one they mount, checksummed on their pods.
rules_maps = [d for d in docs if d["kind"] == "ConfigMap"
              and d["metadata"]["labels"].get("app.kubernetes.io/component") == "remediation"]
if rules_users and len(rules_maps) != 1:
    problems.append(f"{len(rules_maps)} remediation rules ConfigMaps for {sorted(rules_users)}")
if not rules_users and rules_maps:
    problems.append("a remediation rules ConfigMap although no component reads it")
if len(rules_maps) == 1 and rules_users:
    rules_map = rules_maps[0]
    text = rules_map.get("data", {}).get("remediation.yaml")
    if rules_volume_names != {rules_map["metadata"]["name"]}:
        problems.append(f"rules volumes name {sorted(rules_volume_names)}, the ConfigMap is {rules_map['metadata']['name']}")
    if text is None:
        problems.append("the rules ConfigMap has no key remediation.yaml")
    else:
        digest = hashlib.sha256(text.encode()).hexdigest()
        for user, checksum in sorted(rules_users.items()):
            if checksum != digest:
                problems.append(f"{user}: checksum/remediation-rules {checksum!r} is not the rules' sha256")
        if expected_rules is not None and text != expected_rules:
            problems.append("the rules ConfigMap does not hold the expected rules file")
        try:  # Load the rules and the policy as the app does, when the app is importable.
            from pipeline.domain.arbitration import load_rules
        except ImportError:
            load_rules = None
        if load_rules is not None:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(text)
                f.flush()
                try:
                    load_rules(f.name)
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"the rendered rules do not load: {exc}")
if remediation_settings:
    try:
        from pipeline.config import Settings
        from pipeline.stages.arbitrate import policy_from_settings
    except ImportError:
        Settings = None
    if Settings is not None:
        policy_env = next(iter(remediation_settings.values()))
        saved = dict(os.environ)
        try:
            os.environ.update(policy_env)
            policy_from_settings(Settings(_env_file=None))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"the app refuses the remediation settings: {exc}")
        finally:
            os.environ.clear()
            os.environ.update(saved)

# Topics: every spec of files/topics/ as a KafkaTopic (<prefix><name>) or in the topics Job's ConfigMap.
spec_files = sorted(chart.glob("files/topics/*.yaml"))
spec_names = {yaml.safe_load(p.read_text())["name"] for p in spec_files}
prefixes = {e.get("value") for d in docs if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
            if e["name"] == "TOPIC_PREFIX"}
topics = {d["spec"]["topicName"] for d in docs if d["kind"] == "KafkaTopic"}
if topics and len(prefixes) == 1:
    prefix = prefixes.pop()
    if topics != {prefix + n for n in spec_names}:
        problems.append(f"KafkaTopics {sorted(topics)} are not the specs {sorted(spec_names)} under {prefix!r}")
topic_maps = [d for d in docs if d["kind"] == "ConfigMap"
              and d["metadata"]["labels"].get("app.kubernetes.io/component") == "topics"]
for m in topic_maps:
    if sorted(m.get("data", {})) != [p.name for p in spec_files]:
        problems.append(f"the topics ConfigMap holds {sorted(m.get('data', {}))}, not {[p.name for p in spec_files]}")
    for p in spec_files:
        if m.get("data", {}).get(p.name) != p.read_text().rstrip("\n") + "\n":
            problems.append(f"the topics ConfigMap's {p.name} differs from files/topics/{p.name}")
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

base="Deployment=7 Service=7 ServiceAccount=1 Role=1 RoleBinding=1 Pod=1"
# ConfigMaps: the topics Job's (a hook) and the remediation rules.
default_policy="remediation:REMEDIATION_KILL_SWITCH=false \
  remediation:REMEDIATION_PROTECTED_NAMESPACES=kube-system,openshift-etcd,openshift-kube-apiserver \
  remediation:REMEDIATION_COOLDOWN_S=300 remediation:REMEDIATION_NAMESPACE_BUDGET=2 \
  remediation:REMEDIATION_ACTION_TIMEOUT_S=1800 remediation:REMEDIATION_DECIDED_MEMORY=2000 \
  remediation:CONFIDENCE_THRESHOLD=0.7 remediation:REMEDIATION_APPROVAL=<unset> rules-file:rules/remediation.yaml"
check_render defaults "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0 \
  env:KSERVE_NAMESPACE=alerts env:ML_CIRCUIT_BREAKER_THRESHOLD=3 env:ML_CIRCUIT_BREAKER_TIMEOUT_S=30 \
  $default_policy" \
  --set kafka.bootstrapServers=kafka-bootstrap:9092
check_render minimal-values "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0 \
  $default_policy" \
  -f "$chart/ci/minimal-values.yaml"
check_render full-values "$base ConfigMap=1 Job=0 KafkaTopic=$topics ServiceMonitor=7 ClusterRoleBinding=1 \
  env:KSERVE_NAMESPACE=self-healing-platform env:KSERVE_ANOMALY_DETECTOR_SERVICE=anomaly-detector-predictor \
  env:KSERVE_PREDICTIVE_ANALYTICS_SERVICE=predictive-analytics-predictor $default_policy" \
  -f "$chart/ci/full-values.yaml"
check_render mtls-values "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0 \
  env:ML_SERVICE_URL=http://aiops-ml-service:8080 env:KSERVE_PREDICTIVE_ANALYTICS_URL=http://models.example:8080 \
  env:KSERVE_PREDICTIVE_ANALYTICS_MODEL=predictive-analytics-v2" \
  -f "$chart/ci/mtls-values.yaml"
check_render remediation-values "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=0 \
  remediation:REMEDIATION_KILL_SWITCH=true \
  remediation:REMEDIATION_PROTECTED_NAMESPACES=kube-system,openshift-etcd,openshift-kube-apiserver,payments \
  remediation:REMEDIATION_COOLDOWN_S=120 remediation:REMEDIATION_NAMESPACE_BUDGET=4 \
  remediation:REMEDIATION_ACTION_TIMEOUT_S=900.5 remediation:REMEDIATION_DECIDED_MEMORY=5000 \
  remediation:CONFIDENCE_THRESHOLD=0.85 \
  remediation:REMEDIATION_APPROVAL=[{\"name\":\"critical-needs-human\",\"severities\":[\"critical\"]},{\"below_confidence\":0.95,\"name\":\"risky-ai\",\"risks\":[\"medium\",\"high\"],\"sources\":[\"ai\"]}] \
  rules-values:$chart/ci/remediation-values.yaml" \
  -f "$chart/ci/remediation-values.yaml"
check_render prometheus-token-secret "$base ConfigMap=2 Job=1 ClusterRoleBinding=0" \
  -f "$chart/ci/minimal-values.yaml" \
  --set prometheus.url=https://prometheus.example:9090,prometheus.tokenSecret.name=prometheus-token
check_render approval-none-needed "$base ConfigMap=2 Job=1 remediation:REMEDIATION_APPROVAL=[] \
  remediation:REMEDIATION_PROTECTED_NAMESPACES= remediation:CONFIDENCE_THRESHOLD=0.8" \
  -f "$chart/ci/minimal-values.yaml" \
  --set-json 'remediation.approval=[]' --set-json 'remediation.protectedNamespaces=[]' \
  --set-json 'remediation.confidenceThreshold=0.8'
check_render gateway-only "Deployment=1 Service=1 ServiceAccount=1 Role=1 RoleBinding=1 Pod=1 ConfigMap=1 Job=0 \
  $default_policy" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,topicsJob.enabled=false
check_render score-only "Deployment=1 Service=1 ServiceAccount=1 Role=1 RoleBinding=1 Pod=0 ConfigMap=0 Job=0 \
  env:KSERVE_ANOMALY_DETECTOR_URL=http://anomaly-detector.example:8080" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,gateway.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,topicsJob.enabled=false \
  --set ml.kserve.models[0].name=anomaly-detector,ml.kserve.models[0].url=http://anomaly-detector.example:8080
check_render remediation-only "Deployment=2 Service=2 ServiceAccount=1 Role=1 RoleBinding=1 Pod=0 ConfigMap=1 Job=0 \
  $default_policy" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set gateway.enabled=false,topicsJob.enabled=false
check_render without-remediation "Deployment=4 Service=4 ServiceAccount=1 Role=1 RoleBinding=1 Pod=1 ConfigMap=1 Job=1" \
  -f "$chart/ci/minimal-values.yaml" \
  --set propose.enabled=false,arbitrate.enabled=false,gateway.enabled=false

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
check_fails rules-not-yaml "remediation.rules is not a YAML map" \
  -f "$chart/ci/minimal-values.yaml" --set remediation.rules=just-text
check_fails rules-without-actions "remediation.rules needs version and actions" \
  -f "$chart/ci/minimal-values.yaml" --set-string 'remediation.rules=version: 1'
check_fails misspelt-remediation-value "Additional property killswitch is not allowed" \
  -f "$chart/ci/minimal-values.yaml" --set remediation.killswitch=true
check_fails approval-without-name "remediation.approval.0: name is required" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'remediation.approval=[{"risks":["high"]}]'
check_fails approval-unknown-risk 'must be one of the following: "none", "low", "medium", "high"' \
  -f "$chart/ci/minimal-values.yaml" --set-json 'remediation.approval=[{"name":"x","risks":["extreme"]}]'
check_fails confidence-above-one "remediation.confidenceThreshold: Must be less than or equal to 1" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'remediation.confidenceThreshold=1.5'

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "chart OK ($(helm version --short))"
