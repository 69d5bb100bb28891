"""The demo's parts: Prometheus and the test cluster started before the stages, the script played once ready."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.compose.demo.report import Findings, where_to_look
from pipeline.compose.demo.scenario import (
    BUILD_HINT,
    FINAL,
    SCRIPT_TIMEOUT_S,
    TEMPORARY_MARK,
    bad_release,
    cast,
    demo_history,
    rename_pods,
    workload_manifests,
)
from pipeline.compose.demo.script import anomaly_report, firing_webhooks, iso, resolved_webhook
from pipeline.config import ConfigError, Settings
from pipeline.embedded.history import (
    CRASHY_DEPLOYMENT,
    CRASHY_NAMESPACE,
    DEPLOYMENTS,
    LEAKY_POD,
    History,
)
from pipeline.observability import get_logger

log = get_logger("pipeline.compose.demo")



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
                 history_until=iso(datetime.fromtimestamp(self.history.end, UTC)),
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
