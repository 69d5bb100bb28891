#!/usr/bin/env bash
# Check the Helm chart: topic specs and remediation rules in sync with topics/ and rules/,
# `helm lint --strict`, and `helm template` with the defaults and with each deploy/helm/pipeline/ci/*-values.yaml;
# every rendered document must parse as YAML, the expected kinds must be there, no Secret is rendered,
# HOST is 0.0.0.0, Prometheus settings only reach enrich and gateway and ML settings only score and gateway
# (the same in both), remediation settings only reach arbitrate and gateway (the same in both;
# REMEDIATION_RULES_PATH also propose) and the rules ConfigMap is mounted into exactly those three, every
# topic spec becomes a KafkaTopic or an entry of the topics Job's ConfigMap, and missing required values,
# misspelt keys (values.schema.json), invalid ML models and invalid rules fail rendering with their message.
# The Kubernetes watcher: only its pods mount a ServiceAccount token (unless serviceAccount.automountToken
# opts the others in), under a ServiceAccount of their own that no other component uses; the WATCH_* /
# CLUSTER_NAME settings reach only the watch container (and the app accepts them); its ClusterRole grants
# exactly get/list/watch on pods, nodes, deployments and the configured event APIs, its Role exactly
# create on leases and get/update on its Lease by name, both bound to its ServiceAccount alone; no rendered
# Role or ClusterRole has a wildcard; with watch.enabled=false none of it is rendered.
# The remediation executor and the gateway's detection: remediate (and the gateway with
# gateway.detection.enabled) mount the token of a ServiceAccount of their own, used by no other pod; the
# executor's settings (REMEDIATION_MODE and the rest) reach only remediate (REMEDIATION_MODE also the gateway,
# REMEDIATION_ACTION_TIMEOUT_S also arbitrate and the gateway, the same everywhere) and the app reads them as
# meant; remediate's ClusterRole grants exactly what pipeline/adapters/remediation.py and detection call
# (plus get/patch on remediation.operatorResources), the gateway's exactly detection's reads, each bound to
# its ServiceAccount alone; invalid modes, wildcard operator resources and shared ServiceAccounts fail.
# Then, against the real kube-apiserver (pipeline.embedded.kube; skipped with a message when its binaries
# or the pipeline package are missing, a failure with CHECK_CHART_REQUIRE_KUBE=1): a server-side dry run of
# every rendered object, the RBAC of ci/remediation-values.yaml created and SubjectAccessReviews of what
# remediate, the gateway, the watcher and the other pods can and cannot do, and remediate's start-up
# self-check and detection run under the ServiceAccounts' own tokens.
#
# Needs helm 3 on PATH or in $(go env GOPATH)/bin (see the message below when it is not); PyYAML for the YAML checks (the project's
# .venv has it; with the `pipeline` package importable too, the rendered rules file and remediation policy
# are also loaded as the app loads them). KUBE_VERSION (default 1.31.0) is the cluster version rendered for.
# CHECK_CHART_REQUIRE_HELM=1 turns "helm not found" into a failure (for CI).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart="$root/deploy/helm/pipeline"
kube_version="${KUBE_VERSION:-1.31.0}"
cd "$root"

"$root/deploy/check-topics-in-sync.sh"

# A helm built by the `go install` below lands in $(go env GOPATH)/bin, which need not be on PATH.
if ! command -v helm >/dev/null 2>&1 && command -v go >/dev/null 2>&1 && [[ -x "$(go env GOPATH)/bin/helm" ]]; then
  PATH="$PATH:$(go env GOPATH)/bin"
fi
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
rendered=()
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check_render NAME EXPECTED HELM_ARGS...   EXPECTED, space-separated:
#   Kind=count                every render has that many objects of Kind (0: absent);
#   env:NAME=value            every score and gateway container has env NAME with that value;
#   remediation:NAME=value    every arbitrate and gateway container has env NAME with that value
#                             (value <unset>: has no env NAME);
#   rules-file:PATH           the rules ConfigMap holds exactly the file PATH (relative to the repository);
#   rules-values:PATH         ... exactly remediation.rules of the values file PATH;
#   watch:NAME=value          the watch container has env NAME with that value;
#   token:COMPONENT,...       exactly these components' pods mount a ServiceAccount token (default: watch;
#                             "token:" alone: none).
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
  rendered+=("$out/$name.yaml")
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
watch_env_expected = {}
token_expected = {"watch", "remediate", "gateway"}
operator_resources = set()
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
    if item.startswith("watch:"):
        name, value = item.removeprefix("watch:").split("=", 1)
        watch_env_expected[name] = value
        continue
    if item.startswith("token:"):
        token_expected = {c for c in item.removeprefix("token:").split(",") if c}
        continue
    if item.startswith("operator:"):  # operator:GROUP=res1,res2 (remediation.operatorResources)
        group, resources = item.removeprefix("operator:").split("=", 1)
        operator_resources.update((group, r) for r in resources.split(","))
        continue
    kind, count = item.split("=")
    if kinds.get(kind, 0) != int(count):
        problems.append(f"expected {count} {kind}, got {kinds.get(kind, 0)}")
ml_settings = {}
REMEDIATION_POLICY = ("arbitrate", "gateway")
REMEDIATION_RULES = ("propose", "arbitrate", "remediate", "gateway")
RULES_PATH = "/etc/pipeline/rules/remediation.yaml"
POLICY_ENV = {"REMEDIATION_KILL_SWITCH", "REMEDIATION_PROTECTED_NAMESPACES", "REMEDIATION_COOLDOWN_S",
              "REMEDIATION_NAMESPACE_BUDGET", "REMEDIATION_ACTION_TIMEOUT_S", "REMEDIATION_DECIDED_MEMORY",
              "CONFIDENCE_THRESHOLD"}
# The executor's settings (remediate); REMEDIATION_MODE also reaches the gateway (/api/v1/status shows it),
# REMEDIATION_ACTION_TIMEOUT_S also remediate (an approval wait ends with arbitration's hold on the target).
EXECUTOR_ENV = {"REMEDIATION_MODE", "REMEDIATION_STEP_TIMEOUT_S", "REMEDIATION_CHECKPOINT_TIMEOUT_S",
                "REMEDIATION_POLL_S", "REMEDIATION_STORM_MAX_UNHEALTHY", "REMEDIATION_STORM_MIN_UNHEALTHY",
                "REMEDIATION_IDENTITY", "HELM_BINARY"}
REMEDIATION_ENV_USERS = {n: set(REMEDIATION_POLICY) for n in POLICY_ENV | {"REMEDIATION_APPROVAL"}}
REMEDIATION_ENV_USERS.update({n: {"remediate"} for n in EXECUTOR_ENV})
REMEDIATION_ENV_USERS["REMEDIATION_MODE"] = {"remediate", "gateway"}
REMEDIATION_ENV_USERS["REMEDIATION_NAMESPACES"] = {"remediate"}  # only with namespace-scoped RBAC
REMEDIATION_ENV_USERS["REMEDIATION_ACTION_TIMEOUT_S"] = {"arbitrate", "gateway", "remediate"}
remediation_values = collections.defaultdict(dict)  # env name -> {deployment: value}
executor_env = {}
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
               if n.startswith("REMEDIATION_") or n in ("CONFIDENCE_THRESHOLD", "HELM_BINARY")}
        for n, v in rem.items():
            if n == "REMEDIATION_RULES_PATH":
                continue
            if component not in REMEDIATION_ENV_USERS.get(n, ()):
                problems.append(f"{name}: {n} reaches {component}, which does not read it")
            else:
                remediation_values[n][name] = v
        for n, users in REMEDIATION_ENV_USERS.items():
            if component in users and n not in rem and n not in ("REMEDIATION_APPROVAL", "REMEDIATION_NAMESPACES"):
                problems.append(f"{name}: {n} missing")
            if component in users:
                for n2, value in remediation_env.items():
                    if n2 == n and rem.get(n) != value:
                        problems.append(f"{name}: {n} is {rem.get(n)!r}, expected {value!r}")
        if component == "remediate":
            executor_env = {n: v for n, v in rem.items()}
            if env.get("REMEDIATION_IDENTITY", {}).get("valueFrom") != {"fieldRef": {"fieldPath": "metadata.name"}}:
                problems.append(f"{name}: REMEDIATION_IDENTITY is not the pod name (downward API)")
            for n in ("KUBECONFIG", "KUBE_CONTEXT"):
                if n in env:
                    problems.append(f"{name}: {n} is set (remediate must use its in-cluster ServiceAccount)")
        policy = {n: v for n, v in rem.items() if n in POLICY_ENV | {"REMEDIATION_APPROVAL"}}
        pod = d["spec"]["template"]
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        rules_volume = next((v for v in pod["spec"].get("volumes", []) if v["name"] == "remediation-rules"), None)
        checksum = (pod["metadata"].get("annotations") or {}).get("checksum/remediation-rules")
        if component in REMEDIATION_POLICY:
            remediation_settings[name] = policy
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
for n, by_deployment in sorted(remediation_values.items()):
    if len(set(by_deployment.values())) > 1:
        problems.append(f"{n} differs between components: {by_deployment}")

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

if executor_env:  # the app reads the executor's settings as the chart means them
    try:
        from pipeline.config import Settings
    except ImportError:
        Settings = None
    if Settings is not None:
        saved = dict(os.environ)
        try:
            os.environ.update({n: v for n, v in executor_env.items() if v is not None})
            os.environ["REMEDIATION_IDENTITY"] = "pipeline-remediate-0"
            st = Settings(_env_file=None)
            got = (st.remediation_mode, st.remediation_step_timeout_s, st.remediation_checkpoint_timeout_s,
                   st.remediation_poll_s, st.remediation_storm_max_unhealthy, st.remediation_storm_min_unhealthy,
                   st.remediation_identity, st.helm_binary, st.remediation_action_timeout_s)
            want = (executor_env["REMEDIATION_MODE"], float(executor_env["REMEDIATION_STEP_TIMEOUT_S"]),
                    float(executor_env["REMEDIATION_CHECKPOINT_TIMEOUT_S"]), float(executor_env["REMEDIATION_POLL_S"]),
                    float(executor_env["REMEDIATION_STORM_MAX_UNHEALTHY"]),
                    int(executor_env["REMEDIATION_STORM_MIN_UNHEALTHY"]), "pipeline-remediate-0",
                    executor_env["HELM_BINARY"], float(executor_env["REMEDIATION_ACTION_TIMEOUT_S"]))
            if got != want:
                problems.append(f"the app reads the executor settings as {got}, expected {want}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"the app refuses the executor settings: {exc}")
        finally:
            os.environ.clear()
            os.environ.update(saved)

# (group, resource, verb, resourceNames) of every rule of a Role or ClusterRole.
def grants(role):
    out = set()
    for rule in role.get("rules") or []:
        if rule.get("nonResourceURLs"):
            out.add(("nonResourceURLs", str(rule["nonResourceURLs"]), "", ()))
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for v in rule.get("verbs", []):
                    out.add((g, r, v, tuple(sorted(rule.get("resourceNames") or ()))))
    return out

# Namespace-scoped RBAC (pipeline.rbacScope): watch.namespaces of exact names (WATCH_NAMESPACES of the watch
# container), less those WATCH_EXCLUDE_NAMESPACES matches, as the app's WatchFilter.exact_namespaces.
import fnmatch, re
def rbac_scope():
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "watch":
            env = {e["name"]: e.get("value", "") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            include = [n for n in env.get("WATCH_NAMESPACES", "").split(",") if n]
            exclude = [n for n in env.get("WATCH_EXCLUDE_NAMESPACES", "").split(",") if n]
            if include and all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in include):
                return [n for n in dict.fromkeys(include) if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    return None
scope = rbac_scope()
argocd_namespaces = []
for d in docs:
    if d["kind"] == "Deployment":
        for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []):
            if e["name"] == "ARGOCD_NAMESPACES":
                argocd_namespaces = [n for n in e["value"].split(",") if n]
if scope is None and argocd_namespaces:
    problems.append("ARGOCD_NAMESPACES is set although the RBAC is cluster-wide")

def check_bound(component, objects, want, account):
    """objects: the component's Roles, ClusterRoles and their bindings; want: {(kind, namespace or None): grants}.
    Exactly those roles, each with exactly its grants, each bound by one binding of the same name to `account`."""
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    def where(d):
        return (d["kind"].removesuffix("Binding"), d["metadata"].get("namespace"))
    roles = collections.defaultdict(list)
    bindings = collections.defaultdict(list)
    for d in objects:
        (bindings if d["kind"].endswith("Binding") else roles)[where(d)].append(d)
    if set(roles) != set(want) or set(bindings) != set(want):
        problems.append(f"{component}: roles at {sorted(roles, key=str)} and bindings at {sorted(bindings, key=str)}, "
                        f"expected {sorted(want, key=str)}")
    for at, grants_wanted in want.items():
        if len(roles.get(at, [])) != 1 or len(bindings.get(at, [])) != 1:
            problems.append(f"{component}: {len(roles.get(at, []))} {at[0]}s and {len(bindings.get(at, []))} bindings at {at}")
            continue
        role, b = roles[at][0], bindings[at][0]
        got = grants(role)
        if got != grants_wanted:
            problems.append(f"{component} {at} grants {sorted(got - grants_wanted)} too many, {sorted(grants_wanted - got)} missing")
        if b["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": at[0], "name": role["metadata"]["name"]}:
            problems.append(f"{component} {at[0]}Binding refers to {b['roleRef']}")
        if b.get("subjects") != subject:
            problems.append(f"{component} {at[0]}Binding binds {b.get('subjects')}, expected {subject}")
        if at[0] == "ClusterRole" and scope is not None:
            namespaced = {(g, r) for g, r, _, _ in got} - {("", "nodes"), ("authorization.k8s.io", "selfsubjectaccessreviews")}
            if namespaced:
                problems.append(f"{component}: namespace-scoped RBAC, yet its ClusterRole grants {sorted(namespaced)}")

# The Kubernetes watcher: token, ServiceAccount, environment and RBAC.
NAMESPACE = "alerts"  # the --namespace of every render
WATCH_ENV = {"WATCH_NAMESPACES", "WATCH_EXCLUDE_NAMESPACES", "WATCH_EVENT_APIS", "WATCH_PROBE_FAILURE_THRESHOLD",
             "WATCH_TIMEOUT_S", "CLUSTER_NAME", "WATCH_LEASE_NAME", "WATCH_LEASE_NAMESPACE", "WATCH_LEASE_DURATION_S",
             "WATCH_LEASE_RENEW_S", "WATCH_LEASE_RETRY_S", "WATCH_IDENTITY"}
KUBE_ENV = ("WATCH_", "CLUSTER_NAME", "KUBECONFIG", "KUBE_CONTEXT", "KUBE_WATCH")
READ = {"get", "list", "watch"}
service_accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
mounting, watch_deployment, other_accounts = set(), None, set()
components = set()
accounts, pods = {}, {}  # component -> ServiceAccount name, pod spec
for d in docs:
    if d["kind"] != "Deployment":
        continue
    component = d["metadata"]["labels"].get("app.kubernetes.io/component")
    components.add(component)
    pod = d["spec"]["template"]["spec"]
    account = pod.get("serviceAccountName", "default")
    accounts[component], pods[component] = account, pod
    # The kubelet mounts the token unless the pod, else its ServiceAccount, says false (an account the chart
    # does not render counts as the Kubernetes default, true).
    automount = pod.get("automountServiceAccountToken",
                        service_accounts.get(account, {}).get("automountServiceAccountToken", True))
    if automount:
        mounting.add(component)
    if any("serviceAccountToken" in source for v in pod.get("volumes", [])
           for source in v.get("projected", {}).get("sources", [])) and component not in ("enrich", "gateway"):
        problems.append(f"{d['metadata']['name']}: a projected ServiceAccount token outside enrich/gateway")
    if component == "watch":
        watch_deployment = d
    else:
        other_accounts.add(account)
    for c in pod["containers"]:
        kube = sorted(e["name"] for e in c.get("env", []) if e["name"].startswith(KUBE_ENV))
        if component != "watch" and kube:
            problems.append(f"{d['metadata']['name']}: watcher settings outside watch: {kube}")
if mounting != token_expected & components:
    problems.append(f"ServiceAccount token mounted into {sorted(mounting)}, expected {sorted(token_expected & components)}")

watch_objects = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                                  "RoleBinding")
                 and d["metadata"]["labels"].get("app.kubernetes.io/component") == "watch"]
for d in docs:  # no wildcard in any rule the chart renders
    if d["kind"] in ("Role", "ClusterRole"):
        for rule in d.get("rules") or []:
            if any("*" in str(x) for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")
                   for x in rule.get(key, [])):
                problems.append(f"{d['kind']} {d['metadata']['name']}: wildcard in {rule}")
if watch_deployment is None:
    if watch_objects:
        problems.append(f"watch disabled, yet {[(d['kind'], d['metadata']['name']) for d in watch_objects]}")
else:
    name = watch_deployment["metadata"]["name"]
    pod = watch_deployment["spec"]["template"]["spec"]
    account = pod.get("serviceAccountName", "default")
    if account == "default" or account in other_accounts:
        problems.append(f"{name}: ServiceAccount {account!r} is shared with other pods")
    if pod.get("automountServiceAccountToken") is not True:
        problems.append(f"{name}: the pod does not opt in to its ServiceAccount token")
    if account in service_accounts and service_accounts[account].get("automountServiceAccountToken") is not False:
        problems.append(f"ServiceAccount {account}: automountServiceAccountToken is not false")
    if watch_deployment["spec"]["template"]["spec"]["containers"][0]["args"] != ["stage", "watch"]:
        problems.append(f"{name}: args are not [stage, watch]")
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    values = {n: e.get("value") for n, e in env.items()}
    missing = sorted(WATCH_ENV - set(env))
    if missing:
        problems.append(f"{name}: watcher settings missing: {missing}")
    for n in ("KUBECONFIG", "KUBE_CONTEXT"):
        if n in env:
            problems.append(f"{name}: {n} is set (the watcher must use its in-cluster ServiceAccount)")
    if env.get("WATCH_IDENTITY", {}).get("valueFrom") != {"fieldRef": {"fieldPath": "metadata.name"}}:
        problems.append(f"{name}: WATCH_IDENTITY is not the pod name (downward API)")
    if env.get("NAMESPACE", {}).get("valueFrom") != {"fieldRef": {"fieldPath": "metadata.namespace"}}:
        problems.append(f"{name}: NAMESPACE is not the pod's namespace (downward API)")
    if values.get("WATCH_LEASE_NAMESPACE") != NAMESPACE:
        problems.append(f"{name}: WATCH_LEASE_NAMESPACE is {values.get('WATCH_LEASE_NAMESPACE')!r}, not the release namespace")
    for n, value in watch_env_expected.items():
        if values.get(n) != value:
            problems.append(f"{name}: {n} is {values.get(n)!r}, expected {value!r}")
    try:  # the app reads these settings as the chart means them
        from pipeline.config import Settings
    except ImportError:
        Settings = None
    if Settings is not None:
        saved = dict(os.environ)
        try:
            os.environ.update({n: v for n, v in values.items() if v is not None})
            os.environ.update(WATCH_IDENTITY="pipeline-watch-0", NAMESPACE=NAMESPACE)
            st = Settings(_env_file=None)
            split = lambda v: [x for x in v.split(",") if x]  # noqa: E731
            got = (st.watch_namespaces, st.watch_exclude_namespaces, st.watch_event_apis, st.watch_lease_name,
                   st.watch_lease_namespace, st.watch_identity, st.cluster_name)
            want = (split(values.get("WATCH_NAMESPACES", "")), split(values.get("WATCH_EXCLUDE_NAMESPACES", "")),
                    split(values.get("WATCH_EVENT_APIS", "")), values.get("WATCH_LEASE_NAME"), NAMESPACE,
                    "pipeline-watch-0", values.get("CLUSTER_NAME"))
            if got != want:
                problems.append(f"the app reads the watcher settings as {got}, expected {want}")
            if not st.watch_lease_renew_s < st.watch_lease_duration_s:
                problems.append("the Lease is renewed less often than it lasts")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"the app refuses the watcher settings: {exc}")
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # RBAC: exactly what the watcher calls, bound to its ServiceAccount only.
    apis = [a for a in values.get("WATCH_EVENT_APIS", "").split(",") if a]
    readable = [("", "pods"), ("apps", "deployments")]
    readable += [("", "events")] * ("core" in apis) + [("events.k8s.io", "events")] * ("events.k8s.io" in apis)
    nodes = {("", "nodes", v, ()) for v in READ}
    lease = values.get("WATCH_LEASE_NAME")
    want_role = {("coordination.k8s.io", "leases", "create", ()), ("coordination.k8s.io", "leases", "get", (lease,)),
                 ("coordination.k8s.io", "leases", "update", (lease,))}
    read_namespaced = {(g, r, v, ()) for g, r in readable for v in READ}
    rbac_kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    if any(d["kind"] in rbac_kinds for d in watch_objects):  # rbac.create
        want = {("ClusterRole", None): nodes | (set() if scope is not None else read_namespaced), ("Role", None): want_role}
        want.update({("Role", ns): read_namespaced for ns in scope or ()})
        check_bound("watch", [d for d in watch_objects if d["kind"] in rbac_kinds], want, account)
        if {v for d in watch_objects if d["kind"] == "ClusterRole" for _, _, v, _ in grants(d)} - READ:
            problems.append("watch ClusterRole has write verbs")
    for d in docs:  # the watcher's account in no other binding, and no other account in the watcher's
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and d not in watch_objects:
            if any(s.get("name") == account for s in d.get("subjects", [])):
                problems.append(f"{d['kind']} {d['metadata']['name']} also binds the watcher's ServiceAccount")

# remediate and the gateway's detection: their own ServiceAccount and token, a ClusterRole of exactly what
# their code calls (pipeline/adapters/remediation.py, pipeline/adapters/detection.py), bound to them alone.
DETECTION = {("", "pods", "get"), ("", "replicationcontrollers", "get"), ("apps", "deployments", "get"),
             ("apps", "statefulsets", "get"), ("apps", "daemonsets", "get"), ("apps", "replicasets", "get"),
             ("batch", "jobs", "get"), ("batch", "cronjobs", "get"), ("argoproj.io", "applications", "list")}
STEPS = {("", "pods", "get"), ("", "pods", "list"), ("", "pods", "delete"), ("apps", "replicasets", "list"),
         ("", "nodes", "get"), ("", "nodes", "patch"), ("argoproj.io", "applications", "get"),
         ("argoproj.io", "applications", "patch"), ("authorization.k8s.io", "selfsubjectaccessreviews", "create")}
STEPS |= {("apps", r, v) for r in ("deployments", "statefulsets", "daemonsets") for v in ("get", "patch")}
try:  # every permission the remediator's start-up self-check asks for must be in STEPS
    from pipeline.adapters.remediation import PERMISSIONS
except ImportError:
    PERMISSIONS = ()
for verb, group, resource in PERMISSIONS:
    if (group, resource, verb) not in STEPS:
        problems.append(f"the remediator's self-check needs {verb} {resource}.{group}, which the check does not expect")
want_roles = {
    "remediate": {(g, r, v, ()) for g, r, v in STEPS | DETECTION | {(g, r, v) for g, r in operator_resources
                                                                    for v in ("get", "patch")}},
    "gateway": {(g, r, v, ()) for g, r, v in DETECTION},
}
shared_accounts = {a for c, a in accounts.items() if c not in ("watch", "remediate", "gateway")}
shared_accounts |= {n for n, d in service_accounts.items() if "app.kubernetes.io/component" not in d["metadata"]["labels"]}
for component, want in want_roles.items():
    rbac_objects = [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
                    and d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    pod = pods.get(component)
    own = pod is not None and pod.get("automountServiceAccountToken") is True
    if component == "gateway" and pod is not None and not own and accounts[component] not in shared_accounts | {"default"}:
        problems.append(f"gateway: ServiceAccount {accounts[component]!r} without its token")
    if not own:
        if rbac_objects:
            problems.append(f"{component}: no token of its own, yet {[(d['kind'], d['metadata']['name']) for d in rbac_objects]}")
        if component == "remediate" and pod is not None:
            problems.append("remediate does not mount its ServiceAccount token")
        continue
    account = accounts[component]
    if account == "default" or account in shared_accounts or any(
            a == account for c, a in accounts.items() if c != component):
        problems.append(f"{component}: ServiceAccount {account!r} is shared with other pods")
    if account in service_accounts and service_accounts[account].get("automountServiceAccountToken") is not False:
        problems.append(f"ServiceAccount {account}: automountServiceAccountToken is not false")
    if rbac_objects:  # rbac.create
        if scope is None:
            expected = {("ClusterRole", None): want}
        else:  # cluster-scoped rights in the ClusterRole (remediate only), the rest in Roles per namespace
            cluster = {g for g in want if (g[0], g[1]) in {("", "nodes"), ("authorization.k8s.io", "selfsubjectaccessreviews")}}
            applications = {g for g in want if g[1] == "applications"}
            expected = {("ClusterRole", None): cluster} if cluster else {}
            for ns in dict.fromkeys([*scope, *argocd_namespaces]):
                expected[("Role", ns)] = ((want - cluster - applications) if ns in scope else set()) | (
                    applications if ns in argocd_namespaces else set())
        check_bound(component, rbac_objects, expected, account)
    for d in docs:  # its account in no other binding (the gateway's projected token: cluster-monitoring-view)
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and d not in rbac_objects:
            if component == "gateway" and d["roleRef"]["name"] == "cluster-monitoring-view":
                continue
            if any(s.get("name") == account for s in d.get("subjects", [])):
                problems.append(f"{d['kind']} {d['metadata']['name']} also binds {component}'s ServiceAccount")

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

# Ten components: the watcher, remediate and the gateway (detection) with ServiceAccounts of their own,
# the watcher with a ClusterRole, Role and bindings, remediate and the gateway with a ClusterRole and binding.
base="Deployment=10 Service=10 ServiceAccount=4 Role=2 RoleBinding=2 ClusterRole=3 Pod=1"
all_components="token:ingest,correlate,enrich,score,propose,arbitrate,remediate,snapshot,gateway,watch"
default_watch="watch:WATCH_NAMESPACES= watch:WATCH_EXCLUDE_NAMESPACES= watch:WATCH_EVENT_APIS=core,events.k8s.io \
  watch:WATCH_PROBE_FAILURE_THRESHOLD=3 watch:WATCH_TIMEOUT_S=300 watch:CLUSTER_NAME= \
  watch:WATCH_LEASE_NAME=pipeline-watch watch:WATCH_LEASE_DURATION_S=15 watch:WATCH_LEASE_RENEW_S=5 \
  watch:WATCH_LEASE_RETRY_S=2"
# Without the watcher, remediate and detection: nothing cluster-scoped, one ServiceAccount, no pod with a token.
no_kube="ServiceAccount=1 Role=1 RoleBinding=1 ClusterRole=0 ClusterRoleBinding=0 token:"
no_kube_sets="watch.enabled=false,remediate.enabled=false,gateway.detection.enabled=false"
# ConfigMaps: the topics Job's (a hook) and the remediation rules.
default_policy="remediation:REMEDIATION_KILL_SWITCH=false \
  remediation:REMEDIATION_PROTECTED_NAMESPACES=kube-system,openshift-etcd,openshift-kube-apiserver \
  remediation:REMEDIATION_COOLDOWN_S=300 remediation:REMEDIATION_NAMESPACE_BUDGET=2 \
  remediation:REMEDIATION_ACTION_TIMEOUT_S=1800 remediation:REMEDIATION_DECIDED_MEMORY=2000 \
  remediation:CONFIDENCE_THRESHOLD=0.7 remediation:REMEDIATION_APPROVAL=<unset> rules-file:rules/remediation.yaml"
default_executor="remediation:REMEDIATION_MODE=auto remediation:REMEDIATION_STEP_TIMEOUT_S=120 \
  remediation:REMEDIATION_CHECKPOINT_TIMEOUT_S=180 remediation:REMEDIATION_POLL_S=1 \
  remediation:REMEDIATION_STORM_MAX_UNHEALTHY=0.5 remediation:REMEDIATION_STORM_MIN_UNHEALTHY=3 remediation:HELM_BINARY="
check_render defaults "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=3 \
  env:KSERVE_NAMESPACE=alerts env:ML_CIRCUIT_BREAKER_THRESHOLD=3 env:ML_CIRCUIT_BREAKER_TIMEOUT_S=30 \
  $default_policy $default_executor $default_watch" \
  --set kafka.bootstrapServers=kafka-bootstrap:9092
check_render minimal-values "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=3 \
  $default_policy $default_executor $default_watch" \
  -f "$chart/ci/minimal-values.yaml"
check_render full-values "$base ConfigMap=1 Job=0 KafkaTopic=$topics ServiceMonitor=10 ClusterRoleBinding=4 \
  env:KSERVE_NAMESPACE=self-healing-platform env:KSERVE_ANOMALY_DETECTOR_SERVICE=anomaly-detector-predictor \
  env:KSERVE_PREDICTIVE_ANALYTICS_SERVICE=predictive-analytics-predictor $default_policy $default_executor \
  watch:WATCH_NAMESPACES=shop-*,payments watch:WATCH_EXCLUDE_NAMESPACES=*-test watch:WATCH_EVENT_APIS=events.k8s.io \
  watch:WATCH_PROBE_FAILURE_THRESHOLD=5 watch:WATCH_TIMEOUT_S=600 watch:CLUSTER_NAME=prod-eu-1 \
  watch:WATCH_LEASE_NAME=prod-pipeline-watch watch:WATCH_LEASE_DURATION_S=20 watch:WATCH_LEASE_RENEW_S=6.5 \
  watch:WATCH_LEASE_RETRY_S=3" \
  -f "$chart/ci/full-values.yaml"
check_render mtls-values "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=3 \
  env:ML_SERVICE_URL=http://aiops-ml-service:8080 env:KSERVE_PREDICTIVE_ANALYTICS_URL=http://models.example:8080 \
  env:KSERVE_PREDICTIVE_ANALYTICS_MODEL=predictive-analytics-v2 $all_components $default_watch" \
  -f "$chart/ci/mtls-values.yaml"
check_render remediation-values "$base ConfigMap=2 Job=1 KafkaTopic=0 ServiceMonitor=0 ClusterRoleBinding=3 \
  remediation:REMEDIATION_KILL_SWITCH=true \
  remediation:REMEDIATION_PROTECTED_NAMESPACES=kube-system,openshift-etcd,openshift-kube-apiserver,payments \
  remediation:REMEDIATION_COOLDOWN_S=120 remediation:REMEDIATION_NAMESPACE_BUDGET=4 \
  remediation:REMEDIATION_ACTION_TIMEOUT_S=900.5 remediation:REMEDIATION_DECIDED_MEMORY=5000 \
  remediation:CONFIDENCE_THRESHOLD=0.85 \
  remediation:REMEDIATION_APPROVAL=[{\"name\":\"critical-needs-human\",\"severities\":[\"critical\"]},{\"below_confidence\":0.95,\"name\":\"risky-ai\",\"risks\":[\"medium\",\"high\"],\"sources\":[\"ai\"]}] \
  remediation:REMEDIATION_MODE=dry-run remediation:REMEDIATION_STEP_TIMEOUT_S=60 \
  remediation:REMEDIATION_CHECKPOINT_TIMEOUT_S=300.5 remediation:REMEDIATION_POLL_S=2 \
  remediation:REMEDIATION_STORM_MAX_UNHEALTHY=0.3 remediation:REMEDIATION_STORM_MIN_UNHEALTHY=5 \
  operator:cache.example.com=memcacheds operator:postgres-operator.crunchydata.com=postgresclusters,pgupgrades \
  rules-values:$chart/ci/remediation-values.yaml" \
  -f "$chart/ci/remediation-values.yaml"
check_render prometheus-token-secret "$base ConfigMap=2 Job=1 ClusterRoleBinding=3" \
  -f "$chart/ci/minimal-values.yaml" \
  --set prometheus.url=https://prometheus.example:9090,prometheus.tokenSecret.name=prometheus-token
check_render approval-none-needed "$base ConfigMap=2 Job=1 remediation:REMEDIATION_APPROVAL=[] \
  remediation:REMEDIATION_PROTECTED_NAMESPACES= remediation:CONFIDENCE_THRESHOLD=0.8" \
  -f "$chart/ci/minimal-values.yaml" \
  --set-json 'remediation.approval=[]' --set-json 'remediation.protectedNamespaces=[]' \
  --set-json 'remediation.confidenceThreshold=0.8'
# The gateway alone, with detection: its own ServiceAccount, token and read-only ClusterRole.
check_render gateway-only "Deployment=1 Service=1 ServiceAccount=2 Role=1 RoleBinding=1 ClusterRole=1 \
  ClusterRoleBinding=1 token:gateway Pod=1 ConfigMap=1 Job=0 $default_policy remediation:REMEDIATION_MODE=auto" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,watch.enabled=false,remediate.enabled=false \
  --set topicsJob.enabled=false,snapshot.enabled=false
check_render gateway-without-detection "Deployment=1 Service=1 $no_kube Pod=1 ConfigMap=1 Job=0 \
  $default_policy" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,topicsJob.enabled=false,snapshot.enabled=false --set "$no_kube_sets"
check_render score-only "Deployment=1 Service=1 $no_kube Pod=0 ConfigMap=0 Job=0 \
  env:KSERVE_ANOMALY_DETECTOR_URL=http://anomaly-detector.example:8080" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,gateway.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,topicsJob.enabled=false,snapshot.enabled=false --set "$no_kube_sets" \
  --set ml.kserve.models[0].name=anomaly-detector,ml.kserve.models[0].url=http://anomaly-detector.example:8080
check_render score-kserve-v2 "Deployment=1 Service=1 $no_kube Pod=0 ConfigMap=0 Job=0 \
  env:KSERVE_PROTOCOL=v1 env:KSERVE_ANOMALY_DETECTOR_PROTOCOL=v2" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,gateway.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,topicsJob.enabled=false,snapshot.enabled=false --set "$no_kube_sets" \
  --set ml.kserve.models[0].name=anomaly-detector,ml.kserve.models[0].service=anomaly-detector-predictor \
  --set ml.kserve.models[0].protocol=v2
check_render remediation-only "Deployment=3 Service=3 ServiceAccount=2 Role=1 RoleBinding=1 ClusterRole=1 \
  ClusterRoleBinding=1 token:remediate Pod=0 ConfigMap=1 Job=0 $default_policy $default_executor" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set gateway.enabled=false,watch.enabled=false,topicsJob.enabled=false,snapshot.enabled=false
check_render without-remediation "Deployment=5 Service=5 ServiceAccount=2 Role=2 RoleBinding=2 ClusterRole=1 \
  ClusterRoleBinding=1 Pod=1 ConfigMap=1 Job=1 token:watch" \
  -f "$chart/ci/minimal-values.yaml" \
  --set propose.enabled=false,arbitrate.enabled=false,gateway.enabled=false,remediate.enabled=false,snapshot.enabled=false
check_render remediate-disabled "Deployment=9 Service=9 ServiceAccount=3 Role=2 RoleBinding=2 ClusterRole=2 \
  ClusterRoleBinding=2 Pod=1 ConfigMap=2 Job=1 token:watch,gateway $default_policy" \
  -f "$chart/ci/minimal-values.yaml" --set remediate.enabled=false
check_render detection-disabled "Deployment=10 Service=10 ServiceAccount=3 Role=2 RoleBinding=2 ClusterRole=2 \
  ClusterRoleBinding=2 Pod=1 ConfigMap=2 Job=1 token:watch,remediate $default_policy $default_executor" \
  -f "$chart/ci/minimal-values.yaml" --set gateway.detection.enabled=false
check_render remediate-approve-helm "$base ConfigMap=2 Job=1 ClusterRoleBinding=3 \
  remediation:REMEDIATION_MODE=approve remediation:HELM_BINARY=/usr/local/bin/helm \
  operator:cache.example.com=memcacheds" \
  -f "$chart/ci/minimal-values.yaml" --set remediation.mode=approve,remediation.helmBinary=/usr/local/bin/helm \
  --set-json 'remediation.operatorResources=[{"apiGroup":"cache.example.com","resources":["memcacheds"]}]'
check_render watch-disabled "Deployment=9 Service=9 ServiceAccount=3 Role=1 RoleBinding=1 ClusterRole=2 \
  ClusterRoleBinding=2 token:remediate,gateway Pod=1 ConfigMap=2 Job=1 ServiceMonitor=9" \
  -f "$chart/ci/minimal-values.yaml" --set watch.enabled=false,serviceMonitor.enabled=true
check_render prometheus-rule "Deployment=10 Service=10 ServiceAccount=4 Role=2 RoleBinding=2 ClusterRole=3 \
  ClusterRoleBinding=3 token:remediate,gateway,watch Pod=1 ConfigMap=2 Job=1 PrometheusRule=1" \
  -f "$chart/ci/minimal-values.yaml" --set prometheusRule.enabled=true
check_render watch-only "Deployment=1 Service=1 ServiceAccount=2 Role=2 RoleBinding=2 ClusterRole=1 \
  ClusterRoleBinding=1 Pod=0 ConfigMap=0 Job=0 ServiceMonitor=1 token:watch $default_watch" \
  -f "$chart/ci/minimal-values.yaml" \
  --set ingest.enabled=false,correlate.enabled=false,enrich.enabled=false,score.enabled=false \
  --set propose.enabled=false,arbitrate.enabled=false,gateway.enabled=false,topicsJob.enabled=false \
  --set remediate.enabled=false,snapshot.enabled=false,serviceMonitor.enabled=true
check_render watch-no-events "$base ConfigMap=2 Job=1 ClusterRoleBinding=3 watch:WATCH_EVENT_APIS=" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'watch.eventApis=[]'
# An exact namespace list: namespace-scoped RBAC. The watcher's, remediate's and the gateway's rights on namespaced
# kinds in a Role in payments (the watcher's Lease Role besides); ClusterRoles only for nodes (watch, remediate)
# and the self-check's selfsubjectaccessreviews (remediate); none for the gateway.
check_render watch-core-events "Deployment=10 Service=10 ServiceAccount=4 Role=5 RoleBinding=5 ClusterRole=2 \
  ClusterRoleBinding=2 Pod=1 ConfigMap=2 Job=1 watch:WATCH_EVENT_APIS=core \
  watch:WATCH_NAMESPACES=payments watch:WATCH_LEASE_NAME=payments-watch" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'watch.eventApis=["core"]' \
  --set 'watch.namespaces={payments}' --set watch.lease.name=payments-watch
# Namespace-scoped with ArgoCD's namespace, an excluded namespace, operators' resources and the dashboard: Roles in
# shop and payments (not staging), Application rights in argocd, the default Lease <fullname>-watch.
check_render namespace-scoped "Deployment=10 Service=10 ServiceAccount=4 Role=10 RoleBinding=10 ClusterRole=2 \
  ClusterRoleBinding=2 Pod=1 ConfigMap=3 Job=1 watch:WATCH_NAMESPACES=shop,payments,staging \
  watch:WATCH_EXCLUDE_NAMESPACES=stag* watch:WATCH_LEASE_NAME=pipeline-watch \
  operator:cache.example.com=memcacheds" \
  -f "$chart/ci/minimal-values.yaml" --set 'watch.namespaces={shop,payments,staging}' \
  --set 'watch.excludeNamespaces={stag*}' --set 'rbac.argocdNamespaces={argocd}' \
  --set grafanaDashboard.enabled=true \
  --set-json 'remediation.operatorResources=[{"apiGroup":"cache.example.com","resources":["memcacheds"]}]'
# rbac.create=false: the watcher, remediate and the gateway still have their own ServiceAccounts and tokens;
# a cluster admin grants their rights.
check_render without-rbac "Deployment=10 Service=10 ServiceAccount=4 Role=0 RoleBinding=0 ClusterRole=0 \
  ClusterRoleBinding=0 $default_watch" \
  -f "$chart/ci/minimal-values.yaml" --set rbac.create=false
# ServiceAccounts made by a cluster admin: those of the watcher, remediate and the gateway are named, not created.
check_render existing-service-accounts "Deployment=10 ServiceAccount=0 Role=2 RoleBinding=2 ClusterRole=3 \
  ClusterRoleBinding=3 $default_watch" \
  -f "$chart/ci/minimal-values.yaml" \
  --set serviceAccount.create=false,serviceAccount.name=pipeline-stages,watch.serviceAccount.name=pipeline-watcher \
  --set remediate.serviceAccount.name=pipeline-remediator,gateway.serviceAccount.name=pipeline-detector

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
check_fails kserve-protocol-v3 "ml.kserve.protocol" \
  -f "$chart/ci/minimal-values.yaml" --set ml.kserve.protocol=v3
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
check_fails watch-without-service-account "watch.serviceAccount.name is required when serviceAccount.create is false" \
  -f "$chart/ci/minimal-values.yaml" --set serviceAccount.create=false
check_fails watch-shared-service-account "watch.serviceAccount.name must differ" \
  -f "$chart/ci/minimal-values.yaml" --set watch.serviceAccount.name=pipeline
check_fails watch-lease-renewed-too-late "watch.lease.renewSeconds (15) must be less than watch.lease.durationSeconds (15)" \
  -f "$chart/ci/minimal-values.yaml" --set watch.lease.renewSeconds=15
check_fails watch-unknown-event-api 'must be one of the following: "core", "events.k8s.io"' \
  -f "$chart/ci/minimal-values.yaml" --set-json 'watch.eventApis=["core","events"]'
check_fails misspelt-watch-value "Additional property eventAPIs is not allowed" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'watch.eventAPIs=["core"]'
check_fails watch-namespaces-with-comma "watch.namespaces.0: Does not match pattern" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'watch.namespaces=["a,b"]'

check_fails remediation-unknown-mode 'remediation.mode must be one of the following: "off", "dry-run", "approve", "auto"' \
  -f "$chart/ci/minimal-values.yaml" --set remediation.mode=yolo
check_fails remediation-storm-share-above-one "remediation.stormMaxUnhealthy: Must be less than or equal to 1" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'remediation.stormMaxUnhealthy=1.5'
check_fails operator-resources-wildcard "remediation.operatorResources.0.apiGroup: Does not match pattern" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'remediation.operatorResources=[{"apiGroup":"*","resources":["*"]}]'
check_fails operator-resources-without-resources "resources is required" \
  -f "$chart/ci/minimal-values.yaml" --set-json 'remediation.operatorResources=[{"apiGroup":"cache.example.com"}]'
check_fails misspelt-detection-value "Additional property enable is not allowed" \
  -f "$chart/ci/minimal-values.yaml" --set gateway.detection.enable=false
check_fails remediate-without-service-account "remediate.serviceAccount.name is required when serviceAccount.create is false" \
  -f "$chart/ci/minimal-values.yaml" --set serviceAccount.create=false,watch.serviceAccount.name=w \
  --set gateway.serviceAccount.name=g
check_fails remediate-shared-service-account "remediate.serviceAccount.name must differ from the other components' ServiceAccount" \
  -f "$chart/ci/minimal-values.yaml" --set remediate.serviceAccount.name=pipeline
check_fails remediate-watcher-service-account "remediate.serviceAccount.name must differ from the watcher's ServiceAccount" \
  -f "$chart/ci/minimal-values.yaml" --set remediate.serviceAccount.name=pipeline-watch
check_fails remediate-gateway-service-account "remediate.serviceAccount.name and gateway.serviceAccount.name must differ" \
  -f "$chart/ci/minimal-values.yaml" --set remediate.serviceAccount.name=x,gateway.serviceAccount.name=x

# Against the real kube-apiserver (pipeline.embedded.kube: v1.31.3 on etcd, RBAC on; the binaries of
# scripts/build-kube-apiserver.sh): a server-side dry run (dryRun=All, strict field validation) of every
# object of every render above; the RBAC of the remediation-values render created for real and
# SubjectAccessReviews of what each ServiceAccount can and cannot do; and the app's own code under the
# ServiceAccounts' tokens (remediate's start-up self-check, detection of a pod's Deployment).
check_kube() {
  echo "== kube-apiserver"
  if [[ -z "$python" ]] || ! "$python" -c 'from pipeline.embedded.kube import kube_apiserver_binary, etcd_binary, kube_cache_dir
kube_apiserver_binary(kube_cache_dir()); etcd_binary(kube_cache_dir())' >"$out/kube.missing" 2>&1; then
    echo "   SKIPPED: no kube-apiserver/etcd or no importable pipeline package:"
    tail -4 "$out/kube.missing" | sed 's/^/   /'
    [[ "${CHECK_CHART_REQUIRE_KUBE:-0}" == 1 ]] && fail "kube-apiserver checks could not run"
    return 0
  fi
  "$python" - "$out/remediation-values.yaml" "${rendered[@]}" <<'PY' || fail "kube-apiserver: dry run, RBAC or SubjectAccessReviews"
import asyncio, collections, json, pathlib, ssl, sys, tempfile, time, yaml
import httpx
from pipeline.embedded.kube import KubeAPIServer, kube_cache_dir, service_account_review
from pipeline.embedded.kube_cluster import MEMCACHED_CRD, argocd_application_crd

NAMESPACE = "alerts"  # the --namespace of every render
rbac_render = pathlib.Path(sys.argv[1])  # the render whose RBAC is created for real and reviewed
renders = [pathlib.Path(p) for p in sys.argv[2:]]
problems = []

with tempfile.TemporaryDirectory(prefix="check-chart-kube-") as tmp, KubeAPIServer(pathlib.Path(tmp)) as kube:
    http = httpx.Client(base_url=kube.url, verify=ssl.create_default_context(cafile=str(kube.ca_path)),
                        headers={"Authorization": f"Bearer {kube.admin_token}"}, timeout=30, trust_env=False)

    def ok(resp, what, allowed=()):
        if resp.status_code >= 400 and resp.status_code not in allowed:
            raise SystemExit(f"{what}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    # The CRDs the remediator acts on (ArgoCD Application, a sample operator's Memcached), Established.
    crds = [MEMCACHED_CRD]
    try:
        crds.insert(0, argocd_application_crd(kube_cache_dir()))
    except Exception as exc:  # noqa: BLE001
        print(f"   (no ArgoCD Application CRD: {exc})")
    for path in crds:
        for crd in yaml.safe_load_all(path.read_text()):
            if crd:
                ok(http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd), "CRD", {409})
                name = crd["metadata"]["name"]
                deadline = time.monotonic() + 30
                while not any(c["type"] == "Established" and c["status"] == "True" for c in
                              ok(http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                                 "CRD").get("status", {}).get("conditions") or []):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"CRD {name} not Established")
                    time.sleep(0.1)
    for ns in (NAMESPACE, "shop"):
        ok(http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}), f"namespace {ns}", {409})

    resources = {}  # apiVersion -> kind -> (plural, namespaced)
    def resource(api_version, kind):
        if api_version not in resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            resp = http.get(path)
            resources[api_version] = {r["kind"]: (r["name"], r["namespaced"]) for r in
                                      (resp.json().get("resources", []) if resp.status_code == 200 else [])
                                      if "/" not in r["name"]}
        return resources[api_version].get(kind)

    def path_of(doc):
        found = resource(doc["apiVersion"], doc["kind"])
        if found is None:
            return None
        plural, namespaced = found
        base = "/api/v1" if doc["apiVersion"] == "v1" else f"/apis/{doc['apiVersion']}"
        if namespaced:
            base += f"/namespaces/{doc['metadata'].get('namespace', NAMESPACE)}"
        return f"{base}/{plural}"

    # 1. A server-side dry run (create, strict field validation) of every object of every render.
    dry, skipped = 0, collections.Counter()
    for render in renders:
        for doc in yaml.safe_load_all(render.read_text()):
            if not doc:
                continue
            path = path_of(doc)
            if path is None:
                skipped[doc["kind"]] += 1
                continue
            if doc["metadata"].get("namespace", NAMESPACE) not in (NAMESPACE, "shop"):
                ns = doc["metadata"]["namespace"]
                ok(http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}), f"namespace {ns}", {409})
            resp = http.post(path, params={"dryRun": "All", "fieldValidation": "Strict"}, json=doc)
            dry += 1
            if resp.status_code >= 400:
                problems.append(f"{render.stem}: dry run of {doc['kind']} {doc['metadata']['name']}: "
                                f"{resp.status_code} {resp.json().get('message', resp.text)[:300]}")
            elif resp.json().get("metadata", {}).get("uid") and http.get(f"{path}/{doc['metadata']['name']}").status_code != 404:
                problems.append(f"{render.stem}: the dry run of {doc['kind']} {doc['metadata']['name']} stored it")
    print(f"   server-side dry run: {dry} objects from {len(renders)} renders accepted"
          f" by kube-apiserver {kube.url}" + (f"; not served here (no CRD): {dict(skipped)}" if skipped else ""))

    # 2. The RBAC of one render created for real, then SubjectAccessReviews for each ServiceAccount.
    docs = [d for d in yaml.safe_load_all(rbac_render.read_text()) if d]
    for d in docs:
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            ok(http.post(path_of(d), json=d), f"create {d['kind']} {d['metadata']['name']}")
    account = {}
    for d in docs:
        if d["kind"] == "Deployment":
            account[d["metadata"]["labels"]["app.kubernetes.io/component"]] = \
                d["spec"]["template"]["spec"]["serviceAccountName"]

    def allowed(component, verb, group, resource_, namespace="shop", subresource="", name=""):
        review = service_account_review(account[component], NAMESPACE, verb, group, resource_, namespace, subresource, name)
        return ok(http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review), "SAR")["status"].get("allowed", False)

    from pipeline.adapters.remediation import PERMISSIONS
    operators = [(g, r) for d in docs if d["kind"] == "ClusterRole"
                 and d["metadata"]["labels"].get("app.kubernetes.io/component") == "remediate"
                 for rule in d["rules"] for g in rule["apiGroups"] for r in rule["resources"]
                 if g not in ("", "apps", "batch", "argoproj.io", "authorization.k8s.io")]
    detection = [("get", "", "pods"), ("get", "", "replicationcontrollers"), ("get", "apps", "deployments"),
                 ("get", "apps", "statefulsets"), ("get", "apps", "daemonsets"), ("get", "apps", "replicasets"),
                 ("get", "batch", "jobs"), ("get", "batch", "cronjobs"), ("list", "argoproj.io", "applications")]
    can = {
        "remediate": [(v, g, r) for v, g, r in PERMISSIONS] + detection
                     + [("create", "authorization.k8s.io", "selfsubjectaccessreviews")]
                     + [(v, g, r) for g, r in operators for v in ("get", "patch")],
        "gateway": detection,
        "watch": [("list", "", "pods"), ("watch", "", "pods"), ("list", "", "nodes"), ("watch", "apps", "deployments")],
    }
    cannot = {
        "remediate": [("delete", "apps", "deployments"), ("create", "apps", "deployments"),
                      ("update", "apps", "deployments"), ("patch", "apps", "deployments", "scale"),
                      ("delete", "apps", "statefulsets"), ("patch", "apps", "replicasets"),
                      ("delete", "apps", "replicasets"), ("get", "", "secrets"), ("list", "", "secrets"),
                      ("patch", "", "configmaps"), ("get", "", "configmaps"), ("create", "", "pods"),
                      ("patch", "", "pods"), ("update", "", "pods"), ("watch", "", "pods"),
                      ("create", "", "pods", "eviction"), ("create", "", "pods", "exec"), ("get", "", "pods", "log"),
                      ("delete", "", "nodes"), ("list", "", "nodes"), ("patch", "", "nodes", "status"),
                      ("delete", "argoproj.io", "applications"), ("create", "argoproj.io", "applications"),
                      ("patch", "batch", "jobs"), ("delete", "batch", "jobs"),
                      ("patch", "other.example.com", "widgets"), ("create", "", "serviceaccounts", "token"),
                      ("impersonate", "", "serviceaccounts"), ("bind", "rbac.authorization.k8s.io", "clusterroles"),
                      ("escalate", "rbac.authorization.k8s.io", "clusterroles"),
                      ("create", "rbac.authorization.k8s.io", "rolebindings"),
                      ("create", "authorization.k8s.io", "subjectaccessreviews")]
                     + [("delete", g, r) for g, r in operators],
        "gateway": [("list", "", "pods"), ("watch", "apps", "deployments"), ("list", "apps", "deployments"),
                    ("patch", "apps", "deployments"), ("delete", "", "pods"), ("get", "", "secrets"),
                    ("get", "argoproj.io", "applications"), ("patch", "argoproj.io", "applications"),
                    ("get", "", "nodes"), ("get", "", "configmaps")],
        "watch": [("patch", "apps", "deployments"), ("delete", "", "pods"), ("get", "", "secrets")],
        "ingest": [("get", "", "pods"), ("list", "", "pods"), ("get", "", "secrets")],
    }
    reviews = 0
    for component in sorted(set(can) | set(cannot)):
        if component not in account:
            continue
        for spec in can.get(component, []):
            verb, group, res = spec[:3]
            sub = spec[3] if len(spec) > 3 else ""
            for ns in ("shop", "") if res != "nodes" else ("",):
                reviews += 1
                if not allowed(component, verb, group, res, ns, sub):
                    problems.append(f"{component} ({account[component]}) can NOT {verb} {res}{'/' + sub if sub else ''}"
                                    f".{group or 'core'} {'in ' + ns if ns else 'cluster-wide'}")
        for spec in cannot.get(component, []):
            verb, group, res = spec[:3]
            sub = spec[3] if len(spec) > 3 else ""
            for ns in ("shop", ""):
                reviews += 1
                if allowed(component, verb, group, res, ns, sub):
                    problems.append(f"{component} ({account[component]}) CAN {verb} {res}{'/' + sub if sub else ''}"
                                    f".{group or 'core'} {'in ' + ns if ns else 'cluster-wide'}")
    summary = "; ".join(f"{c}: {len(can.get(c, []))} rights granted, {len(cannot.get(c, []))} refused"
                        for c in sorted(set(can) | set(cannot)) if c in account)
    print(f"   SubjectAccessReviews: {reviews}, each right asked in a namespace and cluster-wide ({summary})")

    # 3. The app itself under the ServiceAccounts' tokens: remediate's start-up self-check finds nothing
    # denied; detection (remediate's planning, the gateway's routes) walks pod -> ReplicaSet -> Deployment.
    from kubernetes_asyncio.client import ApiClient, Configuration
    from pipeline.adapters.detection import Detector
    from pipeline.adapters.remediation import KubeRemediator

    dep = ok(http.post("/apis/apps/v1/namespaces/shop/deployments", json={
        "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}),
        "deployment")
    rs = ok(http.post("/apis/apps/v1/namespaces/shop/replicasets", json={
        "metadata": {"name": "web-1", "labels": {"app": "web"}, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": dep["metadata"]["uid"],
             "controller": True}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}),
        "replicaset")
    ok(http.post("/api/v1/namespaces/shop/pods", json={
        "metadata": {"name": "web-1-abc", "labels": {"app": "web"}, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": rs["metadata"]["uid"],
             "controller": True}]},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]}}), "pod")

    def token(component):
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
        return ok(http.post(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{account[component]}/token", json=body),
                  "token")["status"]["token"]

    async def as_account(component):
        cfg = Configuration(host=kube.url, api_key={"BearerToken": token(component)},
                            api_key_prefix={"BearerToken": "Bearer"}, ssl_ca_cert=str(kube.ca_path))
        async with ApiClient(cfg) as api:
            out = {}
            if component == "remediate":
                out["self_check"] = await KubeRemediator(api).self_check()
            info = await Detector(api).detect("shop", "Pod", "web-1-abc")
            out["info"] = info
            return out

    for component in ("remediate", "gateway"):
        if component not in account:
            continue
        try:
            out = asyncio.run(as_account(component))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{component}: detection under its ServiceAccount failed: {exc!r}")
            continue
        if component == "remediate":
            denied = out["self_check"].get("denied")
            if denied or not out["self_check"].get("permissions"):
                problems.append(f"remediate's start-up self-check under its ServiceAccount: denied {denied}")
            else:
                print(f"   remediate's self-check as {account[component]}: {len(out['self_check']['permissions'])} permissions, none denied")
        print(f"   detection as {account[component]}: pod shop/web-1-abc -> method {out['info'].method!r}")

for p in problems:
    print("   " + p)
sys.exit(1 if problems else 0)
PY
}
check_kube

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "chart OK ($(helm version --short))"
