"""R17 trending and `GET /api/v1/capacity/trends`: a scope's state, its usage trend, and the forecast
of when it runs out (with leaks and crash loops taken apart from steady growth)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient, Series
from pipeline.api.contract import Body, maybe_absent
from pipeline.domain import capacity as cap
from pipeline.domain.analysis import CRASH_LOOP_RESTARTS
from pipeline.gateway.analysis.formatting import drop_none, iso, iso_day, percent_of, rounded
from pipeline.gateway.analysis.params import Namespaces, ns_selector
from pipeline.gateway.analysis.queries import (
    CONTAINERS,
    CRASH_LOOP_WINDOW,
    IDS,
    LEAK_WINDOW_S,
    POINTS_PER_SERIES,
    WINDOWS,
    Grid,
    by_labels,
    duration,
    fetch_grid,
    finite_last,
    gather,
    pod_count_expr,
    rate_range,
    tagged,
    usage_expr,
    usage_history,
)


# ------------------------------------------------------------------------------------------ R17, trends
@dataclass(frozen=True, slots=True)
class NamespaceState:
    """One instant query's worth of a namespace (or a glob of them, or the cluster): quotas, limits,
    allocatable, usage, pods, the namespaces matched and the containers crash-looping."""

    quotas: dict[str, dict[str, float]]  # namespace -> resource -> the tightest hard quota
    limits: dict[str, float]
    allocatable: dict[str, float]
    usage: dict[str, float]
    pods: int
    namespaces: tuple[str, ...] = ()  # namespaces with pods (the scope's matches)
    restarts: dict[tuple[str, str, str], float] = dataclasses.field(default_factory=dict)

    @property
    def quota(self) -> dict[str, float]:
        """The quotas of every namespace in scope, summed per resource."""
        total: dict[str, float] = defaultdict(float)
        for resources in self.quotas.values():
            for resource, value in resources.items():
                total[resource] += value
        return dict(total)

    def _quota_of(self, resource: str) -> float | None:
        """The summed quota for a resource, when every namespace in scope has one (a quota on some of
        them does not bound the others' usage)."""
        scope = set(self.namespaces) | set(self.quotas)
        values = []
        for ns in scope:
            quota = self.quotas.get(ns, {})
            value = quota.get(f"limits.{resource}") or quota.get(resource)
            if not value:
                return None
            values.append(value)
        return math.fsum(values) if values else None

    def capacity(self, resource: str) -> tuple[str | None, float | None]:
        """The capacity a resource is measured against: the quota, else the summed container limits
        (which grow with replicas), else the cluster's allocatable."""
        quota = self._quota_of(resource)
        if quota:
            return "quota", quota
        if self.limits.get(resource):
            return "limits", self.limits[resource]
        if self.allocatable.get(resource):
            return "allocatable", self.allocatable[resource]
        return None, None


def state_expr(selector: str, namespaced: bool) -> str:
    ns = selector
    parts = [
        tagged(
            'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"})',
            "kind",
            "allocatable",
        ),
        tagged(
            tagged(f"sum(rate(container_cpu_usage_seconds_total{{{CONTAINERS}{ns}}}[5m]))", "resource", "cpu"),
            "kind",
            "usage",
        ),
        tagged(
            tagged(f"sum(container_memory_working_set_bytes{{{CONTAINERS}{ns}}})", "resource", "memory"),
            "kind",
            "usage",
        ),
        tagged(pod_count_expr(ns), "kind", "pods"),
        # Crash loops (the anomaly analysis' rule): they make replicas pointless, whatever the forecast.
        tagged(
            "sum by (namespace, pod, container) (increase(kube_pod_container_status_restarts_total"
            f'{{container!=""{ns}}}[{CRASH_LOOP_WINDOW}])) >= {CRASH_LOOP_RESTARTS}',
            "kind",
            "restarts",
        ),
    ]
    if namespaced:
        # Several quotas in one namespace all apply: the tightest one binds.
        parts.append(
            tagged(f'min by (namespace, resource) (kube_resourcequota{{type="hard"{ns}}})', "kind", "quota")
        )
        parts.append(
            tagged(
                f'sum by (resource) (kube_pod_container_resource_limits{{resource=~"cpu|memory"{ns}}})',
                "kind",
                "limits",
            )
        )
        parts.append(tagged(f"count by (namespace) (kube_pod_info{{{ns.lstrip(',')}}})", "kind", "namespace"))
    return " or ".join(parts)


def read_state(series: list[Series]) -> NamespaceState:
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    quotas: dict[str, dict[str, float]] = defaultdict(dict)
    restarts: dict[tuple[str, str, str], float] = {}
    namespaces: set[str] = set()
    pods = 0
    for s in series:
        value = finite_last(s)
        if value is None:
            continue
        kind = s.labels.get("kind", "")
        if kind == "pods":
            pods = int(value)
        elif kind == "quota":
            quotas[s.labels.get("namespace", "")][s.labels.get("resource", "")] = value
        elif kind == "restarts":
            restarts[
                (s.labels.get("namespace", ""), s.labels.get("pod", ""), s.labels.get("container", ""))
            ] = value
        elif kind == "namespace":
            namespaces.add(s.labels.get("namespace", ""))
        else:
            groups[kind][s.labels.get("resource", "")] = value
    return NamespaceState(
        dict(quotas),
        groups["limits"],
        groups["allocatable"],
        groups["usage"],
        pods,
        tuple(sorted(namespaces)),
        restarts,
    )


def _containers_expr(selector: str, step: int) -> str:
    """Each container's working set (averaged over each step) and memory limit, for the leak check."""
    r = duration(rate_range(step))
    group = "max by (namespace, pod, container)"
    usage = f"{group} (avg_over_time(container_memory_working_set_bytes{{{CONTAINERS}{selector}}}[{r}]))"
    limit = f'{group} (kube_pod_container_resource_limits{{resource="memory",{CONTAINERS}{selector}}})'
    return f"{tagged(usage, 'kind', 'usage')} or {tagged(limit, 'kind', 'limit')}"


def _needs_decomposition(memory: cap.ResourceTrend | None) -> bool:
    """Memory is forecast to run out because it grows: whether the growth is a leak (or a crash loop's
    saw-tooth) changes the forecast."""
    return (
        memory is not None
        and memory.capacity is not None
        and memory.base_growth_per_day > 0
        and memory.days_until_85_percent is not None
        and memory.days_until_85_percent > 0
    )


def _decompose(
    grid: Grid, now: float, crash_loops: list[cap.WorkloadIssue]
) -> tuple[list[cap.WorkloadIssue], list[tuple[float, float]]]:
    """Per container over the grid: the leaks (cap.assess_memory_leak over the last 24 h), the crash loops
    with their peak working set, and the summed working set of all the other containers."""
    usage = by_labels((s for s in grid.series if s.labels.get("kind") == "usage"), *IDS)
    limits = {
        k: finite_last(s)
        for k, s in by_labels((s for s in grid.series if s.labels.get("kind") == "limit"), *IDS).items()
    }
    crashing = {(i.namespace, i.pod, i.container): i for i in crash_loops}
    issues: list[cap.WorkloadIssue] = []
    rest: dict[float, float] = defaultdict(float)
    for key, s in sorted(usage.items()):
        recent = [(t, v) for t, v in s.samples if t > now - LEAK_WINDOW_S and math.isfinite(v)]
        if key in crashing and recent:
            issues.append(dataclasses.replace(crashing.pop(key), peak_bytes=max(v for _, v in recent)))
            continue
        assessment = cap.assess_memory_leak(recent, limits.get(key))
        if assessment is not None and assessment.leak_detected:
            namespace, pod, container = key
            issues.append(cap.leak_issue(namespace, pod, container, assessment))
            continue
        for t, v in s.samples:
            if math.isfinite(v):
                rest[t] += v
    return [*crashing.values(), *issues], sorted(rest.items())


async def fetch_outlook(
    prom: PrometheusClient, namespaces: Namespaces | None, window: str, now: float
) -> tuple[NamespaceState, cap.CapacityOutlook, dict[str, str | None]]:
    selector = ns_selector(namespaces)
    state_series, usage = await gather(
        prom.query(state_expr(selector, namespaces is not None), now),
        fetch_grid(
            prom,
            lambda step: usage_expr(selector, step),
            WINDOWS[window],
            POINTS_PER_SERIES,
            now,
        ),
    )
    state = read_state(state_series)
    history = usage_history(usage)
    bases = {r: state.capacity(r) for r in ("cpu", "memory")}
    issues = [
        cap.crash_loop_issue(ns, pod, container, restarts, CRASH_LOOP_WINDOW)
        for (ns, pod, container), restarts in sorted(state.restarts.items())
    ]
    cpu, memory = await asyncio.to_thread(
        lambda: (
            cap.resource_trend(history.get("cpu", []), bases["cpu"][1]),
            cap.resource_trend(history.get("memory", []), bases["memory"][1]),
        )
    )
    if _needs_decomposition(memory):
        # The same grid as the usage, so the containers' sums line up with the total's timestamps.
        (containers,) = await gather(
            prom.query_range(_containers_expr(selector, usage.step), usage.start, now, usage.step)
        )
        grid = Grid(containers, usage.start, now, usage.step)
        issues, rest = await asyncio.to_thread(_decompose, grid, now, issues)
        memory = cap.bound_defects(memory, rest, issues)

    def compute() -> cap.CapacityOutlook:
        kinds = {kind for kind, _ in bases.values()}
        return cap.capacity_outlook(
            cpu,
            memory,
            today=datetime.fromtimestamp(now, UTC).date(),
            replicas=state.pods,
            per_replica_capacity=kinds == {"limits"},
            capacity_basis=next((k for k in ("quota", "allocatable") if k in kinds), None),
            issues=issues,
        )

    return state, await asyncio.to_thread(compute), {r: kind for r, (kind, _) in bases.items()}


# ------------------------------------------------------------------------------------------ the answers
CapacityBasis = Literal["quota", "limits", "allocatable"]
NEVER = "whole days from the last sample, rounded up; 0 when already there, -1 when none is forecast"


class UsageTrend(Body):
    """One resource's usage against its capacity: the fitted trend and when it runs out."""

    daily_change_percent: float = Field(description="the fitted slope, % of the current usage per day")
    weekly_change_percent: float
    direction: cap.TrendDirection = Field(
        description="`no_trend`: too little history, or a significant slope the line does not describe")
    reason: str = Field(description="why this direction, for people")
    r_squared: float | None = Field(description="how much of the variation the line explains; null without a fit")
    current: float = Field(description="cores (cpu) or bytes (memory)")
    capacity: float | None = Field(description="in the same unit; null when no capacity is known")
    capacity_basis: CapacityBasis | None = Field(
        description="the namespace quota when every namespace in scope has one, else the summed container "
                    "limits, else the nodes' allocatable")
    utilisation_percent: float | None
    days_until_85_percent: int = Field(description=NEVER)
    days_until_full: int = Field(description=NEVER)
    confidence: float = Field(ge=0, le=1)
    samples: int


class CapacityIssue(Body):
    """A container whose growth is not steady demand: a leak grows only to its limit, a crash loop to its peak."""

    kind: cap.IssueKind
    namespace: str
    pod: str
    container: str
    detail: str


class CapacityForecast(Body):
    """The trend of CPU and memory in scope and when the sooner of them runs out (the engine's `trending`)."""

    cpu: UsageTrend = maybe_absent("absent without CPU usage history")
    memory: UsageTrend = maybe_absent("absent without memory usage history")
    days_until_85_percent: int = Field(description=f"of the sooner resource: {NEVER}")
    projected_exhaustion_date: date = maybe_absent("the date of `days_until_85_percent`; absent when none")
    confidence: float = Field(ge=0, le=1, description="of the sooner resource's forecast")
    forecasted_exhaustion_days: int = Field(description=f"until the sooner resource is full: {NEVER}")
    exhausting_resource: Literal["cpu", "memory"] = maybe_absent(
        "the resource of `forecasted_exhaustion_days`; absent when none is forecast")
    recommended_replica_increase: int = Field(
        ge=0, description="replicas to add so usage stays at 70 % of the larger limits when today's capacity "
                          "runs out (exhaustion within 30 days); 0 when replicas do not help")
    replica_advice: str = Field(description="why that many replicas, or why none")
    workload_issues: list[CapacityIssue] = Field(description="crash loops, and leaks when memory grows")
    window: str = Field(description="the history fitted: 7d, 14d, 30d or 90d")


class CapacityTrends(CapacityForecast):
    """The capacity forecast of a namespace, a glob of them, or the cluster (the route the MCP server calls)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "namespace": "shop", "timestamp": "2026-12-06T17:53:18Z",
        "cpu": {"daily_change_percent": -18.33, "weekly_change_percent": -128.31, "direction": "stable",
                "reason": "no significant change (-18.33 %/day is within the noise)", "r_squared": 0.02,
                "current": 0.184839, "capacity": 2.5, "capacity_basis": "limits", "utilisation_percent": 7.39,
                "days_until_85_percent": -1, "days_until_full": -1, "confidence": 0.51, "samples": 180},
        "memory": {"daily_change_percent": 1.8, "weekly_change_percent": 12.6, "direction": "increasing",
                   "reason": "+1.80 %/day (R² 0.93)", "r_squared": 0.93, "current": 1625847909.0,
                   "capacity": 3221225472.0, "capacity_basis": "limits", "utilisation_percent": 50.47,
                   "days_until_85_percent": 21, "days_until_full": 30, "confidence": 0.72, "samples": 182},
        "days_until_85_percent": 21, "projected_exhaustion_date": "2026-12-27", "confidence": 0.72,
        "forecasted_exhaustion_days": 30, "exhausting_resource": "memory", "recommended_replica_increase": 2,
        "replica_advice": "memory runs out in 29.4 days: 2 more replica(s) (3 → 5 pods) raise the summed limits "
                          "so that usage would be at 70% when today's capacity runs out; at the fitted growth the "
                          "larger capacity lasts about 57.3 days",
        "workload_issues": [], "window": "7d"}]})
    status: Literal["success"]
    namespace: str = Field(description="as asked: a namespace, a glob, or empty for the cluster")
    timestamp: datetime
    matched_namespaces: list[str] = maybe_absent("for a glob: the namespaces with pods it matched")


def _trend_json(t: cap.ResourceTrend | None, basis: str | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "daily_change_percent": t.daily_change_percent,
        "weekly_change_percent": t.weekly_change_percent,
        "direction": t.direction,
        "reason": t.reason,
        "r_squared": t.r_squared,
        "current": rounded(t.current, 6),
        "capacity": rounded(t.capacity, 6),
        "capacity_basis": basis,
        "utilisation_percent": percent_of(t.current, t.capacity),
        "days_until_85_percent": cap.whole_days(t.days_until_85_percent),
        "days_until_full": cap.whole_days(t.days_until_full),
        "confidence": t.confidence,
        "samples": t.samples,
    }


def _issue_json(i: cap.WorkloadIssue) -> dict[str, Any]:
    return {
        "kind": i.kind,
        "namespace": i.namespace,
        "pod": i.pod,
        "container": i.container,
        "detail": i.detail,
    }


def outlook_json(o: cap.CapacityOutlook, bases: Mapping[str, str | None], window: str) -> dict[str, Any]:
    return drop_none(
        {
            "cpu": _trend_json(o.cpu, bases["cpu"]),
            "memory": _trend_json(o.memory, bases["memory"]),
            "days_until_85_percent": o.days_until_85_percent,
            "projected_exhaustion_date": iso_day(o.projected_exhaustion_date),
            "confidence": o.confidence,
            "forecasted_exhaustion_days": o.forecasted_exhaustion_days,
            "exhausting_resource": o.exhausting_resource,
            "recommended_replica_increase": o.recommended_replica_increase,
            "replica_advice": o.replica_advice,
            "workload_issues": [_issue_json(i) for i in o.issues],
            "window": window,
        }
    )


async def trends_report(
    prom: PrometheusClient, namespaces: Namespaces | None, window: str
) -> dict[str, Any]:
    now = time.time()
    state, outlook, bases = await fetch_outlook(prom, namespaces, window, now)
    body = {
        "status": "success",
        "namespace": namespaces.value if namespaces is not None else "",
        "timestamp": iso(datetime.fromtimestamp(now, UTC)),
        **outlook_json(outlook, bases, window),
    }
    if namespaces is not None and namespaces.glob:
        body["matched_namespaces"] = list(state.namespaces)
    return body


