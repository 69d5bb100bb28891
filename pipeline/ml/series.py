"""Pure statistics over metric series, shared by the reference service's detect, forecast and patterns:
samples grouped into series, robust deviations, the least-squares line."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from pipeline.api.errors import ApiError
from pipeline.domain.capacity import fit_line

MAX_DEVIATION = 1000.0  # a change from a constant series has no finite robust deviation: report this
MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533

Point = tuple[float, float]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class MetricSample(BaseModel):
    name: str = Field(min_length=1)
    value: float = Field(strict=True, allow_inf_nan=False)
    timestamp: datetime  # RFC 3339 or unix seconds; naive means UTC
    labels: dict[str, str] = Field(default_factory=dict)



def seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        raise ApiError(400, "OUT_OF_RANGE", f"a timestamp is out of range: {seconds:.0f}") from None


def group(metrics: Sequence[MetricSample]) -> dict[SeriesKey, list[Point]]:
    """Samples by (name, labels), ascending in time; a repeated timestamp keeps the last value sent."""
    by_key: dict[SeriesKey, dict[float, float]] = {}
    for m in metrics:
        key = (m.name, tuple(sorted(m.labels.items())))
        by_key.setdefault(key, {})[seconds(m.timestamp)] = m.value
    return {key: sorted(points.items()) for key, points in by_key.items()}


def series_name(key: SeriesKey) -> str:
    name, labels = key
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "")


def robust_scale(deviations: Sequence[float]) -> float:
    """A robust standard deviation from absolute deviations: 1.4826 x their median, or, when more than
    half are 0, 1.2533 x their mean (the modified z-score's fallback); 0 only for a constant series."""
    mad = statistics.median(deviations)
    return MAD_TO_SIGMA * mad if mad else MEAN_AD_TO_SIGMA * statistics.fmean(deviations)


def robust_z(value: float, reference: Sequence[float]) -> float:
    """(value - median) / robust_scale, capped at ±MAX_DEVIATION (also for a constant reference)."""
    centre = statistics.median(reference)
    return capped(value - centre, robust_scale([abs(x - centre) for x in reference]))


def capped(difference: float, scale: float) -> float:
    if scale == 0:
        return 0.0 if difference == 0 else math.copysign(MAX_DEVIATION, difference)
    return max(-MAX_DEVIATION, min(MAX_DEVIATION, difference / scale))


@dataclass(frozen=True, slots=True)
class Line:
    slope: float  # per second
    intercept: float  # the fitted value at the last timestamp
    r2: float  # 1.0 for a constant series (the line explains it fully)


def linear_fit(points: Sequence[Point]) -> Line | None:
    """The project's least-squares fit (`capacity.fit_line`), expressed at the last timestamp."""
    fit = fit_line(points)
    if fit is None:
        return None
    return Line(fit.slope, fit.value_at(points[-1][0]), fit.r_squared)


def severity(deviation: float, threshold: float) -> str:
    size = abs(deviation)
    return "high" if size >= 3 * threshold else "medium" if size >= 2 * threshold else "low"


def duration_s(text: str) -> int:
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]
