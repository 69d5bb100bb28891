"""Collects the inputs of a feature vector from Prometheus: one range query carries all five base metrics
(`domain.features.vector_query`). Failures become reasons, never exceptions: enrichment must go on."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.adapters.prometheus import PrometheusClient, PrometheusError, QueryError, Series
from pipeline.domain.features import (
    BASE_METRICS,
    LOOKBACK_S,
    STEP_S,
    FeatureVector,
    Scope,
    base_queries,
    combined,
    compute,
    split_parts,
    vector_inputs,
)


@dataclass(frozen=True, slots=True)
class Collected:
    vector: FeatureVector
    scope: Scope
    queries: int
    seconds: float
    # The `extra` expressions asked for with the vector: their series that have a value at the evaluation
    # time, reduced to that one sample (what an instant query at that time would answer).
    extra: dict[str, list[Series]] = field(default_factory=dict)
    error: PrometheusError | None = None  # why the query failed, when it did


class FeatureCollector:
    """`collect(scope, at)` -> the vector; `client` None means Prometheus is not configured."""

    def __init__(self, client: PrometheusClient | None) -> None:
        self.client = client

    async def collect(self, scope: Scope, at: float, extra: Mapping[str, str] | None = None) -> Collected:
        """The vector at `at`; `extra` expressions ride along in the same query (see `Collected.extra`)."""
        started = time.perf_counter()
        if self.client is None:
            vector = compute(at, {})
            vector.missing = dict.fromkeys(vector.missing, "prometheus not configured")
            return Collected(vector, scope, 0, 0.0, dict.fromkeys(extra or (), []))
        expr = combined({**base_queries(scope), **(extra or {})})
        try:
            series = await self.client.query_range(expr, at - LOOKBACK_S, at, STEP_S)
        except PrometheusError as exc:
            inputs: dict[str, Sequence[tuple[float, float]] | str] = dict.fromkeys(BASE_METRICS, _reason(exc))
            return Collected(compute(at, inputs), scope, 1, time.perf_counter() - started,
                             dict.fromkeys(extra or (), []), exc)
        pairs = [(s.labels, s.samples) for s in series]
        inputs = vector_inputs(scope, pairs)
        at_end = {
            key: [Series(labels, samples[-1:]) for labels, samples in found
                  if samples and abs(samples[-1][0] - at) < 0.5]
            for key, found in split_parts(list(extra or ()), pairs).items()
        }
        return Collected(compute(at, inputs), scope, 1, time.perf_counter() - started, at_end)


def _reason(exc: PrometheusError) -> str:
    kind = "prometheus query rejected" if isinstance(exc, QueryError) else "prometheus unavailable"
    return f"{kind}: {exc}"
