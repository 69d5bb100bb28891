"""`pipeline run --demo`: the embedded default with something to look at in every route.

Besides the broker, the demo starts (`Demo.start`, before the stages, so they are pointed at them):

* a real **Prometheus** (`pipeline/embedded/prometheus.py`) serving the generated scenario cluster
  (`pipeline/embedded/history`: shop — cart x2 and a leaking pod; payments — a crash-looping and a CPU-throttled
  pod) from 3 h ago to `HORIZON_S` ahead, so that for half an hour the analysis routes and the enrich stage see a
  live cluster (`PROMETHEUS_URL`);
* the **test cluster** (`pipeline/embedded/kube_cluster.py`: kube-apiserver, controller-manager, scheduler, kwok)
  when its binaries are cached, with a Deployment per workload of the history; `payments/crashy`'s second release
  crash-loops (`crashloop=true` pods). The cluster's pod names are written into the history, so an alert, a pod's
  watch events and its metrics are about one pod. `KUBECONFIG` points at it and `KUBE_WATCH` is on: the watch stage
  sees the crash loop and the remediate stage really acts. Without the binaries: one log line saying how to build
  them, and workflows end `skipped` (no cluster configured).

Once the process is ready, `Demo.play` sends a scripted story through the real routes — Alertmanager webhooks
(`firing_webhooks`) and an anomaly report (`anomaly_report`), then, once their workflows have ended, the alerts'
resolution (`resolved_webhook`) — waits for incidents, decisions and workflows, and prints where to look
(`where_to_look`) on stdout. Everything the demo points at is its own: its broker, its Prometheus, its cluster;
the user's Kafka, cluster, Alertmanager and ML service settings are set aside (`demo_settings`), and its data is a
fresh temporary directory (removed at exit) unless `--data-dir` is given.

The pure pieces (manifests, history renaming, webhooks, the report, the text) are unit-tested
(tests/unit/test_demo.py); `tests/integration/test_demo.py` runs `pipeline run --demo` as a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipeline.config import ConfigError, Settings
from pipeline.domain.quantity import format_quantity
from pipeline.embedded.history import (
    CRASHY_DEPLOYMENT,
    CRASHY_NAMESPACE,
    CRASHY_POD,
    DEFAULT_DURATION_S,
    DEFAULT_STEP_S,
    DEPLOYMENTS,
    LEAKY_DEPLOYMENT,
    LEAKY_MEMORY_LIMIT_BYTES,
    LEAKY_NAMESPACE,
    LEAKY_POD,
    PODS,
    THROTTLED_DEPLOYMENT,
    THROTTLED_FRACTION,
    THROTTLED_NAMESPACE,
    THROTTLED_POD,
    History,
    generate_history,
    render_openmetrics,
)
from pipeline.observability import get_logger

log = get_logger("pipeline.compose.demo")

HORIZON_S = 1800  # the history runs this far past the start: ~6 of the crash loop's 12 restarts are still ahead
IMAGE = "registry.example/demo"
CRASHY_PROGRESS_DEADLINE_S = 5  # the bad release is reported stuck (ProgressDeadlineExceeded) this soon
TEMPORARY_MARK = ".pipeline-demo-temporary"  # in a data dir the demo made itself: removed at exit
SCRIPT_TIMEOUT_S = 120.0  # how long the script waits for each part of the story before it says what it has
FINAL = frozenset({"completed", "failed", "skipped", "rejected", "cancelled", "superseded"})
BUILD_HINT = "bash scripts/build-kube-apiserver.sh (~10 min once; scripts/setup runs it)"


# --- settings ------------------------------------------------------------------------------------------------------


def demo_settings(settings: Settings, *, keep_data: bool) -> Settings:
    """The demo's settings: its own embedded broker, Prometheus and cluster (set by `Demo.start`), never the user's
    Kafka, cluster, Alertmanager or ML service, and a fresh temporary data dir unless `keep_data` (`--data-dir`)."""
    update: dict[str, Any] = {
        "kafka_bootstrap_servers": "", "kubeconfig": "", "kube_context": "", "kubernetes_service_host": "",
        "kube_watch": False, "watch_namespaces": [], "watch_exclude_namespaces": [], "remediation_namespaces": [],
        "argocd_namespaces": [], "alertmanager_url": "", "prometheus_url": "", "ml_service_url": "",
        "kserve_entries": {},
    }
    if not keep_data:
        data_dir = Path(tempfile.mkdtemp(prefix="pipeline-demo-"))
        (data_dir / TEMPORARY_MARK).write_text("made by `pipeline run --demo`; removed when it stops\n")
        update["data_dir"] = data_dir
    return settings.model_copy(update=update)


# --- the cluster's workloads ---------------------------------------------------------------------------------------


def _cores(value: float) -> str:
    return f"{round(value * 1000)}m"


def workload_manifests() -> list[dict[str, Any]]:
    """One apps/v1 Deployment per workload of the history (same namespace, name, replicas, container name, requests
    and limits), selecting `app=<name>`; their pods have no `nodeName` (the scheduler binds them to kwok's node)."""
    manifests = []
    for namespace, name, replicas in DEPLOYMENTS:
        spec = next(p for p in PODS if p.deployment == name)
        resources = {
            "requests": {"cpu": _cores(spec.cpu_request_cores), "memory": format_quantity(spec.memory_request_bytes)},
            "limits": {"cpu": _cores(spec.cpu_limit_cores), "memory": format_quantity(spec.memory_limit_bytes)},
        }
        deployment: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                        {"name": spec.container, "image": f"{IMAGE}/{name}:1.0", "resources": resources}]},
                },
            },
        }
        if name == CRASHY_DEPLOYMENT:
            deployment["spec"]["progressDeadlineSeconds"] = CRASHY_PROGRESS_DEADLINE_S
        manifests.append(deployment)
    return manifests


def bad_release() -> dict[str, Any]:
    """The strategic-merge patch that makes `payments/crashy`'s release 1.1: its pods crash-loop (kwok's
    `crashloop=true` stage). Release 1.0 keeps running beside it (a rolling update waits for 1.1 to be ready)."""
    return {"spec": {"template": {
        "metadata": {"labels": {"crashloop": "true"}},
        "spec": {"containers": [{"name": CRASHY_DEPLOYMENT, "image": f"{IMAGE}/{CRASHY_DEPLOYMENT}:1.1"}]},
    }}}


def cast(pods: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Which cluster pod plays which history pod: `pods` lists each deployment's pods (for crashy: the crash-looping
    release's). Pods are taken in name order; a deployment without pods keeps the history's names."""
    names: dict[str, str] = {}
    for deployment, history_pods in ((d, [p.pod for p in PODS if p.deployment == d]) for _, d, _ in DEPLOYMENTS):
        for old, new in zip(history_pods, sorted(pods.get(deployment, ())), strict=False):
            names[old] = new
    return names


# --- the history ---------------------------------------------------------------------------------------------------


def demo_history(now: float) -> History:
    """The scenario cluster from 3 h before `now` to `HORIZON_S` after it (instant queries see it until `end` + 5 min)."""
    start = now - now % DEFAULT_STEP_S
    return generate_history(start + HORIZON_S, duration_s=DEFAULT_DURATION_S + HORIZON_S)


def rename_pods(history: History, names: Mapping[str, str]) -> History:
    """The same history with its pods renamed (`names`: history pod -> new name), their ReplicaSets
    (`created_by_name`) with them; every other label and every sample unchanged."""
    if not names:
        return history
    replicasets = {old.rsplit("-", 1)[0]: new.rsplit("-", 1)[0] for old, new in names.items()}
    renames = {"pod": names, "created_by_name": replicasets}

    def relabel(labels: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        return frozenset((k, renames[k].get(v, v) if k in renames else v) for k, v in labels)

    samples = {(name, relabel(labels)): values for (name, labels), values in history.samples.items()}
    return dataclasses.replace(history, samples=samples, openmetrics=render_openmetrics(samples))


# --- the script ----------------------------------------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint is a hash of the label set: the same alert has the same one when it resolves."""
    text = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alert(labels: dict[str, str], summary: str, expr: str, prometheus_url: str, starts_at: datetime
           ) -> dict[str, Any]:
    return {"status": "firing", "labels": labels, "annotations": {"summary": summary},
            "startsAt": _iso(starts_at), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"{prometheus_url}/graph?g0.expr={quote(expr)}&g0.tab=1",
            "fingerprint": _fingerprint(labels)}


def _webhook(alerts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """A version 4 webhook as Alertmanager groups it (by alertname and namespace), shaped like
    tests/data/alertmanager-webhook-*.json."""
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    group = {k: common[k] for k in ("alertname", "namespace") if k in common}
    return {"receiver": "pipeline", "status": status, "alerts": alerts, "groupLabels": group, "commonLabels": common,
            "commonAnnotations": {}, "externalURL": "http://alertmanager.demo:9093", "version": "4",
            "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}", "truncatedAlerts": 0}


def firing_webhooks(history: History, names: Mapping[str, str], prometheus_url: str, now: datetime
                    ) -> list[dict[str, Any]]:
    """What Alertmanager would send about the history's pods (`names`: their names in the cluster), each matching a
    rule of rules/remediation.yaml: payments/crashy crash-looping (KubePodCrashLooping: restart_pod) and shop/leaky
    near its memory limit (ContainerMemoryHigh: scale_resources). `history` is the one before renaming."""
    crashy, leaky = names.get(CRASHY_POD, CRASHY_POD), names.get(LEAKY_POD, LEAKY_POD)
    at = now.timestamp()
    restarts = [t for t in history.crashy_restart_times if t <= at]
    recent = sum(1 for t in restarts if t > at - 900)
    memory = history.instant("container_memory_working_set_bytes", at, pod=LEAKY_POD) or 0.0
    crash = _alert(
        {"alertname": "KubePodCrashLooping", "namespace": CRASHY_NAMESPACE, "pod": crashy,
         "container": CRASHY_DEPLOYMENT, "severity": "warning"},
        f"Pod {CRASHY_NAMESPACE}/{crashy} is crash looping ({recent} restarts in 15m)",
        "increase(kube_pod_container_status_restarts_total[15m]) > 2", prometheus_url,
        datetime.fromtimestamp(restarts[0], UTC) if restarts else now)
    near = _alert(
        {"alertname": "ContainerMemoryHigh", "namespace": LEAKY_NAMESPACE, "pod": leaky,
         "container": LEAKY_DEPLOYMENT, "severity": "critical"},
        f"{LEAKY_NAMESPACE}/{leaky} memory at {memory / LEAKY_MEMORY_LIMIT_BYTES:.0%} of its "
        f"{format_quantity(LEAKY_MEMORY_LIMIT_BYTES)} limit and growing",
        'container_memory_working_set_bytes / on (namespace, pod, container) group_left () '
        'kube_pod_container_resource_limits{resource="memory"} > 0.8', prometheus_url, now - timedelta(minutes=10))
    return [_webhook([crash], "firing"), _webhook([near], "firing")]


def resolved_webhook(webhook: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The same alerts resolved (same fingerprints and start, `endsAt` now), as Alertmanager sends them."""
    alerts = [{**a, "status": "resolved", "endsAt": _iso(now)} for a in webhook["alerts"]]
    return {**webhook, "status": "resolved", "alerts": alerts}


def anomaly_report(now: datetime, names: Mapping[str, str]) -> dict[str, Any]:
    """An anomaly report (the Python engine's API) about payments/throttled (`names`: the history's pods in the
    cluster): its rule (cpu-throttling) would raise memory, the report recommends scaling out at confidence 0.75 — an
    AI-driven proposal below the default approval threshold (0.8), so its workflow waits for a human."""
    pod = names.get(THROTTLED_POD, THROTTLED_POD)
    return {"type": "high_cpu", "severity": "medium", "confidence_score": 0.75, "namespace": THROTTLED_NAMESPACE,
            "resource": f"Deployment/{THROTTLED_DEPLOYMENT}", "recommended_action": "scale_replicas",
            "title": f"{THROTTLED_NAMESPACE}/{THROTTLED_DEPLOYMENT} CPU pinned at its limit",
            "description": f"{pod} spends {THROTTLED_FRACTION:.0%} of its CFS periods throttled",
            "metrics": {"cpu_throttled_fraction": THROTTLED_FRACTION}, "source": "demo", "timestamp": _iso(now)}


# --- where to look -------------------------------------------------------------------------------------------------


@dataclass
class Findings:
    """What the script found: the ids and states the "where to look" text names."""

    url: str
    seconds: float
    prometheus_url: str
    history_until: datetime
    bootstrap: str
    data_dir: Path
    temporary: bool
    kubeconfig: str = ""  # empty: no cluster
    incident: dict[str, Any] = field(default_factory=dict)  # the crash loop's
    workflow: dict[str, Any] = field(default_factory=dict)  # its workflow
    waiting: dict[str, Any] = field(default_factory=dict)  # the anomaly report's (awaiting approval)
    anomaly_id: str = ""
    leaky_pod: str = LEAKY_POD  # its name in the cluster, when there is one
    incidents: int = 0
    completed: int = 0
    decisions: int = 0
    token: bool = False  # API_TOKEN is set: write routes need it


def _get(url: str) -> str:
    return f"curl -s '{url}'"


def _post(url: str, body: str | None = None, token: bool = False) -> str:
    auth = ' -H "Authorization: Bearer $API_TOKEN"' if token else ""
    data = f" -H 'Content-Type: application/json' -d '{body}'" if body is not None else ""
    return f"curl -s -X POST '{url}'{auth}{data}"


def where_to_look(f: Findings) -> str:
    """The block printed once the story has played: every route with the demo's real ids, one command a line."""
    u, api = f.url, f"{f.url}/api/v1"
    incident, workflow, waiting = f.incident, f.workflow, f.waiting
    lines = [
        "",
        f"== pipeline demo: ready in {f.seconds:.0f} s: {f.incidents} incidents ({f.completed} completed), "
        f"{f.decisions} decisions. Ctrl-C stops everything. ==",
        "",
        "Incidents",
        "  " + _get(f"{api}/incidents?status=all&severity=all"),
    ]
    if incident:
        about = f"{incident.get('namespace')}/{incident.get('resource')}: {incident.get('issue_type')}"
        lines += [
            "  " + _get(f"{api}/incidents/{incident['id']}") + f"   # {about}, {incident.get('status')}",
            "  " + _get(f"{api}/incidents/{incident['id']}/timeline") + "   # every event, stage by stage",
        ]
    lines += ["", "Remediation", "  " + _get(f"{api}/decisions")]
    if workflow:
        steps = " -> ".join(f"{s['action']} {s['status']}" for s in workflow.get("steps") or []) or "no steps"
        lines.append("  " + _get(f"{api}/workflows/{workflow['id']}")
                     + f"   # {workflow.get('action')}: {steps}; {workflow.get('status')}")
    if waiting:
        target = f"{waiting.get('namespace')}/{waiting.get('resource_kind')}/{waiting.get('resource_name')}"
        lines.append("  " + _post(f"{api}/workflows/{waiting['id']}/approve", token=f.token)
                     + f"   # {waiting.get('action')} of {target} waits for your approval")
    if f.anomaly_id:
        lines.append("  " + _get(f"{api}/anomalies/{f.anomaly_id}") + "   # the anomaly report")
    analyze = json.dumps({"namespace": CRASHY_NAMESPACE, "time_range": "1h"})
    lines += [
        "  " + _get(f"{api}/status"),
        "",
        f"Analysis (Prometheus {f.prometheus_url}: generated history until {f.history_until:%H:%M} UTC)",
        "  " + _get(f"{api}/predict/memory-leak?namespace={LEAKY_NAMESPACE}") + f"   # finds {f.leaky_pod}",
        "  " + _get(f"{api}/capacity/trends?namespace={LEAKY_NAMESPACE}") + "   # memory grows with the leak",
        "  " + _get(f"{api}/capacity/cluster"),
        "  " + _get(f"{api}/predict/disk-exhaustion"),
        "  " + _get(f"{api}/recommendations/rightsizing?namespace={THROTTLED_NAMESPACE}"),
        "  " + _post(f"{api}/anomalies/analyze", analyze, f.token) + "   # crash loop, throttling, the model",
        "",
        "API, metrics, the log",
        f"  {u}/docs",
        "  " + _get(f"{u}/metrics"),
    ]
    if incident:
        lines += [f"  PIPELINE_URL={u} pipeline incidents show {incident['id']}   # the operator CLI: incidents, "
                  "decisions, workflows, status",
                  f"  KAFKA_BOOTSTRAP_SERVERS={f.bootstrap} pipeline replay --incident {incident['id']}"]
    lines.append("")
    if f.kubeconfig:
        lines.append(f"Cluster: KUBECONFIG={f.kubeconfig} kubectl get deploy,pods -A")
    else:
        lines.append(f"No cluster, so workflows end skipped; build one with {BUILD_HINT}")
    kept = "removed at exit" if f.temporary else "kept"
    lines += [f"Data: {f.data_dir} ({kept})", ""]
    return "\n".join(lines)


# --- the parts -----------------------------------------------------------------------------------------------------


class Demo:
    """The demo's Prometheus and cluster (started in a thread before the stages), and its script (after ready)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / "demo"
        self.prometheus: Any = None  # PrometheusServer
        self.cluster: Any = None  # KubeCluster, when its binaries are cached
        self.kubeconfig = ""
        self.history: History | None = None  # as generated, before the cluster's pod names
        self.names: dict[str, str] = {}  # history pod -> cluster pod
        self._starting: asyncio.Future[dict[str, Any]] | None = None
        self._script: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> dict[str, Any]:
        """Start Prometheus (and the cluster); the settings that point the stages at them."""
        self._starting = asyncio.ensure_future(asyncio.to_thread(self._start))
        return await asyncio.shield(self._starting)

    def _start(self) -> dict[str, Any]:
        from pipeline.embedded.process import ComponentMissingError, require_binary
        from pipeline.embedded.prometheus import PrometheusServer

        try:  # before the cluster: without Prometheus there is no demo
            for binary in ("prometheus", "promtool"):
                require_binary(binary)
        except ComponentMissingError:
            raise ConfigError("the demo needs Prometheus (prometheus and promtool on PATH): install them with "
                              "`bash scripts/install-components.sh` (scripts/setup does)") from None
        now = time.time()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._stopping:
            self._start_cluster()
        started = time.perf_counter()
        self.history = demo_history(now)
        self.prometheus = PrometheusServer(self.dir, rename_pods(self.history, self.names))
        if not self._stopping:
            self.prometheus.start()
        log.info("demo prometheus started", url=self.prometheus.url, series=len(self.history.samples),
                 history_until=_iso(datetime.fromtimestamp(self.history.end, UTC)),
                 seconds=round(time.perf_counter() - started, 3))
        cluster = bool(self.kubeconfig)
        return {"prometheus_url": self.prometheus.url, "kubeconfig": self.kubeconfig, "kube_watch": cluster,
                **({"cluster_name": self.settings.cluster_name or "demo"} if cluster else {})}

    def _start_cluster(self) -> None:
        """The cluster and its workloads, when the binaries are cached (else a warning, and none)."""
        from pipeline.embedded.kube_cluster import KubeCluster
        from pipeline.embedded.process import ComponentMissingError

        started = time.perf_counter()
        try:
            cluster = KubeCluster(self.dir, cache_dir=self.settings.cache_dir)
        except ComponentMissingError as exc:
            log.warning("demo without a cluster: its binaries are not cached; workflows will end skipped",
                        missing=str(exc).split(". Build")[0], fix=BUILD_HINT)
            return
        self.cluster = cluster
        try:
            cluster.start()
            self.names = self._deploy(cluster)
        except Exception as exc:  # noqa: BLE001 - the demo goes on without a cluster, saying why
            log.warning("demo without a cluster: it did not start; workflows will end skipped", error=str(exc)[:2000])
            cluster.stop()
            self.cluster, self.names = None, {}
            return
        self.kubeconfig = str(cluster.kubeconfig(self.dir / "demo.kubeconfig"))
        log.info("demo cluster started", kubeconfig=self.kubeconfig, pods=self.names,
                 seconds=round(time.perf_counter() - started, 3))

    def _deploy(self, cluster: Any) -> dict[str, str]:
        """The workloads, rolled out; then crashy's bad release. Which cluster pod plays which history pod."""
        import ssl

        import httpx

        with httpx.Client(base_url=cluster.url, timeout=10.0, trust_env=False,
                          verify=ssl.create_default_context(cafile=str(cluster.ca_path)),
                          headers={"Authorization": f"Bearer {cluster.admin_token}"}) as http:
            for namespace in sorted({d["metadata"]["namespace"] for d in workload_manifests()}):
                _ok(http.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}), "namespace", {409})
            for manifest in workload_manifests():
                ns = manifest["metadata"]["namespace"]
                _ok(http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=manifest), "deployment")
            for manifest in workload_manifests():
                _until(lambda m=manifest: _available(http, m), f"{_name(manifest)} available")
            _ok(http.patch(f"/apis/apps/v1/namespaces/{CRASHY_NAMESPACE}/deployments/{CRASHY_DEPLOYMENT}",
                           json=bad_release(), headers={"Content-Type": "application/strategic-merge-patch+json"}),
                "bad release")
            pods: dict[str, list[str]] = {}
            for ns, name, _ in DEPLOYMENTS:
                # crashy: the bad release's pod, once in CrashLoopBackOff (so the watch stage sees it when it starts)
                selector, waiting = ("app=crashy,crashloop=true", "CrashLoopBackOff") if name == CRASHY_DEPLOYMENT \
                    else (f"app={name}", "")
                pods[name] = _until(lambda ns=ns, s=selector, w=waiting: _pod_names(http, ns, s, w),
                                    f"{ns}/{name}'s pods{' in ' + waiting if waiting else ''}")
        return cast(pods)

    # --- the script ---------------------------------------------------------------------------------------------

    def after_ready(self, url: str, bootstrap: str) -> None:
        """Play the story once the process is ready (Process._after_ready)."""
        self._script = asyncio.create_task(self.play(url, bootstrap), name="demo-script")

    async def play(self, url: str, bootstrap: str) -> None:
        """Send the story through the real routes, wait for its outcome, print where to look. A part of the story
        that does not happen in time is logged, and the text shows what there is."""
        import httpx

        base = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
        token = self.settings.bearer_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0, trust_env=False) as http:
                findings = await self._play(http, base, bootstrap)
        except Exception as exc:  # noqa: BLE001 - the pipeline keeps running; say what went wrong
            log.error("demo script failed", error=repr(exc))
            return
        log.info("demo ready", seconds=round(findings.seconds, 1), incidents=findings.incidents,
                 decisions=findings.decisions)
        print(where_to_look(findings), file=sys.stdout, flush=True)

    async def _play(self, http: Any, url: str, bootstrap: str) -> Findings:
        import psutil

        assert self.history is not None and self.prometheus is not None
        if self.kubeconfig:  # the watch stage has seen the crash loop: its signal and the alert make one incident
            await self._until(lambda: self._watching(http), "the watch stage saw the crash loop")
        now = datetime.now(UTC)
        hooks = firing_webhooks(self.history, self.names, self.prometheus.url, now)
        for hook in hooks:
            (await http.post("/api/v1/alerts", json=hook)).raise_for_status()
        report = await http.post("/api/v1/anomalies", json=anomaly_report(now, self.names))
        report.raise_for_status()
        anomaly = report.json()
        about = [(h["alerts"][0]["labels"]["namespace"], f"Pod/{h['alerts'][0]['labels']['pod']}") for h in hooks]
        # The alerts resolve once their incidents' workflows have ended (as Alertmanager would see it).
        await self._until(lambda: self._ended(http, about), "the alerts' workflows ended")
        ended = await self._ended(http, about, every=False) or {}  # on time, all of them
        for hook, key in zip(hooks, about, strict=True):
            if key in ended:
                (await http.post("/api/v1/alerts", json=resolved_webhook(hook, datetime.now(UTC)))).raise_for_status()
        await self._until(lambda: self._completed(http), "an incident completed")
        listing = (await http.get("/api/v1/incidents", params={"status": "all", "severity": "all"})).json()
        incident: dict[str, Any] = next((i for i in listing["incidents"]
                                         if (i.get("namespace"), i.get("resource")) == about[0]), {})
        workflow = await self._json(http, f"/api/v1/workflows/{incident['workflow_id']}") \
            if incident.get("workflow_id") else {}
        waiting = await self._json(http, f"/api/v1/workflows/{anomaly['workflow_id']}") \
            if anomaly.get("workflow_id") else {}
        decisions = (await http.get("/api/v1/decisions")).json()
        return Findings(
            url=url, bootstrap=bootstrap, seconds=time.time() - psutil.Process().create_time(),
            prometheus_url=self.prometheus.url, history_until=datetime.fromtimestamp(self.history.end, UTC),
            data_dir=self.settings.data_dir, temporary=(self.settings.data_dir / TEMPORARY_MARK).exists(),
            kubeconfig=self.kubeconfig, incident=incident, workflow=workflow,
            waiting=waiting if waiting.get("status") == "awaiting_approval" else {},
            anomaly_id=anomaly.get("anomaly_id", ""), leaky_pod=self.names.get(LEAKY_POD, LEAKY_POD),
            incidents=listing["summary"]["total"], completed=listing["summary"]["completed"],
            decisions=decisions["total"], token=self.settings.bearer_token is not None)

    @staticmethod
    async def _json(http: Any, path: str) -> dict[str, Any]:
        answer = await http.get(path)
        return answer.json() if answer.status_code == 200 else {}

    async def _ended(self, http: Any, about: list[tuple[str, str]], every: bool = True
                     ) -> dict[tuple[str, str], str] | None:
        """The incidents `about` (namespace, resource) whose workflows have ended, with their statuses: once every
        one has (`every`), else None; or those that have (not `every`)."""
        listing = (await http.get("/api/v1/incidents", params={"status": "all", "severity": "all"})).json()
        found: dict[tuple[str, str], str] = {}
        for incident in listing["incidents"]:
            key = (incident.get("namespace"), incident.get("resource"))
            if key in about and incident.get("workflow_id"):
                workflow = await self._json(http, f"/api/v1/workflows/{incident['workflow_id']}")
                if workflow.get("status") in FINAL:
                    found[key] = workflow["status"]
        return found if len(found) == len(about) or not every else None

    @staticmethod
    async def _watching(http: Any) -> bool:
        watch = (await http.get("/api/v1/health")).json().get("components", {}).get("watch") or {}
        return bool(watch.get("synced") and watch.get("firing_objects"))

    @staticmethod
    async def _completed(http: Any) -> bool:
        listing = (await http.get("/api/v1/incidents", params={"status": "completed", "severity": "all"})).json()
        return bool(listing["summary"]["total"])

    @staticmethod
    async def _until(check: Any, what: str) -> Any:
        deadline = time.monotonic() + SCRIPT_TIMEOUT_S
        while time.monotonic() < deadline:
            if found := await check():
                return found
            await asyncio.sleep(0.5)
        log.warning("demo: not in time; showing what there is", waited_for=what, seconds=SCRIPT_TIMEOUT_S)
        return None

    # --- stop ---------------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the script, then (once a start under way has finished) the cluster and Prometheus; remove their
        directory, and the data dir when the demo made it (the broker has stopped by now: this is the last step)."""
        self._stopping = True
        if self._script is not None:
            self._script.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._script
        if self._starting is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        for part in (self.cluster, self.prometheus):
            if part is not None:
                part.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if (self.settings.data_dir / TEMPORARY_MARK).exists():
            shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        log.info("demo stopped", prometheus=self.prometheus is not None, cluster=self.cluster is not None)


# --- small helpers for the cluster's API (admin, synchronous: the start thread) ------------------------------------


def _ok(response: Any, what: str, tolerate: set[int] | None = None) -> dict[str, Any]:
    if response.status_code in (tolerate or set()):
        return {}
    if response.status_code >= 300:
        raise RuntimeError(f"demo cluster: {what}: {response.status_code} {response.text[:500]}")
    return response.json()  # type: ignore[no-any-return]


def _name(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"


def _available(http: Any, manifest: Mapping[str, Any]) -> bool:
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    status = _ok(http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"), "deployment").get("status") or {}
    return int(status.get("availableReplicas") or 0) >= int(manifest["spec"]["replicas"])


def _pod_names(http: Any, namespace: str, selector: str, waiting: str = "") -> list[str]:
    """The pods `selector` matches (not being deleted; with `waiting`: only once each has a container waiting for
    that reason)."""
    pods = _ok(http.get(f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}), "pods")
    items = [p for p in pods.get("items") or [] if not p["metadata"].get("deletionTimestamp")]
    if waiting and not all(any((c.get("state") or {}).get("waiting", {}).get("reason") == waiting
                               for c in (p.get("status") or {}).get("containerStatuses") or []) for p in items):
        return []
    return sorted(p["metadata"]["name"] for p in items)


def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo cluster: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)
    return found


__all__ = ["Demo", "Findings", "anomaly_report", "bad_release", "cast", "demo_history",
           "demo_settings", "firing_webhooks", "rename_pods", "resolved_webhook", "where_to_look",
           "workload_manifests"]
