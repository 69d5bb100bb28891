"""Disk exhaustion (R20): when one filesystem fills up at its fitted rate."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from pipeline.domain.capacity.fit import days_until, fit_line, trend_confidence, whole_days
from pipeline.domain.capacity.samples import Point, clamp01, finite_or_none, finite_points, rounded
from pipeline.domain.capacity.urgency import Urgency, date_after, urgency


@dataclass(frozen=True, slots=True)
class DiskForecast:
    """When one filesystem fills up at its fitted rate."""

    available_bytes: float
    total_bytes: float | None
    used_fraction: float | None  # (total - available) / total, 0..1
    daily_fill_rate_bytes: float  # bytes consumed per day; negative when space is being freed
    days_until_full: int  # whole days rounded up, -1 for never (or unknown)
    urgency: Urgency
    projected_full_date: date | None
    r_squared: float | None
    confidence: float
    samples: int


def forecast_disk(available: Iterable[Point], total_bytes: float | None) -> DiskForecast | None:
    """Fit free space over time; the fill rate is minus its slope. None without any finite sample."""
    pts = finite_points(available)
    if not pts:
        return None
    last_t, avail = pts[-1]
    total = finite_or_none(total_bytes)
    total = total if total is not None and total > 0 else None
    used = clamp01((total - avail) / total) if total is not None else None
    fit = fit_line(pts)
    fill_rate = -fit.slope_per_day if fit is not None else 0.0
    # A fill rate indistinguishable from noise never fills the disk.
    days = days_until(-avail, fill_rate if fit is not None and fit.significant else 0.0, 0.0)
    return DiskForecast(
        available_bytes=avail,
        total_bytes=total,
        used_fraction=rounded(used, 3) if used is not None else None,
        daily_fill_rate_bytes=rounded(fill_rate, 1),
        days_until_full=whole_days(days),
        urgency=urgency(days, known=fit is not None or days == 0),
        projected_full_date=date_after(last_t, days),
        r_squared=rounded(fit.r_squared, 3) if fit is not None else None,
        confidence=trend_confidence(fit),
        samples=len(pts),
    )
