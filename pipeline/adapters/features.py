"""Collects the inputs of a feature vector from Prometheus: a node lookup, then one range query per
base metric, all concurrent. Failures become reasons, never exceptions: enrichment must go on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.adapters.prometheus import PrometheusClient, PrometheusError, QueryError
from pipeline.domain.features import (
    LOOKBACK_S,
    STEP_S,
    FeatureVector,
    Scope,
    base_queries,
    compute,
    node_lookup_query,
)


@dataclass(frozen=True, slots=True)
class Collected:
    vector: FeatureVector
    scope: Scope
    queries: int
    seconds: float


class FeatureCollector:
    """`collect(scope, at)` -> the vector; `client` None means Prometheus is not configured."""

    def __init__(self, client: PrometheusClient | None) -> None:
        self.client = client

    async def collect(self, scope: Scope, at: float) -> Collected:
        started = time.perf_counter()
        if self.client is None:
            vector = compute(at, {})
            vector.missing = dict.fromkeys(vector.missing, "prometheus not configured")
            return Collected(vector, scope, 0, 0.0)
        queries = 0
        nodes: Sequence[str] | None = None
        lookup = node_lookup_query(scope)
        node_failure: str | None = None
        if lookup is not None:
            queries += 1
            try:
                found = await self.client.query(lookup, at)
                nodes = sorted({s.labels["node"] for s in found if s.labels.get("node")})
            except PrometheusError as exc:
                node_failure = _reason(exc)
        exprs = base_queries(scope, nodes)
        node_metrics = ("node_cpu_utilization", "node_memory_utilization")
        to_run = {m: e for m, e in exprs.items() if not (node_failure and m in node_metrics)}
        if nodes == []:  # the pods in scope are not known to kube-state-metrics at that time
            to_run = {m: e for m, e in to_run.items() if m not in node_metrics}
        results = await asyncio.gather(*(self._metric(e, at) for e in to_run.values()))
        queries += len(to_run)
        by_metric: dict[str, Sequence[tuple[float, float]] | str] = dict(zip(to_run, results, strict=True))
        for metric in node_metrics:
            if metric not in by_metric:
                by_metric[metric] = node_failure or "no node found for the pods in scope"
        return Collected(compute(at, by_metric), scope, queries, time.perf_counter() - started)

    async def _metric(self, expr: str, at: float) -> Sequence[tuple[float, float]] | str:
        assert self.client is not None
        try:
            series = await self.client.query_range(expr, at - LOOKBACK_S, at, STEP_S)
        except PrometheusError as exc:
            return _reason(exc)
        if len(series) > 1:
            return f"query returned {len(series)} series where one was expected"
        return series[0].samples if series else []


def _reason(exc: PrometheusError) -> str:
    kind = "prometheus query rejected" if isinstance(exc, QueryError) else "prometheus unavailable"
    return f"{kind}: {exc}"
