"""R21 `GET /api/v1/predict/memory-leak`: containers whose working set grows like a leak."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.api.contract import Body, maybe_absent
from pipeline.domain import capacity as cap
from pipeline.gateway.analysis.formatting import drop_none, iso
from pipeline.gateway.analysis.queries import (
    CONTAINERS,
    LEAK_WINDOW_S,
    POINTS_PER_SERIES,
    by_labels,
    fetch_history,
    finite_last,
    gather,
    label_eq,
)


# ------------------------------------------------------------------------------------------ the answers
class ContainerLeak(Body):
    """A container's working set over the last 24 hours since its last restart, and the leak verdict."""

    namespace: str
    pod: str = Field(description="`(aggregated)` in `aggregate`")
    container: str
    current_memory_bytes: float
    daily_growth_bytes: float
    growth_r_squared: float
    leak_detected: bool
    confidence: float = Field(ge=0, le=1, description="of a detected leak; 0 when none is")
    memory_limit_bytes: float | None = Field(description="null without a memory limit")
    days_until_limit: float | None = Field(description="at the fitted growth; null without a limit or growth")
    projected_limit_time: datetime | None
    monotonicity: float = Field(ge=0, le=1, description="the share of rising steps")
    restarts: int = Field(description="restarts seen in the window")
    samples: int
    reason: str = Field(description="the verdict, for people")


class MemoryLeaks(Body):
    """Containers whose working set grows like a leak (R21), leaks first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "timestamp": "2026-12-06T17:53:18Z", "namespace": "shop", "window": "24h",
        "results": [{"namespace": "shop", "pod": "leaky-6c9d8-abcde", "container": "leaky",
                     "current_memory_bytes": 996558917.0, "daily_growth_bytes": 6287428768.1,
                     "growth_r_squared": 1.0, "leak_detected": True, "confidence": 0.36,
                     "memory_limit_bytes": 1073741824.0, "days_until_limit": 0.012,
                     "projected_limit_time": "2026-12-06T18:10:59Z", "monotonicity": 1.0, "restarts": 0,
                     "samples": 183, "reason": "linear growth of 1033.6%/day (R² 1.00) since the last restart"}],
        "leak_count": 1}]})
    status: Literal["success"]
    timestamp: datetime
    namespace: str = maybe_absent("the `namespace` asked for")
    window: Literal["24h"]
    results: list[ContainerLeak]
    leak_count: int
    aggregate: ContainerLeak = maybe_absent("the engine's single row: every container's working set summed; "
                                            "absent without any")


# ------------------------------------------------------------------------------------------ R21 leaks
def _leak_json(namespace: str, pod: str, container: str, a: cap.LeakAssessment) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "current_memory_bytes": a.current_bytes,
        "daily_growth_bytes": a.daily_growth_bytes,
        "growth_r_squared": a.r_squared,
        "leak_detected": a.leak_detected,
        "confidence": a.confidence,
        "memory_limit_bytes": a.limit_bytes,
        "days_until_limit": a.days_until_limit,
        "projected_limit_time": iso(a.limit_reached_at) if a.limit_reached_at else None,
        "monotonicity": a.monotonicity,
        "restarts": a.restarts,
        "samples": a.samples,
        "reason": a.reason,
    }


async def leaks_report(prom: PrometheusClient, namespace: str | None) -> dict[str, Any]:
    now = time.time()
    scope = f"{CONTAINERS}{label_eq('namespace', namespace)}"
    group = "max by (namespace, pod, container)"
    working_sets, limits = await gather(
        fetch_history(
            prom,
            lambda _: f"{group} (container_memory_working_set_bytes{{{scope}}})",
            LEAK_WINDOW_S,
            POINTS_PER_SERIES,
            now,
        ),
        prom.query(f'{group} (kube_pod_container_resource_limits{{resource="memory",{scope}}})', now),
    )
    limit_of = {k: finite_last(s) for k, s in by_labels(limits, "namespace", "pod", "container").items()}

    def compute() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        rows = []
        for (ns, pod, container), s in sorted(by_labels(working_sets, "namespace", "pod", "container").items()):
            assessment = cap.assess_memory_leak(s.samples, limit_of.get((ns, pod, container)))
            if assessment is not None:
                rows.append(_leak_json(ns, pod, container, assessment))
        rows.sort(key=lambda r: not r["leak_detected"])
        total: dict[float, float] = defaultdict(float)
        for s in working_sets:
            for t, v in s.samples:
                if math.isfinite(v):
                    total[t] += v
        known_limits = [v for v in limit_of.values() if v is not None]
        overall = cap.assess_memory_leak(
            sorted(total.items()), math.fsum(known_limits) if known_limits else None
        )
        aggregate = _leak_json(namespace or "", "(aggregated)", "(aggregated)", overall) if overall else None
        return rows, aggregate

    results, aggregate = await asyncio.to_thread(compute)
    return drop_none(
        {
            "status": "success",
            "timestamp": iso(datetime.fromtimestamp(now, UTC)),
            "namespace": namespace,
            "window": "24h",
            "results": results,
            "leak_count": sum(r["leak_detected"] for r in results),
            "aggregate": aggregate,
        }
    )


