"""`pipeline bench enrich`: feature vectors per second against a real Prometheus with generated history.

Ours: one range query carrying the 5 base metrics per vector, features computed locally. Baseline in
the same run, on the same Prometheus and HTTP client: the anchor engine's approach, 35 sequential instant
queries per vector (7 per base metric: value, avg/stddev/min/max over a 5m subquery, and two offsets).
Both run with the same number of vectors in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pipeline.adapters.features import FeatureCollector
from pipeline.adapters.prometheus import PrometheusClient, PrometheusError
from pipeline.bench.harness import Report, latency_figures
from pipeline.config import Settings
from pipeline.domain.features import Scope
from pipeline.embedded.history import PODS, generate_history
from pipeline.embedded.prometheus import PrometheusServer

IN_FLIGHT = 8
ANCHOR_BASE = {
    "node_cpu_utilization": 'avg(1 - rate(node_cpu_seconds_total{{mode="idle"{s}}}[5m]))',
    "node_memory_utilization": "1 - (node_memory_MemAvailable_bytes{{{s0}}} / node_memory_MemTotal_bytes{{{s0}}})",
    "pod_cpu_usage": 'sum(rate(container_cpu_usage_seconds_total{{container!=""{s}}}[5m])) by (pod)',
    "pod_memory_usage": (
        'sum(container_memory_working_set_bytes{{container!=""{s}}}) by (pod) / '
        'sum(kube_pod_container_resource_limits{{resource="memory"{s}}}) by (pod)'
    ),
    "container_restart_count": "sum(kube_pod_container_status_restarts_total{{{s0}}}) by (pod)",
}


def anchor_queries(scope: Scope) -> list[str]:
    """The engine's 35 queries for one vector (its lag queries are invalid PromQL and fail)."""
    matchers = ",".join(scope.pod_matchers())
    out = []
    for template in ANCHOR_BASE.values():
        base = template.format(s=f",{matchers}" if matchers else "", s0=matchers)
        out += [
            base,
            f"avg_over_time(({base})[5m:])",
            f"stddev_over_time(({base})[5m:])",
            f"min_over_time(({base})[5m:])",
            f"max_over_time(({base})[5m:])",
            f"({base}) offset 1m",
            f"({base}) offset 5m",
        ]
    return out


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("enrich: 45-feature vectors from Prometheus")
    with tempfile.TemporaryDirectory() as tmp:
        history = generate_history()
        with PrometheusServer(Path(tmp), history) as server:
            settings = Settings(prometheus_url=server.url, prometheus_max_concurrency=32)
            scopes = [Scope(namespace=p.namespace, pod=p.pod) for p in PODS]
            for in_flight in (1, IN_FLIGHT):
                ours = asyncio.run(_ours(settings, scopes, history.end, args.seconds / 2, in_flight))
                anchor = asyncio.run(_anchor(settings, scopes, history.end, args.seconds / 2, in_flight))
                for name, (rate, per_vector, latencies) in (
                    (f"ours, {in_flight} in flight", ours),
                    (f"anchor (35 sequential), {in_flight} in flight", anchor),
                ):
                    report.add(name, vectors_per_s=rate, queries_per_vector=per_vector, **latency_figures(latencies))
                ratio = report.add(f"ours / anchor, {in_flight} in flight")
                ratio.ratio, ratio.ratio_of = ours[0] / anchor[0], "vectors/s"
    report.notes.append("same Prometheus, same HTTP client; Prometheus, bench and client share 2 cores")
    return report


async def _drive(
    seconds: float, in_flight: int, one: Callable[[int], Awaitable[int]]
) -> tuple[float, float, list[float]]:
    latencies: list[float] = []
    queries = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal queries
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            issued = await one(next(counter))
            latencies.append(time.perf_counter() - t0)
            queries += issued

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, queries / max(len(latencies), 1), latencies


async def _ours(
    settings: Settings, scopes: list[Scope], at: float, seconds: float, in_flight: int
) -> tuple[float, float, list[float]]:
    client = PrometheusClient(settings)
    collector = FeatureCollector(client)
    try:
        async def one(n: int) -> int:
            collected = await collector.collect(scopes[n % len(scopes)], at)
            if not collected.vector.complete:  # a fast answer without the data would measure nothing
                raise RuntimeError(f"incomplete vector: {collected.vector.missing}")
            return collected.queries

        return await _drive(seconds, in_flight, one)
    finally:
        await client.aclose()


async def _anchor(
    settings: Settings, scopes: list[Scope], at: float, seconds: float, in_flight: int
) -> tuple[float, float, list[float]]:
    client = PrometheusClient(settings.model_copy(update={"prometheus_retry_attempts": 1}))
    try:
        async def one(n: int) -> int:
            queries = anchor_queries(scopes[n % len(scopes)])
            for expr in queries:  # sequential, as the engine does
                try:
                    await client.query(expr, at)
                except PrometheusError:
                    pass  # the engine falls back to defaults; its offset queries always land here
            return len(queries)

        return await _drive(seconds, in_flight, one)
    finally:
        await client.aclose()
