"""R22 `GET /api/v1/recommendations/rightsizing`: requests and limits from P95 usage."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient, Series
from pipeline.api.contract import Body, maybe_absent
from pipeline.domain import capacity as cap
from pipeline.gateway.analysis.formatting import drop_none, iso, rounded
from pipeline.gateway.analysis.queries import (
    CONTAINERS,
    by_labels,
    finite_last,
    gather,
    label_eq,
    label_prefix,
)

# ------------------------------------------------------------------------------------------ the answers
CORES = "the engine's CPU string: `250m` under a core, `1.50` from one up; empty when unknown"
BYTES = "the engine's memory string: `1.5Gi`, `300.0Mi`; empty when unknown"


class ContainerRightsizing(Body):
    """A container's requests and limits against its P95 usage: request = P95 × 1.2, limit = P95 × 1.5."""

    namespace: str
    pod: str
    container: str = Field(description="`(aggregated)` in `aggregate`")
    current_cpu_request: str = Field(description=CORES)
    current_cpu_limit: str = Field(description=CORES)
    p95_cpu_usage_cores: float | None = Field(description="null without CPU usage")
    recommended_cpu_request: str = Field(description=CORES)
    recommended_cpu_limit: str = Field(description=CORES)
    current_memory_request: str = Field(description=BYTES)
    current_memory_limit: str = Field(description=BYTES)
    p95_memory_usage_bytes: float | None = Field(description="null without memory usage")
    recommended_memory_request: str = Field(description=BYTES)
    recommended_memory_limit: str = Field(description=BYTES)
    cpu_sizing: cap.Sizing = Field(description="request / P95 above 2: over-provisioned, below 0.8: under; "
                                               "throttling above 25 % makes CPU under-provisioned")
    memory_sizing: cap.Sizing
    throttle_rate_pct: float = maybe_absent("throttled CFS periods, % of all periods; absent without CFS metrics")
    current_cpu_request_cores: float | None
    current_cpu_limit_cores: float | None
    recommended_cpu_request_cores: float | None
    recommended_cpu_limit_cores: float | None
    current_memory_request_bytes: float | None
    current_memory_limit_bytes: float | None
    recommended_memory_request_bytes: float | None
    recommended_memory_limit_bytes: float | None
    reasons: list[str] = Field(description="what changed the verdict, for people")


class RightsizingRecommendations(Body):
    """Requests and limits from P95 usage (R22): one row per container."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "timestamp": "2026-12-06T17:53:18Z", "namespace": "payments",
        "analysis_window": "30d",
        "recommendations": [{
            "namespace": "payments", "pod": "throttled-84c5d7f96-p2r5s", "container": "throttled",
            "current_cpu_request": "250m", "current_cpu_limit": "500m", "p95_cpu_usage_cores": 0.499,
            "recommended_cpu_request": "599m", "recommended_cpu_limit": "750m", "current_memory_request": "128.0Mi",
            "current_memory_limit": "256.0Mi", "p95_memory_usage_bytes": 160970579.0,
            "recommended_memory_request": "184.2Mi", "recommended_memory_limit": "230.3Mi",
            "cpu_sizing": "under-provisioned", "memory_sizing": "right-sized", "throttle_rate_pct": 60.0,
            "current_cpu_request_cores": 0.25, "current_cpu_limit_cores": 0.5, "recommended_cpu_request_cores": 0.59856,
            "recommended_cpu_limit_cores": 0.75, "current_memory_request_bytes": 134217728.0,
            "current_memory_limit_bytes": 268435456.0, "recommended_memory_request_bytes": 193164695.0,
            "recommended_memory_limit_bytes": 241455868.0,
            "reasons": ["CPU throttled in 60% of periods: demand above the limit is hidden"]}],
        "over_provisioned_count": 0, "under_provisioned_count": 1, "right_sized_count": 0, "unknown_count": 0}]})
    status: Literal["success"]
    timestamp: datetime
    namespace: str = maybe_absent("the `namespace` asked for")
    pod: str = maybe_absent("the `pod` prefix asked for")
    analysis_window: str = Field(description="7d, 14d, 30d or 90d")
    recommendations: list[ContainerRightsizing]
    over_provisioned_count: int
    under_provisioned_count: int
    right_sized_count: int
    unknown_count: int
    aggregate: ContainerRightsizing = maybe_absent("the engine's single row, every figure averaged over the "
                                                   "containers; absent without any")


# ------------------------------------------------------------------------------------------ R22 rightsizing
def _rightsizing_json(r: cap.Rightsizing) -> dict[str, Any]:
    u = r.usage
    body: dict[str, Any] = {
        "namespace": u.namespace,
        "pod": u.pod,
        "container": u.container,
        "current_cpu_request": cap.format_cores(u.cpu_request),
        "current_cpu_limit": cap.format_cores(u.cpu_limit),
        "p95_cpu_usage_cores": rounded(u.p95_cpu_cores, 3),
        "recommended_cpu_request": cap.format_cores(r.recommended_cpu_request),
        "recommended_cpu_limit": cap.format_cores(r.recommended_cpu_limit),
        "current_memory_request": cap.format_bytes(u.memory_request),
        "current_memory_limit": cap.format_bytes(u.memory_limit),
        "p95_memory_usage_bytes": rounded(u.p95_memory_bytes, 0),
        "recommended_memory_request": cap.format_bytes(r.recommended_memory_request),
        "recommended_memory_limit": cap.format_bytes(r.recommended_memory_limit),
        "cpu_sizing": r.cpu_sizing,
        "memory_sizing": r.memory_sizing,
        "throttle_rate_pct": rounded(u.throttle_fraction * 100, 2) if u.throttle_fraction is not None else None,
        "current_cpu_request_cores": rounded(u.cpu_request, 6),
        "current_cpu_limit_cores": rounded(u.cpu_limit, 6),
        "recommended_cpu_request_cores": rounded(r.recommended_cpu_request, 6),
        "recommended_cpu_limit_cores": rounded(r.recommended_cpu_limit, 6),
        "current_memory_request_bytes": rounded(u.memory_request, 0),
        "current_memory_limit_bytes": rounded(u.memory_limit, 0),
        "recommended_memory_request_bytes": rounded(r.recommended_memory_request, 0),
        "recommended_memory_limit_bytes": rounded(r.recommended_memory_limit, 0),
        "reasons": list(r.reasons),
    }
    if body["throttle_rate_pct"] is None:
        del body["throttle_rate_pct"]  # the engine omits it without CFS metrics
    return body


_GROUP = "max by (namespace, pod, container)"


def _queries(scope: str, window: str) -> list[str]:
    """P95 CPU and memory over the window, the declared requests and limits, and the throttled fraction."""
    return [
        f"{_GROUP} (quantile_over_time(0.95, "
        f"rate(container_cpu_usage_seconds_total{{{CONTAINERS}{scope}}}[5m])[{window}:5m]))",
        f"{_GROUP} (quantile_over_time(0.95, container_memory_working_set_bytes{{{CONTAINERS}{scope}}}[{window}]))",
        "max by (__name__, namespace, pod, container, resource) ("
        f'{{__name__=~"kube_pod_container_resource_(requests|limits)",resource=~"cpu|memory",'
        f'container!=""{scope}}})',
        # A true fraction over the window: throttled CFS periods / all periods.
        f"sum by (namespace, pod, container) "
        f"(increase(container_cpu_cfs_throttled_periods_total{{{CONTAINERS}{scope}}}[{window}])) / "
        f"sum by (namespace, pod, container) "
        f"(increase(container_cpu_cfs_periods_total{{{CONTAINERS}{scope}}}[{window}]))",
    ]


def _usages(
    cpu: list[Series], memory: list[Series], resources: list[Series], throttle: list[Series]
) -> list[cap.ContainerUsage]:
    """One ContainerUsage per container with a P95 figure, its declared requests and limits joined in."""
    ids = ("namespace", "pod", "container")
    p95_cpu = {k: finite_last(s) for k, s in by_labels(cpu, *ids).items()}
    p95_mem = {k: finite_last(s) for k, s in by_labels(memory, *ids).items()}
    throttled = {k: finite_last(s) for k, s in by_labels(throttle, *ids).items()}
    declared = {k: finite_last(s) for k, s in by_labels(resources, "__name__", "resource", *ids).items()}

    def spec(kind: str, resource: str, k: tuple[str, ...]) -> float | None:
        return declared.get((f"kube_pod_container_resource_{kind}", resource, *k))

    return [
        cap.ContainerUsage(
            namespace=k[0],
            pod=k[1],
            container=k[2],
            p95_cpu_cores=p95_cpu.get(k),
            p95_memory_bytes=p95_mem.get(k),
            cpu_request=spec("requests", "cpu", k),
            cpu_limit=spec("limits", "cpu", k),
            memory_request=spec("requests", "memory", k),
            memory_limit=spec("limits", "memory", k),
            throttle_fraction=throttled.get(k),
        )
        for k in sorted(set(p95_cpu) | set(p95_mem))
    ]


async def rightsizing_report(
    prom: PrometheusClient, namespace: str | None, pod: str | None, window: str
) -> dict[str, Any]:
    """R22's answer: a recommendation per container, the verdict counts, and the engine's averaged row."""
    now = time.time()
    scope = label_eq("namespace", namespace) + label_prefix("pod", pod)
    cpu, memory, resources, throttle = await gather(*(prom.query(q, now) for q in _queries(scope, window)))
    usages = _usages(cpu, memory, resources, throttle)
    recs = [cap.recommend(u) for u in usages]
    verdicts = [cap.verdict(r) for r in recs]
    return drop_none(
        {
            "status": "success",
            "timestamp": iso(datetime.fromtimestamp(now, UTC)),
            "namespace": namespace,
            "pod": pod,
            "analysis_window": window,
            "recommendations": [_rightsizing_json(r) for r in recs],
            "over_provisioned_count": verdicts.count("over-provisioned"),
            "under_provisioned_count": verdicts.count("under-provisioned"),
            "right_sized_count": verdicts.count("right-sized"),
            "unknown_count": verdicts.count("unknown"),
            "aggregate": _rightsizing_json(cap.recommend(_mean_usage(usages, namespace, pod)))
            if usages
            else None,
        }
    )


def _mean_usage(
    usages: list[cap.ContainerUsage], namespace: str | None, pod: str | None
) -> cap.ContainerUsage:
    """The engine's single row: every figure averaged over the containers that have it."""

    def mean(values: Iterable[float | None]) -> float | None:
        known = [v for v in values if v is not None and math.isfinite(v)]
        return math.fsum(known) / len(known) if known else None

    return cap.ContainerUsage(
        namespace or "",
        pod or "",
        "(aggregated)",
        p95_cpu_cores=mean(u.p95_cpu_cores for u in usages),
        p95_memory_bytes=mean(u.p95_memory_bytes for u in usages),
        cpu_request=mean(u.cpu_request for u in usages),
        cpu_limit=mean(u.cpu_limit for u in usages),
        memory_request=mean(u.memory_request for u in usages),
        memory_limit=mean(u.memory_limit for u in usages),
        throttle_fraction=mean(u.throttle_fraction for u in usages),
    )
