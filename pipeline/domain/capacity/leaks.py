"""Memory leaks (R21): steady, linear, monotonic growth of a working set since its last restart."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.domain.capacity.fit import LinearFit, days_until, fit_line
from pipeline.domain.capacity.samples import (
    SECONDS_PER_DAY,
    Point,
    clamp01,
    finite_or_none,
    finite_points,
    rounded,
)

# A drop below half of the previous sample is a restart (OOM kill, crash): the working set starts over, so
# only the samples since the last restart describe the current process.
RESTART_DROP_FRACTION = 0.5
# The analysed stretch needs a dozen samples over at least an hour: warm-up growth lasts minutes.
LEAK_MIN_POINTS = 12
LEAK_MIN_SPAN_S = 3600.0
# Growth must be linear (R² ≥ 0.8: a step or a plateau fits a line at most ~0.75 and usually far less)…
LEAK_MIN_R_SQUARED = 0.8
# …monotonic (the mean rises in at least 80 % of consecutive eighths of the stretch, so noise cannot fake
# it and a cache that filled up and stopped does not count)…
LEAK_MONOTONICITY_BUCKETS = 8
LEAK_MIN_MONOTONICITY = 0.8
# …and material: at least 5 % of the mean working set per day (slower growth needs weeks to matter and is
# indistinguishable from workload drift in a day of data).
LEAK_MIN_DAILY_GROWTH_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class LeakAssessment:
    """The verdict on one container's working set, with the numbers behind it and the reason."""

    current_bytes: float
    daily_growth_bytes: float
    r_squared: float
    monotonicity: float  # share of rising steps between consecutive bucket means, 0..1
    leak_detected: bool
    confidence: float  # certainty of a detected leak (0 when none is detected), like the engine
    restarts: int  # restarts seen in the window (drops to below half)
    samples: int  # samples analysed (since the last restart)
    analysed_span_s: float
    limit_bytes: float | None
    days_until_limit: float | None  # at the fitted growth; None without a limit or without growth
    limit_reached_at: datetime | None
    reason: str


def split_at_restarts(points: Sequence[Point]) -> list[list[Point]]:
    """Consecutive stretches between restarts (a sample below RESTART_DROP_FRACTION of the previous one)."""
    stretches: list[list[Point]] = []
    for t, v in points:
        if not stretches or (stretches[-1][-1][1] > 0 and v < stretches[-1][-1][1] * RESTART_DROP_FRACTION):
            stretches.append([])
        stretches[-1].append((t, v))
    return stretches


def monotonicity(points: Sequence[Point], buckets: int = LEAK_MONOTONICITY_BUCKETS) -> float:
    """The share of consecutive, equally sized groups of samples whose mean is above the previous group's."""
    count = min(buckets, len(points) // 3)
    if count < 2:
        return 0.0
    means = []
    for i in range(count):
        chunk = points[i * len(points) // count : (i + 1) * len(points) // count]
        means.append(math.fsum(v for _, v in chunk) / len(chunk))
    rises = sum(1 for a, b in zip(means, means[1:], strict=False) if b > a)
    return rises / (count - 1)


def assess_memory_leak(points: Iterable[Point], limit_bytes: float | None = None) -> LeakAssessment | None:
    """Is this working-set series a leak? None without any finite sample.

    Analyses the stretch since the last restart: a leak shows as steady, linear, monotonic growth there.
    """
    pts = finite_points(points)
    if not pts:
        return None
    stretches = split_at_restarts(pts)
    current_t, current = pts[-1]
    g = _stretch_growth(stretches[-1], current)
    refusal = _why_not_a_leak(g)
    detected = refusal is None
    limit = finite_or_none(limit_bytes)
    limit = limit if limit is not None and limit > 0 else None
    until_limit = days_until(current, g.growth, limit) if limit is not None and detected else None
    return LeakAssessment(
        current_bytes=current,
        daily_growth_bytes=rounded(g.growth, 1),
        r_squared=rounded(g.r2, 3),
        monotonicity=rounded(g.mono, 3),
        leak_detected=detected,
        confidence=_leak_confidence(g) if detected else 0.0,
        restarts=len(stretches) - 1,
        samples=g.samples,
        analysed_span_s=g.span,
        limit_bytes=limit,
        days_until_limit=rounded(until_limit, 3) if until_limit is not None else None,
        limit_reached_at=(
            datetime.fromtimestamp(current_t, UTC) + timedelta(days=until_limit)
            if until_limit is not None
            else None
        ),
        reason=refusal or f"linear growth of {g.relative:.1%}/day (R² {g.r2:.2f}) since the last restart",
    )


@dataclass(frozen=True, slots=True)
class _Growth:
    """The numbers a leak verdict weighs, over the stretch since the last restart."""

    fit: LinearFit | None
    samples: int
    span: float
    growth: float  # bytes per day (0 without a fit)
    relative: float  # growth as a share of the mean working set
    r2: float
    mono: float


def _stretch_growth(stretch: Sequence[Point], current: float) -> _Growth:
    fit = fit_line(stretch)
    growth = fit.slope_per_day if fit is not None else 0.0
    mean = fit.mean_value if fit is not None else current
    return _Growth(
        fit=fit,
        samples=len(stretch),
        span=stretch[-1][0] - stretch[0][0],
        growth=growth,
        relative=growth / mean if mean > 0 else 0.0,
        r2=fit.r_squared if fit is not None else 0.0,
        mono=monotonicity(stretch),
    )


def _why_not_a_leak(g: _Growth) -> str | None:
    """The first leak criterion the growth fails, in words; None when it meets them all."""
    if g.fit is None or g.samples < LEAK_MIN_POINTS or g.span < LEAK_MIN_SPAN_S:
        return f"too little data since the last restart ({g.samples} samples over {g.span / 60:.0f} min)"
    if g.growth <= 0 or not g.fit.significant:
        return "working set is not growing"
    if g.r2 < LEAK_MIN_R_SQUARED:
        return f"growth is not linear (R² {g.r2:.2f} < {LEAK_MIN_R_SQUARED})"
    if g.mono < LEAK_MIN_MONOTONICITY:
        return f"growth is not monotonic ({g.mono:.2f} < {LEAK_MIN_MONOTONICITY})"
    if g.relative < LEAK_MIN_DAILY_GROWTH_FRACTION:
        return f"growth is slow ({g.relative:.1%}/day < {LEAK_MIN_DAILY_GROWTH_FRACTION:.0%}/day)"
    return None


def _leak_confidence(g: _Growth) -> float:
    """R² × monotonicity × √(share of a day analysed): a day of clean growth is certain."""
    return rounded(clamp01(g.r2 * g.mono * min(g.span / SECONDS_PER_DAY, 1.0) ** 0.5), 2)
