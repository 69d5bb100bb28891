"""The cluster side of `pipeline bench remediate`: N Deployments to act on, and the baseline — bare
kubernetes-asyncio sending what one dry-run rollout-restart workflow sends, with nothing around it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from pipeline.domain import workflows as wf

NAMESPACES = 5
CREATE_IN_FLIGHT = 8
AVAILABLE_TIMEOUT_S = 90.0
ARGOCD = "/apis/argoproj.io/v1alpha1"


# --- the cluster: namespaces and Deployments ---------------------------------------------------------------------


def _deployment(name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 0,
                                           "containers": [{"name": "app", "image": "registry.example/app:1"}]}}}}


async def setup_deployments(api: Any, n: int) -> tuple[list[str], int, float]:
    """N Deployments over NAMESPACES namespaces; waits (bounded) until they are Available."""
    from kubernetes_asyncio.client import AppsV1Api, CoreV1Api

    started = time.perf_counter()
    core, apps = CoreV1Api(api), AppsV1Api(api)
    run = uuid.uuid4().hex[:6]
    namespaces = [f"bench-rem-{run}-{k}" for k in range(min(NAMESPACES, n))]
    for ns in namespaces:
        await core.create_namespace({"metadata": {"name": ns}}, _preload_content=False)  # type: ignore[arg-type]
    targets = [f"{namespaces[i % len(namespaces)]}/Deployment/app-{i}" for i in range(n)]
    sem = asyncio.Semaphore(CREATE_IN_FLIGHT)

    async def create(target: str) -> None:
        ns, _, name = wf.split_target(target)
        async with sem:
            response: Any = await apps.create_namespaced_deployment(ns, _deployment(name),  # type: ignore[arg-type]
                                                                    _preload_content=False)
            response.release()

    await asyncio.gather(*(create(t) for t in targets))
    deadline = time.monotonic() + AVAILABLE_TIMEOUT_S
    available = 0
    while time.monotonic() < deadline:
        available = 0
        for ns in namespaces:
            response: Any = await apps.list_namespaced_deployment(ns, _preload_content=False)
            body = json.loads(await response.read())
            available += sum(1 for d in body["items"] if (d.get("status") or {}).get("availableReplicas") == 1)
        if available >= n:
            break
        await asyncio.sleep(0.5)
    return targets, available, time.perf_counter() - started


# --- the baseline: bare kubernetes-asyncio ----------------------------------------------------------------------


class Bare:
    """What one dry-run rollout-restart workflow sends, with nothing around it: GET the Deployment (what
    detection reads), GET it again and PATCH it with dryRun=All (the step)."""

    def __init__(self, api: Any) -> None:
        from kubernetes_asyncio.client import AppsV1Api

        self.api = api
        self.apps = AppsV1Api(api)

    @staticmethod
    async def _json(coro: Awaitable[Any]) -> dict[str, Any]:
        response = await coro
        try:
            data = await response.read()
        finally:
            response.release()
        if response.status >= 400:
            raise RuntimeError(f"{response.status}: {data[:300]!r}")
        return json.loads(data) if data else {}

    async def discovery(self) -> None:
        """The detector's once-per-TTL reads: ArgoCD discovery and the Applications list."""
        kw: dict[str, Any] = {"header_params": {"Accept": "application/json"}, "auth_settings": ["BearerToken"],
                              "_preload_content": False}
        await self._json(self.api.call_api(ARGOCD, "GET", **kw))
        await self._json(self.api.call_api(f"{ARGOCD}/applications", "GET", query_params=[("limit", 500)], **kw))

    async def get(self, target: str) -> dict[str, Any]:
        ns, _, name = wf.split_target(target)
        return await self._json(self.apps.read_namespaced_deployment(name, ns, _preload_content=False))

    async def step(self, target: str, times: dict[str, list[float]]) -> None:
        ns, _, name = wf.split_target(target)
        times["first_call"].append(time.time())
        await self.get(target)
        body = {"metadata": {"annotations": {wf.MARKER_ANNOTATION: f"bench/{name}"}},
                "spec": {"template": {"metadata": {"annotations": {
                    wf.RESTARTED_AT_ANNOTATION: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}}}}
        await self._json(self.apps.patch_namespaced_deployment(name, ns, body, dry_run="All",
                                                               field_manager="bench", _preload_content=False))
        times["patched"].append(time.time())


async def bare_variant(bare: Bare, targets: list[str], shape: str) -> dict[str, Any]:
    """`seq`: one workflow after the other; `all`: N tasks at once; `shaped`: detections one by one, then
    every step at once. Latencies from the start of the variant (the burst's decision time)."""
    per: dict[str, dict[str, list[float]]] = {t: {"first_call": [], "patched": []} for t in targets}
    t0 = time.time()
    await bare.discovery()
    if shape == "seq":
        for t in targets:
            await bare.get(t)
            await bare.step(t, per[t])
    elif shape == "all":
        async def one(t: str) -> None:
            await bare.get(t)
            await bare.step(t, per[t])

        await asyncio.gather(*(one(t) for t in targets))
    else:
        for t in targets:
            await bare.get(t)
        await asyncio.gather(*(bare.step(t, per[t]) for t in targets))
    last = max(per[t]["patched"][0] for t in targets)
    return {"rate": len(targets) / (last - t0),
            "first_call": [per[t]["first_call"][0] - t0 for t in targets],
            "patched": [per[t]["patched"][0] - t0 for t in targets]}


async def bare_steady(bare: Bare, targets: list[str], interval: float) -> dict[str, Any]:
    """One workflow every `interval`, each timed from its own start."""
    await bare.discovery()
    first: list[float] = []
    patched: list[float] = []
    tasks = []

    async def one(t: str) -> None:
        t0 = time.time()
        times: dict[str, list[float]] = {"first_call": [], "patched": []}
        await bare.get(t)
        await bare.step(t, times)
        first.append(times["first_call"][0] - t0)
        patched.append(times["patched"][0] - t0)

    started = time.perf_counter()
    for i, t in enumerate(targets):
        tasks.append(asyncio.create_task(one(t)))
        delay = started + (i + 1) * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*tasks)
    return {"first_call": first, "patched": patched}
