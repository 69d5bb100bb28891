"""Capacity and usage analysis: trend fits, exhaustion forecasts, leak detection, rightsizing, forecasts.

Pure functions over `(unix seconds, value)` samples; no I/O. Every threshold is a named constant with the
reason for its value. Inputs may hold NaN or ±Inf (Prometheus sends them): such samples are dropped on
entry, and no non-finite number ever leaves this module (an unknown value is `None`).

Days are counted from the last observed sample: "in 3 days" means 3 days after the data we have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

Point = tuple[float, float]  # (unix seconds, value)

SECONDS_PER_DAY = 86_400.0
# A line through two points always fits perfectly; a third sample is the first that can disagree with it.
MIN_FIT_POINTS = 3
# A linear extrapolation further out than a century says "never", not a date (and keeps dates and Go ints
# in range).
MAX_FORECAST_DAYS = 36_500
# A slope is only called a trend when it is at least this many standard errors away from zero (≈95 %
# two-sided): below that, noise alone explains it.
TREND_SIGNIFICANCE = 2.0
# The engine's direction threshold: a change under 0.5 % of the mean per day is "stable".
DIRECTION_THRESHOLD_PERCENT_PER_DAY = 0.5


# No metric comes near 1e100 (a zettabyte is 1e21 bytes); a value beyond it is corrupt, and its square
# would overflow the least-squares sums. Such values are dropped like NaN.
MAX_MAGNITUDE = 1e100


def _usable(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def finite_points(points: Iterable[Point]) -> list[Point]:
    """The usable samples (finite time, finite value within ±MAX_MAGNITUDE), ascending in time, one per
    timestamp (the last)."""
    by_time: dict[float, float] = {}
    for t, v in points:
        if _usable(t) and _usable(v):
            by_time[float(t)] = float(v)
    return sorted(by_time.items())


def _finite(value: float | None) -> float | None:
    return value if value is not None and _usable(value) else None


def _round(value: float, digits: int) -> float:
    rounded = round(value, digits)
    return rounded if math.isfinite(rounded) else 0.0


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


# ----------------------------------------------------------------------------------------- line fits
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
    slope = sxy / sxx
    ss_res = max(0.0, math.fsum((v - mean_v - slope * (t - mean_t)) ** 2 for t, v in pts))
    r_squared = 1.0 if syy == 0 else _clamp01(1.0 - ss_res / syy)
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


def trend_confidence(fit: LinearFit | None) -> float:
    """The engine's data-quality score (0..1): 0.4·min(n/168, 1) + 0.4·R² + 0.2·min(span/7 d, 1).

    168 points is a week of hourly data and 7 days a full weekly cycle: more is not more informative.
    """
    if fit is None:
        return 0.0
    score = (
        0.4 * min(fit.n / 168, 1.0) + 0.4 * fit.r_squared + 0.2 * min(fit.span_s / (7 * SECONDS_PER_DAY), 1.0)
    )
    return _round(_clamp01(score), 2)


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
    return _round(fit.slope_per_day / abs(fit.mean_value) * 100, 4)


# ----------------------------------------------------------------------------------------- urgency
# The MCP server tells users critical = full within 7 days, warning = within 30 days; the engine used 3/7.
# The clients win (COMPATIBILITY.md): its messages must be true of what we classify. "Within" is inclusive,
# so the classes agree with the rounded-up `days_until_full` (critical ⇔ days_until_full ≤ 7).
URGENCY_CRITICAL_DAYS = 7
URGENCY_WARNING_DAYS = 30

Urgency = Literal["critical", "warning", "info", "stable", "unknown"]


def urgency(days: float | None, *, known: bool = True) -> Urgency:
    """critical (within 7 days), warning (within 30), info (later), stable (never), unknown (too little data)."""
    if not known:
        return "unknown"
    if days is None:
        return "stable"
    if days <= URGENCY_CRITICAL_DAYS:
        return "critical"
    if days <= URGENCY_WARNING_DAYS:
        return "warning"
    return "info"


def date_after(last_sample: float, days: float | None) -> date | None:
    """The UTC calendar date `days` after `last_sample` (None for never)."""
    if days is None:
        return None
    return (datetime.fromtimestamp(last_sample, UTC) + timedelta(days=days)).date()


# ----------------------------------------------------------------------------------------- disk
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
    total = _finite(total_bytes)
    total = total if total is not None and total > 0 else None
    used = _clamp01((total - avail) / total) if total is not None else None
    fit = fit_line(pts)
    fill_rate = -fit.slope_per_day if fit is not None else 0.0
    # A fill rate indistinguishable from noise never fills the disk.
    days = days_until(-avail, fill_rate if fit is not None and fit.significant else 0.0, 0.0)
    return DiskForecast(
        available_bytes=avail,
        total_bytes=total,
        used_fraction=_round(used, 3) if used is not None else None,
        daily_fill_rate_bytes=_round(fill_rate, 1),
        days_until_full=whole_days(days),
        urgency=urgency(days, known=fit is not None or days == 0),
        projected_full_date=date_after(last_t, days),
        r_squared=_round(fit.r_squared, 3) if fit is not None else None,
        confidence=trend_confidence(fit),
        samples=len(pts),
    )


# ----------------------------------------------------------------------------------------- memory leaks
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
    stretch = stretches[-1]
    limit = _finite(limit_bytes)
    limit = limit if limit is not None and limit > 0 else None
    fit = fit_line(stretch)
    mono = monotonicity(stretch)
    span = stretch[-1][0] - stretch[0][0]
    growth = fit.slope_per_day if fit is not None else 0.0
    mean = fit.mean_value if fit is not None else current
    relative = growth / mean if mean > 0 else 0.0
    r2 = fit.r_squared if fit is not None else 0.0

    if fit is None or len(stretch) < LEAK_MIN_POINTS or span < LEAK_MIN_SPAN_S:
        reason = f"too little data since the last restart ({len(stretch)} samples over {span / 60:.0f} min)"
    elif growth <= 0 or not fit.significant:
        reason = "working set is not growing"
    elif r2 < LEAK_MIN_R_SQUARED:
        reason = f"growth is not linear (R² {r2:.2f} < {LEAK_MIN_R_SQUARED})"
    elif mono < LEAK_MIN_MONOTONICITY:
        reason = f"growth is not monotonic ({mono:.2f} < {LEAK_MIN_MONOTONICITY})"
    elif relative < LEAK_MIN_DAILY_GROWTH_FRACTION:
        reason = f"growth is slow ({relative:.1%}/day < {LEAK_MIN_DAILY_GROWTH_FRACTION:.0%}/day)"
    else:
        reason = ""
    detected = not reason
    if detected:
        reason = f"linear growth of {relative:.1%}/day (R² {r2:.2f}) since the last restart"

    until_limit = days_until(current, growth, limit) if limit is not None and detected else None
    confidence = _round(_clamp01(r2 * mono * min(span / SECONDS_PER_DAY, 1.0) ** 0.5), 2) if detected else 0.0
    return LeakAssessment(
        current_bytes=current,
        daily_growth_bytes=_round(growth, 1),
        r_squared=_round(r2, 3),
        monotonicity=_round(mono, 3),
        leak_detected=detected,
        confidence=confidence,
        restarts=len(stretches) - 1,
        samples=len(stretch),
        analysed_span_s=span,
        limit_bytes=limit,
        days_until_limit=_round(until_limit, 3) if until_limit is not None else None,
        limit_reached_at=(
            datetime.fromtimestamp(current_t, UTC) + timedelta(days=until_limit)
            if until_limit is not None
            else None
        ),
        reason=reason,
    )


# ----------------------------------------------------------------------------------------- rightsizing
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
    reasons: list[str] = []
    cpu_sizing = sizing(u.cpu_request, u.p95_cpu_cores)
    mem_sizing = sizing(u.memory_request, u.p95_memory_bytes)
    rec_cpu_req = u.p95_cpu_cores * REQUEST_HEADROOM if u.p95_cpu_cores is not None else None
    rec_cpu_lim = u.p95_cpu_cores * LIMIT_HEADROOM if u.p95_cpu_cores is not None else None
    rec_mem_req = u.p95_memory_bytes * REQUEST_HEADROOM if u.p95_memory_bytes is not None else None
    rec_mem_lim = u.p95_memory_bytes * LIMIT_HEADROOM if u.p95_memory_bytes is not None else None
    if cpu_sizing != "unknown" and (u.cpu_request or 0) <= 0 and (u.p95_cpu_cores or 0) > 0:
        reasons.append("no CPU request")
    if u.throttle_fraction is not None and u.throttle_fraction > THROTTLING_FRACTION:
        cpu_sizing = "under-provisioned"
        reasons.append(
            f"CPU throttled in {u.throttle_fraction:.0%} of periods: demand above the limit is hidden"
        )
        if u.cpu_limit:
            # Usage is capped by the limit, so P95 + 50 % may be below the demand: raise the limit by half.
            rec_cpu_lim = max(rec_cpu_lim or 0.0, u.cpu_limit * LIMIT_HEADROOM)
    if (
        u.memory_limit
        and u.p95_memory_bytes is not None
        and u.p95_memory_bytes >= MEMORY_LIMIT_PRESSURE * u.memory_limit
    ):
        mem_sizing = "under-provisioned"
        reasons.append(f"P95 working set at {u.p95_memory_bytes / u.memory_limit:.0%} of the memory limit")
    if mem_sizing != "unknown" and (u.memory_request or 0) <= 0 and (u.p95_memory_bytes or 0) > 0:
        reasons.append("no memory request")
    return Rightsizing(
        u,
        _finite(rec_cpu_req),
        _finite(rec_cpu_lim),
        _finite(rec_mem_req),
        _finite(rec_mem_lim),
        cpu_sizing,
        mem_sizing,
        tuple(reasons),
    )


def _sanitised(u: ContainerUsage) -> ContainerUsage:
    def ok(x: float | None) -> float | None:
        return x if x is not None and _usable(x) and x >= 0 else None

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
        _clamp01(throttle) if throttle is not None else None,
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


# ----------------------------------------------------------------------------------------- capacity
# The engine's namespace capacity policy (R17): warn at 85 % of capacity, and when the forecast says the
# capacity runs out within 30 days, suggest replicas that bring utilisation back to 70 %.
CAPACITY_WARNING_FRACTION = 0.85
SCALE_OUT_HORIZON_DAYS = 30
TARGET_UTILISATION = 0.70


@dataclass(frozen=True, slots=True)
class ResourceTrend:
    """One resource of a namespace (or the cluster) over the window, against its capacity."""

    current: float
    capacity: float | None
    daily_change_percent: float
    weekly_change_percent: float
    direction: Direction
    days_until_85_percent: float | None
    days_until_full: float | None
    confidence: float
    samples: int

    @property
    def utilisation(self) -> float | None:
        return _finite(self.current / self.capacity) if self.capacity else None


def resource_trend(points: Iterable[Point], capacity: float | None) -> ResourceTrend | None:
    """Fit the usage; days until 85 % and 100 % of `capacity` from the last sample at the fitted rate."""
    pts = finite_points(points)
    if not pts:
        return None
    current = pts[-1][1]
    fit = fit_line(pts)
    change = daily_change_percent(fit)
    cap = _finite(capacity)
    cap = cap if cap is not None and cap > 0 else None
    growth = fit.slope_per_day if fit is not None and fit.significant else 0.0
    return ResourceTrend(
        current=current,
        capacity=cap,
        daily_change_percent=_round(change, 2),
        weekly_change_percent=_round(change * 7, 2),
        direction=direction(fit, change),
        days_until_85_percent=days_until(current, growth, CAPACITY_WARNING_FRACTION * cap) if cap else None,
        days_until_full=days_until(current, growth, cap) if cap else None,
        confidence=trend_confidence(fit),
        samples=len(pts),
    )


@dataclass(frozen=True, slots=True)
class CapacityOutlook:
    """The engine's `trending` block (and the MCP server's `/capacity/trends` fields)."""

    cpu: ResourceTrend | None
    memory: ResourceTrend | None
    days_until_85_percent: int  # the sooner resource, -1 for never
    projected_exhaustion_date: date | None  # the date of days_until_85_percent (the engine's meaning)
    forecasted_exhaustion_days: int  # days until the sooner resource reaches 100 %, -1 for never
    confidence: float
    recommended_replica_increase: int


def capacity_outlook(
    cpu: ResourceTrend | None,
    memory: ResourceTrend | None,
    *,
    today: date,
    replicas: int,
    per_replica_capacity: bool,
) -> CapacityOutlook:
    """Combine CPU and memory: the sooner exhaustion wins, and its confidence is the one reported.

    `per_replica_capacity`: the capacity grows with each replica (the sum of container limits). Against a
    quota or the cluster's allocatable, more replicas only use more of it, so no replica increase is
    suggested; raising the quota (or adding nodes) is the remedy there.
    """
    trends = [t for t in (cpu, memory) if t is not None]
    soonest_85 = min(
        (t for t in trends if t.days_until_85_percent is not None),
        key=lambda t: t.days_until_85_percent or 0.0,
        default=None,
    )
    full_days = [t.days_until_full for t in trends if t.days_until_full is not None]
    days_85 = soonest_85.days_until_85_percent if soonest_85 is not None else None
    days_full = min(full_days) if full_days else None
    confidence = (
        soonest_85.confidence if soonest_85 is not None else max((t.confidence for t in trends), default=0.0)
    )
    increase = 0
    if (
        per_replica_capacity
        and days_full is not None
        and days_full <= SCALE_OUT_HORIZON_DAYS
        and replicas > 0
    ):
        peak = max((t.utilisation or 0.0 for t in trends), default=0.0)
        if peak > TARGET_UTILISATION:
            increase = max(0, math.ceil(replicas * peak / TARGET_UTILISATION) - replicas)
    return CapacityOutlook(
        cpu=cpu,
        memory=memory,
        days_until_85_percent=whole_days(days_85),
        projected_exhaustion_date=today + timedelta(days=whole_days(days_85))
        if days_85 is not None
        else None,
        forecasted_exhaustion_days=whole_days(days_full),
        confidence=confidence,
        recommended_replica_increase=increase,
    )


# ----------------------------------------------------------------------------------------- forecasts
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


def forecast_usage(points: Iterable[Point], target: float) -> UsageForecast | None:
    """Forecast the value at unix time `target` from history: an additive model

        value(t) = a + b·t + s[hour of week (or day) of t]

    where s are the profile's mean deviations per hour slot and a + b·t is the least-squares line through
    the deseasonalised samples (used only when its slope is significant, else the mean). The trend is
    extrapolated at most as far past the last sample as the history reaches back: three hours of data say
    nothing about next week's growth. Confidence = fit quality (1 - RMSE / mean) × the share of the time
    from the first sample to the target that was observed. None without any finite sample; never negative.
    """
    pts = finite_points(points)
    if not pts:
        return None
    span = pts[-1][0] - pts[0][0]
    period = (
        "week" if span >= WEEKLY_PROFILE_MIN_SPAN_S else "day" if span >= DAILY_PROFILE_MIN_SPAN_S else ""
    )
    overall = math.fsum(v for _, v in pts) / len(pts)
    offsets: dict[int, float] = {}
    if period:
        slots: dict[int, list[float]] = {}
        for t, v in pts:
            slots.setdefault(_bucket(t, period), []).append(v)
        offsets = {k: math.fsum(vs) / len(vs) - overall for k, vs in slots.items()}

    def offset(t: float) -> float:
        return offsets.get(_bucket(t, period), 0.0) if period else 0.0

    fit = fit_line((t, v - offset(t)) for t, v in pts)
    trend_until = min(target, pts[-1][0] + span)
    level = fit.value_at(trend_until) if fit is not None and fit.significant else overall
    value = max(0.0, level + offset(target))
    model = [
        (fit.value_at(t) if fit is not None and fit.significant else overall) + offset(t) for t, _ in pts
    ]
    rmse = math.sqrt(math.fsum((v - m) ** 2 for (_, v), m in zip(pts, model, strict=True)) / len(pts))
    scale = math.fsum(abs(v) for _, v in pts) / len(pts)
    quality = _clamp01(1 - rmse / scale) if scale > 0 else 1.0
    horizon = max(0.0, target - pts[-1][0])
    observed = span / (span + horizon) if span + horizon > 0 else 0.0
    change = daily_change_percent(fit)
    word = direction(fit, change)
    recent = [v for t, v in pts if t > pts[-1][0] - ROLLING_MEAN_S]
    name = {"week": "hour-of-week mean", "day": "hour-of-day mean", "": "mean"}[period]
    return UsageForecast(
        value=value if math.isfinite(value) else 0.0,
        method=f"{name} + linear trend" if fit is not None and fit.significant else name,
        confidence=_round(quality * observed, 2),
        trend=_TREND_WORDS[word],
        daily_change_percent=_round(change, 2),
        rolling_mean=math.fsum(recent) / len(recent),
        samples=len(pts),
        span_s=span,
    )


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


# ----------------------------------------------------------------------------------------- time
def next_occurrence(now: datetime, day_of_week: int, hour: int) -> datetime:
    """The next UTC datetime strictly after `now` on `day_of_week` (0 = Monday) at `hour`:00."""
    if not (0 <= day_of_week <= 6 and 0 <= hour <= 23):
        raise ValueError("day_of_week must be 0..6 and hour 0..23")
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    candidate = now.replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(
        days=(day_of_week - now.weekday()) % 7
    )
    return candidate if candidate > now else candidate + timedelta(days=7)
