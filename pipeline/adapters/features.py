"""Collects the inputs of a feature vector from Prometheus: one range query carries all five base metrics
(`domain.features.vector_query`). Failures become reasons, never exceptions: enrichment must go on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.adapters.prometheus import PrometheusClient, PrometheusError, QueryError
from pipeline.domain.features import (
    BASE_METRICS,
    LOOKBACK_S,
    STEP_S,
    FeatureVector,
    Scope,
    compute,
    vector_inputs,
    vector_query,
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
        try:
            series = await self.client.query_range(vector_query(scope), at - LOOKBACK_S, at, STEP_S)
        except PrometheusError as exc:
            inputs: dict[str, Sequence[tuple[float, float]] | str] = dict.fromkeys(BASE_METRICS, _reason(exc))
        else:
            inputs = vector_inputs(scope, [(s.labels, s.samples) for s in series])
        return Collected(compute(at, inputs), scope, 1, time.perf_counter() - started)


def _reason(exc: PrometheusError) -> str:
    kind = "prometheus query rejected" if isinstance(exc, QueryError) else "prometheus unavailable"
    return f"{kind}: {exc}"
