"""Rightsizing (R22): requests and limits from P95 usage, and the over/under/right verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.domain.capacity.samples import clamp01, finite_or_none, usable

# The engine's (ADR-019) VPA-style policy: request = P95 + 20 %, limit = P95 + 50 %; a request more than
# twice the P95 wastes capacity, one under 80 % of it is regularly exceeded.
REQUEST_HEADROOM = 1.20
LIMIT_HEADROOM = 1.50
OVER_PROVISIONED_RATIO = 2.0
UNDER_PROVISIONED_RATIO = 0.8
# A container throttled in more than 25 % of its CFS periods (the engine's `throttling_detected`) has
# demand we cannot see: usage is capped at the limit, so its P95 understates the need.
THROTTLING_FRACTION = 0.25
# A P95 working set at 90 % of the memory limit is one spike away from an OOM kill.
MEMORY_LIMIT_PRESSURE = 0.9

Sizing = Literal["over-provisioned", "under-provisioned", "right-sized", "unknown"]


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """What Prometheus knows about one container over the analysis window (None: no data)."""

    namespace: str
    pod: str
    container: str
    p95_cpu_cores: float | None
    p95_memory_bytes: float | None
    cpu_request: float | None
    cpu_limit: float | None
    memory_request: float | None
    memory_limit: float | None
    throttle_fraction: float | None  # throttled CFS periods / periods


@dataclass(frozen=True, slots=True)
class Rightsizing:
    usage: ContainerUsage
    recommended_cpu_request: float | None
    recommended_cpu_limit: float | None
    recommended_memory_request: float | None
    recommended_memory_limit: float | None
    cpu_sizing: Sizing
    memory_sizing: Sizing
    reasons: tuple[str, ...]


def sizing(request: float | None, p95: float | None) -> Sizing:
    """Request vs P95: over (> 2×), under (< 0.8×), right; no request with real usage is under-provisioned."""
    if p95 is None:
        return "unknown"
    req = request or 0.0
    if p95 <= 0:
        return "over-provisioned" if req > 0 else "right-sized"
    ratio = req / p95
    if ratio > OVER_PROVISIONED_RATIO:
        return "over-provisioned"
    if ratio < UNDER_PROVISIONED_RATIO:
        return "under-provisioned"
    return "right-sized"


def recommend(usage: ContainerUsage) -> Rightsizing:
    """Recommended requests/limits from P95 usage, and the over/under/right verdict per resource."""
    u = _sanitised(usage)
    cpu = _cpu_advice(u)
    memory = _memory_advice(u)
    return Rightsizing(
        u,
        finite_or_none(cpu.request),
        finite_or_none(cpu.limit),
        finite_or_none(memory.request),
        finite_or_none(memory.limit),
        cpu.sizing,
        memory.sizing,
        (*cpu.reasons, *memory.reasons),
    )


@dataclass(frozen=True, slots=True)
class _Advice:
    """One resource's verdict, recommended request and limit, and the reasons beyond the P95 ratio."""

    sizing: Sizing
    request: float | None
    limit: float | None
    reasons: tuple[str, ...]


def _headroom(p95: float | None) -> tuple[float | None, float | None]:
    """The request (P95 + 20 %) and limit (P95 + 50 %) for a P95 usage; None when it is unknown."""
    if p95 is None:
        return None, None
    return p95 * REQUEST_HEADROOM, p95 * LIMIT_HEADROOM


def _cpu_advice(u: ContainerUsage) -> _Advice:
    """CPU: a container throttled beyond THROTTLING_FRACTION is under-provisioned whatever its P95 says."""
    size = sizing(u.cpu_request, u.p95_cpu_cores)
    request, limit = _headroom(u.p95_cpu_cores)
    reasons: list[str] = []
    if size != "unknown" and (u.cpu_request or 0) <= 0 and (u.p95_cpu_cores or 0) > 0:
        reasons.append("no CPU request")
    if u.throttle_fraction is not None and u.throttle_fraction > THROTTLING_FRACTION:
        size = "under-provisioned"
        reasons.append(
            f"CPU throttled in {u.throttle_fraction:.0%} of periods: demand above the limit is hidden"
        )
        if u.cpu_limit:
            # Usage is capped by the limit, so P95 + 50 % may be below the demand: raise the limit by half.
            limit = max(limit or 0.0, u.cpu_limit * LIMIT_HEADROOM)
    return _Advice(size, request, limit, tuple(reasons))


def _memory_advice(u: ContainerUsage) -> _Advice:
    """Memory: a P95 working set near the limit (MEMORY_LIMIT_PRESSURE) is under-provisioned."""
    size = sizing(u.memory_request, u.p95_memory_bytes)
    request, limit = _headroom(u.p95_memory_bytes)
    reasons: list[str] = []
    if (
        u.memory_limit
        and u.p95_memory_bytes is not None
        and u.p95_memory_bytes >= MEMORY_LIMIT_PRESSURE * u.memory_limit
    ):
        size = "under-provisioned"
        reasons.append(f"P95 working set at {u.p95_memory_bytes / u.memory_limit:.0%} of the memory limit")
    if size != "unknown" and (u.memory_request or 0) <= 0 and (u.p95_memory_bytes or 0) > 0:
        reasons.append("no memory request")
    return _Advice(size, request, limit, tuple(reasons))


def _sanitised(u: ContainerUsage) -> ContainerUsage:
    def ok(x: float | None) -> float | None:
        return x if x is not None and usable(x) and x >= 0 else None

    throttle = ok(u.throttle_fraction)
    return ContainerUsage(
        u.namespace,
        u.pod,
        u.container,
        ok(u.p95_cpu_cores),
        ok(u.p95_memory_bytes),
        ok(u.cpu_request),
        ok(u.cpu_limit),
        ok(u.memory_request),
        ok(u.memory_limit),
        clamp01(throttle) if throttle is not None else None,
    )


def verdict(r: Rightsizing) -> Sizing:
    """One word per container for the counts, with the engine's precedence: over, then under, then right."""
    sizes = (r.cpu_sizing, r.memory_sizing)
    if "over-provisioned" in sizes:
        return "over-provisioned"
    if "under-provisioned" in sizes:
        return "under-provisioned"
    return "right-sized" if "right-sized" in sizes else "unknown"


def format_cores(cores: float | None) -> str:
    """The engine's CPU strings: `250m` under one core, `1.50` from one core up; empty when unknown."""
    if cores is None or not math.isfinite(cores):
        return ""
    if cores < 0.001:
        return "1m" if cores > 0 else "0"
    if cores < 1.0:
        return f"{round(cores * 1000)}m"
    return f"{cores:.2f}"


def format_bytes(size: float | None) -> str:
    """The engine's memory strings: `1.5Gi`, `300.0Mi`, `12.0Ki`, plain bytes below 1 KiB; empty when unknown."""
    if size is None or not math.isfinite(size):
        return ""
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return str(int(size))
