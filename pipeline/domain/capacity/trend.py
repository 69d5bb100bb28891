"""The trend gate: a line fitted to usage is extrapolated only when there is enough history and the line
describes the data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pipeline.domain.capacity.fit import (
    LinearFit,
    daily_change_percent,
    direction,
    fit_line,
    trend_confidence,
)
from pipeline.domain.capacity.samples import Point, finite_points

# A line fitted to usage is only extrapolated into a forecast when it can bear it. Enough history: two
# dozen samples over at least an hour (the leak rule's hour: warm-up and restart effects last minutes, and
# with fewer samples R² and the slope's error are noise themselves).
MIN_TREND_POINTS = 24
MIN_TREND_SPAN_S = 3600.0
# And a line that describes the data: R² ≥ 0.5, the line explains at least half of the variation. A
# saw-tooth (a crash loop's working set, R² ≈ 0.1), a step or start-up artefacts can make a slope
# "significant" while the line explains almost nothing; extrapolating it forecasts noise.
MIN_TREND_R_SQUARED = 0.5

TrendDirection = Literal["increasing", "decreasing", "stable", "no_trend"]


@dataclass(frozen=True, slots=True)
class TrendAssessment:
    """Whether a usage series has a trend a forecast may extrapolate, and why (or why not)."""

    fit: LinearFit | None
    direction: TrendDirection
    daily_change_percent: float
    growth_per_day: float  # the slope a forecast extrapolates: 0 for no significant slope or no trend
    confidence: float
    samples: int
    reason: str

    @property
    def known(self) -> bool:
        """A forecast can be made: a trend, or a series without a significant slope ("stable")."""
        return self.direction != "no_trend"


def assess_trend(points: Iterable[Point]) -> TrendAssessment:
    """The line through the usage, accepted as a trend only with enough history and R² ≥ 0.5.

    `no_trend`: too little history, or a significant slope the line does not describe (R² < 0.5);
    `stable`: no significant slope, or a change under the engine's ±0.5 %/day;
    `increasing`/`decreasing`: an accepted trend beyond ±0.5 %/day.
    """
    pts = finite_points(points)
    fit = fit_line(pts)
    change = daily_change_percent(fit)
    span = pts[-1][0] - pts[0][0] if pts else 0.0
    confidence = trend_confidence(fit)
    if fit is None or len(pts) < MIN_TREND_POINTS or span < MIN_TREND_SPAN_S:
        reason = (
            f"too little history for a trend: {len(pts)} samples over {span / 60:.0f} min "
            f"(needs {MIN_TREND_POINTS} over {MIN_TREND_SPAN_S / 60:.0f} min)"
        )
        return TrendAssessment(fit, "no_trend", change, 0.0, confidence, len(pts), reason)
    if not fit.significant:
        reason = f"no significant change ({change:+.2f} %/day is within the noise)"
        return TrendAssessment(fit, "stable", change, 0.0, confidence, len(pts), reason)
    if fit.r_squared < MIN_TREND_R_SQUARED:
        reason = (
            f"usage varies but not along a line (R² {fit.r_squared:.2f} < {MIN_TREND_R_SQUARED}): "
            "no trend to extrapolate"
        )
        return TrendAssessment(fit, "no_trend", change, 0.0, confidence, len(pts), reason)
    word = direction(fit, change)
    reason = (
        f"{change:+.2f} %/day (R² {fit.r_squared:.2f})"
        if word != "stable"
        else f"{change:+.2f} %/day (R² {fit.r_squared:.2f}) is within the engine's ±0.5 %/day"
    )
    return TrendAssessment(fit, word, change, fit.slope_per_day, confidence, len(pts), reason)


def drop_warmup(points: Iterable[Point], range_start: float, warmup_s: float) -> list[Point]:
    """A `rate(...[warmup_s])` series without its warm-up: when the series begins after `range_start`
    (its data starts inside the queried range), its first `warmup_s` seconds were computed over windows
    reaching back before the data, so they ramp up from a fraction of the real rate and fake a trend.

    A series that already has a point at `range_start` had data before it: nothing is dropped.
    """
    pts = finite_points(points)
    if not pts or pts[0][0] <= range_start:
        return pts
    first = pts[0][0]
    return [(t, v) for t, v in pts if t >= first + warmup_s]
