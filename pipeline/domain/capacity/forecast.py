"""Usage forecasts (R8): the statistical baseline for a future hour, its advice, and the next occurrence of
an hour of the week."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pipeline.domain.capacity.fit import Direction
from pipeline.domain.capacity.samples import SECONDS_PER_DAY, Point, clamp01, finite_points, rounded
from pipeline.domain.capacity.trend import assess_trend

# Seasonality used by the statistical baseline: a weekly profile needs two samples of every hour of the
# week (14 days), a daily one two of every hour of the day (2 days). With less, no profile.
WEEKLY_PROFILE_MIN_SPAN_S = 14 * SECONDS_PER_DAY
DAILY_PROFILE_MIN_SPAN_S = 2 * SECONDS_PER_DAY
ROLLING_MEAN_S = SECONDS_PER_DAY  # the engine's current_metrics time_range "24h"

TrendWord = Literal["upward", "downward", "stable"]
_TREND_WORDS: dict[Direction, TrendWord] = {
    "increasing": "upward",
    "decreasing": "downward",
    "stable": "stable",
}


@dataclass(frozen=True, slots=True)
class UsageForecast:
    """The statistical baseline: the value at the target hour as profile offset + linear trend."""

    value: float
    method: str
    confidence: float
    trend: TrendWord
    daily_change_percent: float
    rolling_mean: float  # mean of the last 24 h of samples
    samples: int
    span_s: float


def _bucket(t: float, period: str) -> int:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.weekday() * 24 + moment.hour if period == "week" else moment.hour


@dataclass(frozen=True, slots=True)
class _Profile:
    """The seasonal profile: each hour slot's mean deviation from the overall mean ("" period: none)."""

    period: str  # "week", "day" or ""
    offsets: dict[int, float]

    @classmethod
    def of(cls, pts: Sequence[Point], span: float, overall: float) -> _Profile:
        """The weekly profile with 14 days of history, the daily one with 2, else none."""
        period = (
            "week" if span >= WEEKLY_PROFILE_MIN_SPAN_S else "day" if span >= DAILY_PROFILE_MIN_SPAN_S else ""
        )
        if not period:
            return cls("", {})
        slots: dict[int, list[float]] = {}
        for t, v in pts:
            slots.setdefault(_bucket(t, period), []).append(v)
        return cls(period, {k: math.fsum(vs) / len(vs) - overall for k, vs in slots.items()})

    def offset(self, t: float) -> float:
        return self.offsets.get(_bucket(t, self.period), 0.0) if self.period else 0.0

    @property
    def name(self) -> str:
        return {"week": "hour-of-week mean", "day": "hour-of-day mean", "": "mean"}[self.period]


def forecast_usage(points: Iterable[Point], target: float) -> UsageForecast | None:
    """Forecast the value at unix time `target` from history: an additive model

        value(t) = a + b·t + s[hour of week (or day) of t]

    where s are the profile's mean deviations per hour slot and a + b·t is the least-squares line through
    the deseasonalised samples (used only for a trend `assess_trend` accepts — enough history, a
    significant slope, R² ≥ 0.5 — else the mean). The trend is
    extrapolated at most as far past the last sample as the history reaches back: three hours of data say
    nothing about next week's growth. Confidence = fit quality (1 - RMSE / mean) × the share of the time
    from the first sample to the target that was observed. None without any finite sample; never negative.
    """
    pts = finite_points(points)
    if not pts:
        return None
    last = pts[-1][0]
    span = last - pts[0][0]
    overall = math.fsum(v for _, v in pts) / len(pts)
    profile = _Profile.of(pts, span, overall)
    trend = assess_trend((t, v - profile.offset(t)) for t, v in pts)
    # Only an accepted trend (enough history, a line that fits: see assess_trend) is extrapolated.
    fit = trend.fit if trend.fit is not None and trend.known and trend.growth_per_day != 0 else None

    def level(t: float) -> float:
        return fit.value_at(t) if fit is not None else overall

    value = max(0.0, level(min(target, last + span)) + profile.offset(target))
    quality = _fit_quality(pts, [level(t) + profile.offset(t) for t, _ in pts])
    word: Direction = trend.direction if trend.direction in ("increasing", "decreasing") else "stable"
    recent = [v for t, v in pts if t > last - ROLLING_MEAN_S]
    return UsageForecast(
        value=value if math.isfinite(value) else 0.0,
        method=f"{profile.name} + linear trend" if fit is not None else profile.name,
        confidence=rounded(quality * _observed_share(span, max(0.0, target - last)), 2),
        trend=_TREND_WORDS[word],
        daily_change_percent=rounded(trend.daily_change_percent, 2),
        rolling_mean=math.fsum(recent) / len(recent),
        samples=len(pts),
        span_s=span,
    )


def _fit_quality(pts: Sequence[Point], model: Sequence[float]) -> float:
    """1 - RMSE / mean absolute value, in 0..1 (1 for an all-zero series)."""
    rmse = math.sqrt(math.fsum((v - m) ** 2 for (_, v), m in zip(pts, model, strict=True)) / len(pts))
    scale = math.fsum(abs(v) for _, v in pts) / len(pts)
    return clamp01(1 - rmse / scale) if scale > 0 else 1.0


def _observed_share(span: float, horizon: float) -> float:
    """The share of the time from the first sample to the target that was observed."""
    return span / (span + horizon) if span + horizon > 0 else 0.0


def combined_trend(*trends: tuple[TrendWord, float]) -> TrendWord:
    """One word for several resources: the trend of the one changing fastest (by |%/day|)."""
    moving = [(abs(change), word) for word, change in trends if word != "stable"]
    return max(moving)[1] if moving else "stable"


def usage_recommendation(cpu_percent: float | None, memory_percent: float | None, trend: TrendWord) -> str:
    """Advice for predicted utilisation (percent of capacity), with the MCP server's thresholds."""
    advice: list[str] = []
    if cpu_percent is not None:
        if cpu_percent >= 90:
            advice.append(
                f"CRITICAL: CPU predicted to reach {cpu_percent:.1f}%. Scale out or raise CPU limits."
            )
        elif cpu_percent >= 80:
            advice.append(f"WARNING: CPU predicted to reach {cpu_percent:.1f}%. Plan scaling.")
    if memory_percent is not None:
        if memory_percent >= 90:
            advice.append(f"CRITICAL: memory predicted to reach {memory_percent:.1f}%. Risk of OOM kills.")
        elif memory_percent >= 85:
            advice.append(f"WARNING: memory predicted to reach {memory_percent:.1f}%. Plan scaling.")
    if not advice:
        advice.append(
            {
                "upward": "Usage is trending upward: keep monitoring and prepare to scale.",
                "downward": "Usage is trending downward: capacity could be reduced.",
                "stable": "Usage is stable: the current allocation looks appropriate.",
            }[trend]
        )
    return " ".join(advice)


def next_occurrence(now: datetime, day_of_week: int, hour: int) -> datetime:
    """The next UTC datetime strictly after `now` on `day_of_week` (0 = Monday) at `hour`:00."""
    if not (0 <= day_of_week <= 6 and 0 <= hour <= 23):
        raise ValueError("day_of_week must be 0..6 and hour 0..23")
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    candidate = now.replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(
        days=(day_of_week - now.weekday()) % 7
    )
    return candidate if candidate > now else candidate + timedelta(days=7)
