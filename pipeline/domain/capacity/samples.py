"""Samples as the capacity analysis takes them: `(unix seconds, value)` pairs, and the guards that keep
NaN, ±Inf and absurd magnitudes (Prometheus sends them) out of every result."""

from __future__ import annotations

import math
from collections.abc import Iterable

Point = tuple[float, float]  # (unix seconds, value)

SECONDS_PER_DAY = 86_400.0
# A linear extrapolation further out than a century says "never", not a date (and keeps dates and Go ints
# in range).
MAX_FORECAST_DAYS = 36_500

# No metric comes near 1e100 (a zettabyte is 1e21 bytes); a value beyond it is corrupt, and its square
# would overflow the least-squares sums. Such values are dropped like NaN.
MAX_MAGNITUDE = 1e100


def usable(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def finite_points(points: Iterable[Point]) -> list[Point]:
    """The usable samples (finite time, finite value within ±MAX_MAGNITUDE), ascending in time, one per
    timestamp (the last)."""
    by_time: dict[float, float] = {}
    for t, v in points:
        if usable(t) and usable(v):
            by_time[float(t)] = float(v)
    return sorted(by_time.items())


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and usable(value) else None


def rounded(value: float, digits: int) -> float:
    result = round(value, digits)
    return result if math.isfinite(result) else 0.0


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0
