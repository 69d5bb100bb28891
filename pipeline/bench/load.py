"""Webhook bodies and a closed-loop HTTP load generator (N clients, each one request at a time)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp

_counter = itertools.count()


def webhook(alerts: int, *, namespace: str = "bench", pod: str | None = None) -> bytes:
    """A realistic Alertmanager v4 webhook whose alerts are all new (unique fingerprints)."""
    items = []
    for _ in range(alerts):
        n = next(_counter)
        items.append(
            {
                "status": "firing",
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "namespace": namespace,
                    "pod": pod or f"app-{n % 5000}",
                    "container": "app",
                    "deployment": "app",
                    "severity": "warning",
                    "job": "kube-state-metrics",
                    "prometheus": "monitoring/k8s",
                },
                "annotations": {
                    "summary": f"Pod {namespace}/app-{n} is crash looping",
                    "runbook_url": "https://runbooks.example/KubePodCrashLooping",
                    "description": "Pod is restarting 2.1 times / 10 minutes.",
                },
                "startsAt": "2026-11-22T00:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=increase%28kube_pod_container_status_restarts_total%5B10m%5D%29",
                "fingerprint": f"{n:016x}",
            }
        )
    body: dict[str, Any] = {
        "receiver": "pipeline", "status": "firing", "alerts": items, "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}', "truncatedAlerts": 0,
    }
    return json.dumps(body).encode()


async def closed_loop(url: str | list[str], clients: int, seconds: float, alerts: int) -> tuple[int, int, list[float]]:
    """Each client posts, waits for the answer, posts again. Returns (ok, failed, latencies). With several URLs
    (several servers), client i posts to `url[i % len(url)]`.

    aiohttp, not httpx: httpx spent ~4 ms of CPU per request here, so it measured itself, not the server.
    """
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        deadline = time.perf_counter() + seconds

        urls = [url] if isinstance(url, str) else url

        async def one_client(target: str) -> None:
            headers = {"content-type": "application/json"}
            while time.perf_counter() < deadline:
                body = webhook(alerts)
                started = time.perf_counter()
                async with session.post(target, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
                latencies.append(time.perf_counter() - started)
                counts["ok" if status == 200 else "failed"] += 1

        await asyncio.gather(*(one_client(urls[i % len(urls)]) for i in range(clients)))
    return counts["ok"], counts["failed"], latencies
