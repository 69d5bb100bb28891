"""``POST /api/v1/pattern/analyze``: trends, spikes, level shifts and correlations in metric series.
Pure: no HTTP."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from pipeline.ml.series import (
    Line,
    MetricSample,
    Point,
    SeriesKey,
    capped,
    group,
    iso,
    linear_fit,
    robust_scale,
    robust_z,
    seconds,
    series_name,
)

TREND_R2 = 0.8  # a line explains the series
TREND_MIN_CHANGE = 0.05  # ... and moves it by at least 5 % of its mean over the range
SPIKE_Z = 3.5
LEVEL_SHIFT_Z = 3.0
CORRELATION_R = 0.9
PATTERN_TYPES = ("trend", "spike", "level_shift", "correlation")


class TimeRange(BaseModel):
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if seconds(self.end) < seconds(self.start):
            raise ValueError("end is before start")
        return self


class PatternRequest(BaseModel):
    metrics: list[MetricSample] = Field(min_length=1)
    time_range: TimeRange | None = None
    analysis_type: str = "all"  # one of PATTERN_TYPES narrows the analysis; any other value runs them all


def analyze(request: PatternRequest) -> dict[str, Any]:
    """Trends (R² >= 0.8 and >= 5 % change), spikes (robust z >= 3.5), level shifts (second half's median
    >= 3 robust deviations from the first's, no trend), correlations (Pearson |r| >= 0.9, >= 5 shared
    timestamps). Only samples inside ``time_range`` count."""
    series = group(request.metrics)
    if request.time_range is not None:
        start, end = seconds(request.time_range.start), seconds(request.time_range.end)
        series = {k: [p for p in s if start <= p[0] <= end] for k, s in series.items()}
        series = {k: s for k, s in series.items() if s}
    wanted = {request.analysis_type} if request.analysis_type in PATTERN_TYPES else set(PATTERN_TYPES)
    patterns: list[dict[str, Any]] = []
    insights: list[str] = []
    if request.analysis_type not in (*PATTERN_TYPES, "all"):
        insights.append(
            f"analysis_type {request.analysis_type!r} is not one of {', '.join(PATTERN_TYPES)}: ran all"
        )
    for key, points in series.items():
        line = linear_fit(points) if len(points) >= 5 else None
        trending = line is not None and _is_trend(points, line)
        if "trend" in wanted and line is not None and trending:
            patterns.append(_trend(key, points, line))
            values = [v for _, v in points]
            if line.slope > 0 and all(0.0 <= v <= 1.0 for v in values) and line.intercept < 1.0:
                minutes = (1.0 - line.intercept) / line.slope / 60
                insights.append(
                    f"{series_name(key)} reaches 1.0 in about {minutes:.0f} min at its current rate"
                )
        if "spike" in wanted and len(points) >= 5:
            patterns += _spikes(key, points)
        if "level_shift" in wanted and len(points) >= 8 and not trending:
            patterns += _level_shift(key, points)
    if "correlation" in wanted:
        patterns += _correlations(series)
    insights.insert(
        0,
        f"{len(patterns)} pattern(s) in {len(series)} series"
        if patterns
        else f"no trend, spike, level shift or correlation in {len(series)} series",
    )
    confidence_ = statistics.fmean(p["confidence"] for p in patterns) if patterns else 0.0
    return {
        "patterns": patterns,
        "insights": insights,
        "summary": {"patterns_found": len(patterns), "confidence": confidence_},
    }


def _is_trend(points: Sequence[Point], line: Line) -> bool:
    span = points[-1][0] - points[0][0]
    mean = statistics.fmean(v for _, v in points)
    return line.r2 >= TREND_R2 and abs(line.slope * span) >= TREND_MIN_CHANGE * max(abs(mean), 1e-12)


def _pattern(
    kind: str, description: str, keys: Sequence[SeriesKey], confidence_: float, start: float, end: float
) -> dict[str, Any]:
    return {
        "type": kind,
        "description": description,
        "metrics": [series_name(k) for k in keys],
        "confidence": confidence_,
        "start_time": iso(start),
        "end_time": iso(end),
    }


def _trend(key: SeriesKey, points: Sequence[Point], line: Line) -> dict[str, Any]:
    span = points[-1][0] - points[0][0]
    first = line.intercept - line.slope * span
    verb = "rises" if line.slope > 0 else "falls"
    return _pattern(
        "trend",
        f"{series_name(key)} {verb} steadily: {first:.4g} -> {line.intercept:.4g} "
        f"({line.slope * 3600:+.4g}/h, R² {line.r2:.2f})",
        [key],
        line.r2,
        points[0][0],
        points[-1][0],
    )


def _spikes(key: SeriesKey, points: Sequence[Point]) -> list[dict[str, Any]]:
    values = [v for _, v in points]
    hits = [(t, robust_z(v, values)) for t, v in points]
    hits = [(t, z) for t, z in hits if abs(z) >= SPIKE_Z]
    if not hits:
        return []
    top = max(abs(z) for _, z in hits)
    return [
        _pattern(
            "spike",
            f"{series_name(key)} has {len(hits)} point(s) up to {top:.1f} robust deviations from its median",
            [key],
            top / (top + SPIKE_Z),
            hits[0][0],
            hits[-1][0],
        )
    ]


def _level_shift(key: SeriesKey, points: Sequence[Point]) -> list[dict[str, Any]]:
    half = len(points) // 2
    before, after = [v for _, v in points[:half]], [v for _, v in points[half:]]
    m1, m2 = statistics.median(before), statistics.median(after)
    spread = [abs(v - m1) for v in before] + [abs(v - m2) for v in after]
    size = abs(capped(m2 - m1, robust_scale(spread)))
    if size < LEVEL_SHIFT_Z:
        return []
    return [
        _pattern(
            "level_shift",
            f"{series_name(key)} moved from about {m1:.4g} to about {m2:.4g} at {iso(points[half][0])}",
            [key],
            size / (size + LEVEL_SHIFT_Z),
            points[0][0],
            points[-1][0],
        )
    ]


def _correlations(series: dict[SeriesKey, list[Point]]) -> list[dict[str, Any]]:
    keys = sorted(series)
    found = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            first, second = dict(series[a]), dict(series[b])
            shared = sorted(set(first) & set(second))
            if len(shared) < 5:
                continue
            xs, ys = [first[t] for t in shared], [second[t] for t in shared]
            if statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
                continue
            r = statistics.correlation(xs, ys)
            if abs(r) >= CORRELATION_R:
                how = "together" if r > 0 else "in opposition"
                found.append(
                    _pattern(
                        "correlation",
                        f"{series_name(a)} and {series_name(b)} move {how} (r = {r:.2f})",
                        [a, b],
                        abs(r),
                        shared[0],
                        shared[-1],
                    )
                )
    return found
