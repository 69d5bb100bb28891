"""Least-squares lines through usage samples, and what they say: days until a threshold, direction,
confidence."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pipeline.domain.capacity.samples import (
    MAX_FORECAST_DAYS,
    SECONDS_PER_DAY,
    Point,
    clamp01,
    finite_points,
    rounded,
)

# A line through two points always fits perfectly; a third sample is the first that can disagree with it.
MIN_FIT_POINTS = 3
# A slope is only called a trend when it is at least this many standard errors away from zero (≈95 %
# two-sided): below that, noise alone explains it.
TREND_SIGNIFICANCE = 2.0
# The engine's direction threshold: a change under 0.5 % of the mean per day is "stable".
DIRECTION_THRESHOLD_PERCENT_PER_DAY = 0.5


@dataclass(frozen=True, slots=True)
class LinearFit:
    """An ordinary least-squares line `value = mean_value + slope * (t - mean_t)` and its quality."""

    slope: float  # value units per second
    mean_t: float
    mean_value: float
    r_squared: float  # 0..1; 1 for a series without variance (a flat line explains all of it)
    slope_stderr: float  # standard error of the slope; 0 when the residuals are 0
    n: int
    start: float
    end: float

    @property
    def span_s(self) -> float:
        return self.end - self.start

    @property
    def slope_per_day(self) -> float:
        return self.slope * SECONDS_PER_DAY

    def value_at(self, t: float) -> float:
        return self.mean_value + self.slope * (t - self.mean_t)

    @property
    def significant(self) -> bool:
        """The slope differs from zero by more than noise (TREND_SIGNIFICANCE standard errors)."""
        return self.slope != 0 and abs(self.slope) > TREND_SIGNIFICANCE * self.slope_stderr


def fit_line(points: Iterable[Point]) -> LinearFit | None:
    """Least squares over the finite samples; None with fewer than MIN_FIT_POINTS or a zero time span.

    Times are centred on their mean before squaring: unix seconds squared lose precision in float64.
    """
    pts = finite_points(points)
    n = len(pts)
    if n < MIN_FIT_POINTS or pts[-1][0] <= pts[0][0]:
        return None
    mean_t = math.fsum(t for t, _ in pts) / n
    mean_v = math.fsum(v for _, v in pts) / n
    sxx = math.fsum((t - mean_t) ** 2 for t, _ in pts)
    sxy = math.fsum((t - mean_t) * (v - mean_v) for t, v in pts)
    syy = math.fsum((v - mean_v) ** 2 for _, v in pts)
    if sxx <= 0.0:  # times that differ, but too little to measure at their magnitude
        return None
    slope = sxy / sxx
    ss_res = max(0.0, math.fsum((v - mean_v - slope * (t - mean_t)) ** 2 for t, v in pts))
    r_squared = 1.0 if syy == 0 else clamp01(1.0 - ss_res / syy)
    stderr = math.sqrt(ss_res / (n - 2) / sxx) if n > 2 else 0.0
    if not all(math.isfinite(x) for x in (slope, mean_v, stderr)):
        return None
    return LinearFit(slope, mean_t, mean_v, r_squared, stderr, n, pts[0][0], pts[-1][0])


def days_until(current: float, rate_per_day: float, threshold: float) -> float | None:
    """Days until `current`, changing by `rate_per_day`, reaches `threshold` from below.

    0 when already there; None when it never gets there (not growing, or beyond MAX_FORECAST_DAYS).
    """
    if not all(math.isfinite(x) for x in (current, rate_per_day, threshold)):
        return None
    if current >= threshold:
        return 0.0
    if rate_per_day <= 0:
        return None
    days = (threshold - current) / rate_per_day
    return days if math.isfinite(days) and days <= MAX_FORECAST_DAYS else None


def whole_days(days: float | None) -> int:
    """Days as the contract's integer: rounded up (a deadline in 2.1 days is missed on day 3), -1 for never."""
    return -1 if days is None else math.ceil(days)


def history_coverage(fit: LinearFit) -> float:
    """How much history backs a fit (0..1): ½·min(n/168, 1) + ½·min(span/7 d, 1).

    168 points is a week of hourly data and 7 days a full weekly cycle: more is not more informative.
    """
    return 0.5 * min(fit.n / 168, 1.0) + 0.5 * min(fit.span_s / (7 * SECONDS_PER_DAY), 1.0)


def trend_confidence(fit: LinearFit | None) -> float:
    """How far a fitted line's verdict can be trusted (0..1).

    A significant slope (a trend): R² × coverage — a line that explains little of the data earns little
    confidence however many points there are (the engine's additive 0.4·min(n/168,1) + 0.4·R² + 0.2·… gave
    0.4 to a saw-tooth). No significant slope ("stable"): coverage alone — a flat line explains none of
    the noise around it by construction (R² ≈ 0), and the more history shows no slope, the surer it is.
    """
    if fit is None:
        return 0.0
    quality = fit.r_squared if fit.significant else 1.0
    return rounded(clamp01(quality * history_coverage(fit)), 2)


Direction = Literal["increasing", "decreasing", "stable"]


def direction(fit: LinearFit | None, daily_change_percent: float) -> Direction:
    """`increasing`/`decreasing` when the change beats both the engine's ±0.5 %/day and the noise."""
    if fit is None or not fit.significant or abs(daily_change_percent) <= DIRECTION_THRESHOLD_PERCENT_PER_DAY:
        return "stable"
    return "increasing" if daily_change_percent > 0 else "decreasing"


def daily_change_percent(fit: LinearFit | None) -> float:
    """The slope per day as a percentage of the series' mean (0 for an unknown fit or a zero mean)."""
    if fit is None or fit.mean_value == 0:
        return 0.0
    return rounded(fit.slope_per_day / abs(fit.mean_value) * 100, 4)
