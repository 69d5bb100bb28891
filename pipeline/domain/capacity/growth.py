"""Usage against capacity (R17): a resource's trend and the days until 85 % and 100 % of its capacity, with
parts of the usage that grow only up to a ceiling."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pipeline.domain.capacity.samples import MAX_FORECAST_DAYS, Point, finite_or_none, finite_points, rounded
from pipeline.domain.capacity.trend import TrendDirection, assess_trend

# The engine's namespace capacity policy (R17): warn at 85 % of capacity (the replica side of the policy is
# in `outlook`).
CAPACITY_WARNING_FRACTION = 0.85


@dataclass(frozen=True, slots=True)
class BoundedGrowth:
    """A part of the usage that grows only up to a ceiling: a leaking container grows until its memory
    limit, where it is OOM-killed and starts over. None: no ceiling (a leak without a limit)."""

    current: float
    growth_per_day: float
    ceiling: float | None


def bounded_days_until(
    base: float, base_growth: float, parts: Sequence[BoundedGrowth], threshold: float
) -> float | None:
    """Days until base + base_growth·d + Σ min(part.current + part.growth·d, part.ceiling) reaches
    `threshold`: 0 when already there, None when it never does (within MAX_FORECAST_DAYS).

    Piecewise linear: each part stops growing at its ceiling, so the sum is solved segment by segment.
    """
    values = (base, base_growth, threshold, *(x for p in parts for x in (p.current, p.growth_per_day)))
    if not all(math.isfinite(x) for x in values):
        return None

    def part_at(p: BoundedGrowth, d: float) -> float:
        value = p.current + max(0.0, p.growth_per_day) * d
        return min(value, max(p.ceiling, p.current)) if p.ceiling is not None else value

    def total(d: float) -> float:
        return base + base_growth * d + math.fsum(part_at(p, d) for p in parts)

    if total(0.0) >= threshold:
        return 0.0
    stops = sorted(
        {
            (p.ceiling - p.current) / p.growth_per_day
            for p in parts
            if p.ceiling is not None and p.growth_per_day > 0 and p.ceiling > p.current
        }
        | {float(MAX_FORECAST_DAYS)}
    )
    start = 0.0
    for stop in stops:
        if stop <= start:
            continue
        middle = (start + stop) / 2
        slope = base_growth + math.fsum(
            max(0.0, p.growth_per_day)
            for p in parts
            if p.ceiling is None or p.current + max(0.0, p.growth_per_day) * middle < p.ceiling
        )
        if slope > 0:
            days = start + (threshold - total(start)) / slope
            if days <= stop:
                return days if math.isfinite(days) and days <= MAX_FORECAST_DAYS else None
        start = stop
    return None


@dataclass(frozen=True, slots=True)
class ResourceTrend:
    """One resource of a namespace (or the cluster) over the window, against its capacity.

    Days are None when no exhaustion is forecast: the usage does not grow towards the threshold, or has no
    trend to extrapolate (`forecast_known` False: `direction` "no_trend" and `reason` say why).
    """

    current: float
    capacity: float | None
    daily_change_percent: float
    weekly_change_percent: float
    direction: TrendDirection
    days_until_85_percent: float | None
    days_until_full: float | None
    confidence: float
    samples: int
    r_squared: float | None = None
    reason: str = ""
    forecast_known: bool = True
    # What the forecast extrapolates: `base` growing at `base_growth_per_day`, plus parts with ceilings.
    base: float = 0.0
    base_growth_per_day: float = 0.0
    bounded: tuple[BoundedGrowth, ...] = ()

    @property
    def utilisation(self) -> float | None:
        return finite_or_none(self.current / self.capacity) if self.capacity else None

    def days_until(self, threshold: float) -> float | None:
        """Days until the usage reaches `threshold` by this trend's forecast (0 when already there)."""
        if self.current >= threshold:
            return 0.0
        return bounded_days_until(self.base, self.base_growth_per_day, self.bounded, threshold)


def with_forecast(trend: ResourceTrend) -> ResourceTrend:
    """The trend with its days until 85 % and 100 % of its capacity (none without a capacity)."""
    cap = trend.capacity
    return replace(
        trend,
        days_until_85_percent=trend.days_until(CAPACITY_WARNING_FRACTION * cap) if cap else None,
        days_until_full=trend.days_until(cap) if cap else None,
    )


def resource_trend(points: Iterable[Point], capacity: float | None) -> ResourceTrend | None:
    """Assess the usage's trend; days until 85 % and 100 % of `capacity` from the last sample at the
    accepted growth (none without a trend: see `assess_trend`)."""
    pts = finite_points(points)
    if not pts:
        return None
    current = pts[-1][1]
    trend = assess_trend(pts)
    cap = finite_or_none(capacity)
    return with_forecast(
        ResourceTrend(
            current=current,
            capacity=cap if cap is not None and cap > 0 else None,
            daily_change_percent=rounded(trend.daily_change_percent, 2),
            weekly_change_percent=rounded(trend.daily_change_percent * 7, 2),
            direction=trend.direction,
            days_until_85_percent=None,
            days_until_full=None,
            confidence=trend.confidence,
            samples=len(pts),
            r_squared=rounded(trend.fit.r_squared, 3) if trend.fit is not None else None,
            reason=trend.reason,
            forecast_known=trend.known,
            base=current,
            base_growth_per_day=trend.growth_per_day,
        )
    )
