"""The capacity outlook (R17): CPU and memory combined, workload defects that replicas would not fix, and
how many replicas (if any) to add."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from pipeline.domain.capacity.fit import whole_days
from pipeline.domain.capacity.growth import BoundedGrowth, ResourceTrend, with_forecast
from pipeline.domain.capacity.leaks import LeakAssessment
from pipeline.domain.capacity.rightsizing import format_bytes
from pipeline.domain.capacity.samples import Point, finite_points
from pipeline.domain.capacity.trend import assess_trend

# When the forecast says the capacity runs out within 30 days, suggest replicas that bring utilisation back
# to 70 %.
SCALE_OUT_HORIZON_DAYS = 30
TARGET_UTILISATION = 0.70

IssueKind = Literal["memory_leak", "crash_loop"]


@dataclass(frozen=True, slots=True)
class WorkloadIssue:
    """A container whose usage is a defect, not demand: more replicas would not fix it."""

    kind: IssueKind
    namespace: str
    pod: str
    container: str
    detail: str
    leak: LeakAssessment | None = None  # memory leaks: the assessment
    peak_bytes: float | None = None  # crash loops: the highest working set seen (when it was looked at)

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.pod}"


def leak_issue(namespace: str, pod: str, container: str, leak: LeakAssessment) -> WorkloadIssue:
    limit = (
        f"its {format_bytes(leak.limit_bytes)} limit in {leak.days_until_limit * 24:.1f} h"
        if leak.limit_bytes is not None and leak.days_until_limit is not None
        else f"at its {format_bytes(leak.limit_bytes)} limit"
        if leak.limit_bytes is not None
        else "no memory limit"
    )
    detail = f"memory leak: {leak.reason}; {limit}. Replicas would leak too: fix the leak"
    return WorkloadIssue("memory_leak", namespace, pod, container, detail, leak)


def crash_loop_issue(namespace: str, pod: str, container: str, restarts: float, window: str) -> WorkloadIssue:
    detail = (
        f"crash loop: {restarts:.0f} restarts in the last {window}. Replicas would crash too: "
        "fix the crash first"
    )
    return WorkloadIssue("crash_loop", namespace, pod, container, detail)


def bound_defects(
    trend: ResourceTrend | None, rest: Iterable[Point], issues: Sequence[WorkloadIssue]
) -> ResourceTrend | None:
    """The memory forecast knowing which containers leak or crash-loop.

    A leak grows until its container's limit, where an OOM kill restarts it: it adds at most its limit,
    and extrapolating it onto the namespace's total forecasts an exhaustion that never comes. A
    crash-looping container's working set saw-tooths between restarts: it adds at most its observed peak
    (`peak_bytes`), not a trend. The rest of the usage (`rest`: the total without those containers) is
    assessed on its own; each leak grows at its own rate up to its limit. Direction and changes stay the
    total's: what the data did. Issues without the numbers (a crash loop without `peak_bytes`) are left
    out of the decomposition, so `rest` must still hold their usage.
    """
    parts: list[BoundedGrowth] = []
    names: list[str] = []
    for i in issues:
        if i.kind == "memory_leak" and i.leak is not None:
            parts.append(
                BoundedGrowth(i.leak.current_bytes, max(0.0, i.leak.daily_growth_bytes), i.leak.limit_bytes)
            )
            names.append(f"a memory leak in {i.name} (up to its limit)")
        elif i.kind == "crash_loop" and i.peak_bytes is not None:
            parts.append(BoundedGrowth(i.peak_bytes, 0.0, None))
            names.append(f"a crash loop in {i.name} (up to its peak, {format_bytes(i.peak_bytes)})")
    if trend is None or not parts:
        return trend
    rest_pts = finite_points(rest)
    rest_trend = assess_trend(rest_pts)
    reason = (
        f"{trend.reason}; forecast from the containers without defects ({rest_trend.reason}) "
        f"plus {', '.join(names)}"
    )
    return with_forecast(
        replace(
            trend,
            reason=reason,
            forecast_known=trend.forecast_known and (rest_trend.known or not rest_pts),
            base=rest_pts[-1][1] if rest_pts else 0.0,
            base_growth_per_day=rest_trend.growth_per_day,
            bounded=tuple(parts),
        )
    )


@dataclass(frozen=True, slots=True)
class CapacityOutlook:
    """The engine's `trending` block (and the MCP server's `/capacity/trends` fields)."""

    cpu: ResourceTrend | None
    memory: ResourceTrend | None
    days_until_85_percent: int  # the sooner resource, -1 for none forecast
    projected_exhaustion_date: date | None  # the date of days_until_85_percent (the engine's meaning)
    forecasted_exhaustion_days: int  # days until the sooner resource reaches 100 %, -1 for none forecast
    confidence: float
    recommended_replica_increase: int
    replica_advice: str = ""  # why that many replicas (and why none, when none helps)
    exhausting_resource: str | None = None  # the resource of forecasted_exhaustion_days
    issues: tuple[WorkloadIssue, ...] = ()


_BASIS_REMEDY = {
    "quota": "the namespace's ResourceQuota bounds it: more replicas only use more of the quota; raise the quota",
    "allocatable": "the nodes' allocatable bounds it: more replicas only use more of it; add nodes",
}


def capacity_outlook(
    cpu: ResourceTrend | None,
    memory: ResourceTrend | None,
    *,
    today: date,
    replicas: int,
    per_replica_capacity: bool,
    capacity_basis: str | None = None,
    issues: Sequence[WorkloadIssue] = (),
) -> CapacityOutlook:
    """Combine CPU and memory: the sooner exhaustion wins, and its confidence is the one reported.

    Replicas are suggested only where they help: when the capacity runs out within 30 days and grows with
    each replica (`per_replica_capacity`: the sum of container limits), at least one, enough that usage
    would be at 70 % when today's capacity runs out. Never for a crash loop or a leak without a limit
    (more replicas crash or leak too), nor against a quota or the nodes' allocatable (more replicas only
    use more of it). `replica_advice` says which.
    """
    trends = [(name, t) for name, t in (("cpu", cpu), ("memory", memory)) if t is not None]
    soonest_85 = min(
        (t for _, t in trends if t.days_until_85_percent is not None),
        key=lambda t: t.days_until_85_percent or 0.0,
        default=None,
    )
    full = sorted(
        ((t.days_until_full, name, t) for name, t in trends if t.days_until_full is not None),
        key=lambda x: x[0],
    )
    days_85 = soonest_85.days_until_85_percent if soonest_85 is not None else None
    days_full, resource, exhausting = full[0] if full else (None, None, None)
    confidence = (
        soonest_85.confidence
        if soonest_85 is not None
        else max((t.confidence for _, t in trends), default=0.0)
    )
    increase, advice = _replicas(
        days_full, resource, exhausting, trends, replicas, per_replica_capacity, capacity_basis, issues
    )
    return CapacityOutlook(
        cpu=cpu,
        memory=memory,
        days_until_85_percent=whole_days(days_85),
        projected_exhaustion_date=today + timedelta(days=whole_days(days_85))
        if days_85 is not None
        else None,
        forecasted_exhaustion_days=whole_days(days_full),
        confidence=confidence,
        recommended_replica_increase=increase,
        replica_advice=advice,
        exhausting_resource=resource,
        issues=tuple(issues),
    )


def _replicas(
    days_full: float | None,
    resource: str | None,
    trend: ResourceTrend | None,
    trends: Sequence[tuple[str, ResourceTrend]],
    replicas: int,
    per_replica_capacity: bool,
    capacity_basis: str | None,
    issues: Sequence[WorkloadIssue],
) -> tuple[int, str]:
    if not trends:
        return 0, "no usage history: no forecast"
    if days_full is None or trend is None or resource is None:
        unknown = [f"{name}: {t.reason}" for name, t in trends if not t.forecast_known]
        if unknown:
            return 0, "no exhaustion forecast — " + "; ".join(unknown)
        return 0, "no exhaustion forecast: usage does not grow towards its capacity"
    if days_full > SCALE_OUT_HORIZON_DAYS:
        return 0, (
            f"{resource} capacity lasts {days_full:.0f} days at the fitted growth, beyond the "
            f"{SCALE_OUT_HORIZON_DAYS}-day horizon: no scale-out needed yet"
        )
    when = "is exhausted now" if days_full == 0 else f"runs out in {days_full:.1f} days"
    crashing = [i for i in issues if i.kind == "crash_loop"]
    if crashing:
        names = ", ".join(i.name for i in crashing)
        return 0, f"{resource} {when}, but {names} crash-loops: replicas would crash too; fix the crash first"
    unbounded = [
        i for i in issues if i.kind == "memory_leak" and i.leak is not None and i.leak.limit_bytes is None
    ]
    if resource == "memory" and unbounded:
        names = ", ".join(i.name for i in unbounded)
        return 0, (
            f"memory {when}, driven by a memory leak without a limit in {names}: replicas would leak "
            "too; fix the leak (and set a memory limit)"
        )
    if not per_replica_capacity:
        remedy = _BASIS_REMEDY.get(capacity_basis or "", "its capacity does not grow with replicas")
        return 0, f"{resource} {when}: {remedy}"
    if replicas <= 0:
        return 0, f"{resource} {when}, but no running pods to scale"
    peak = max(1.0, trend.utilisation or 0.0)
    increase = max(1, math.ceil(replicas * peak / TARGET_UTILISATION) - replicas)
    advice = (
        f"{resource} {when}: {increase} more replica(s) ({replicas} → {replicas + increase} pods) raise the "
        f"summed limits so that usage would be at {TARGET_UTILISATION:.0%} when today's capacity runs out"
    )
    if trend.capacity:
        later = trend.days_until(trend.capacity * (replicas + increase) / replicas)
        if later is not None:
            advice += f"; at the fitted growth the larger capacity lasts about {later:.1f} days"
    return increase, advice
