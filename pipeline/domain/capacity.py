"""Capacity and usage analysis: trend fits, exhaustion forecasts, leak detection, rightsizing, forecasts.

Pure functions over `(unix seconds, value)` samples; no I/O. Every threshold is a named constant with the
reason for its value. Inputs may hold NaN or ±Inf (Prometheus sends them): such samples are dropped on
entry, and no non-finite number ever leaves this module (an unknown value is `None`).

Days are counted from the last observed sample: "in 3 days" means 3 days after the data we have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
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
    return _round(_clamp01(quality * history_coverage(fit)), 2)


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


# ----------------------------------------------------------------------------------------- trend gate
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
        return _finite(self.current / self.capacity) if self.capacity else None

    def days_until(self, threshold: float) -> float | None:
        """Days until the usage reaches `threshold` by this trend's forecast (0 when already there)."""
        if self.current >= threshold:
            return 0.0
        return bounded_days_until(self.base, self.base_growth_per_day, self.bounded, threshold)


def _with_forecast(trend: ResourceTrend) -> ResourceTrend:
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
    cap = _finite(capacity)
    return _with_forecast(
        ResourceTrend(
            current=current,
            capacity=cap if cap is not None and cap > 0 else None,
            daily_change_percent=_round(trend.daily_change_percent, 2),
            weekly_change_percent=_round(trend.daily_change_percent * 7, 2),
            direction=trend.direction,
            days_until_85_percent=None,
            days_until_full=None,
            confidence=trend.confidence,
            samples=len(pts),
            r_squared=_round(trend.fit.r_squared, 3) if trend.fit is not None else None,
            reason=trend.reason,
            forecast_known=trend.known,
            base=current,
            base_growth_per_day=trend.growth_per_day,
        )
    )


# ----------------------------------------------------------------------------------------- workload issues
IssueKind = Literal["memory_leak", "crash_loop"]


@dataclass(frozen=True, slots=True)
class WorkloadIssue:
    """A container whose usage is a defect, not demand: more replicas would not fix it."""

    kind: IssueKind
    namespace: str
    pod: str
    container: str
    detail: str
    leak: LeakAssessment | None = None  # memory leaks: the assessment
    peak_bytes: float | None = None  # crash loops: the highest working set seen (when it was looked at)

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.pod}"


def leak_issue(namespace: str, pod: str, container: str, leak: LeakAssessment) -> WorkloadIssue:
    limit = (
        f"its {format_bytes(leak.limit_bytes)} limit in {leak.days_until_limit * 24:.1f} h"
        if leak.limit_bytes is not None and leak.days_until_limit is not None
        else f"at its {format_bytes(leak.limit_bytes)} limit"
        if leak.limit_bytes is not None
        else "no memory limit"
    )
    detail = f"memory leak: {leak.reason}; {limit}. Replicas would leak too: fix the leak"
    return WorkloadIssue("memory_leak", namespace, pod, container, detail, leak)


def crash_loop_issue(namespace: str, pod: str, container: str, restarts: float, window: str) -> WorkloadIssue:
    detail = (
        f"crash loop: {restarts:.0f} restarts in the last {window}. Replicas would crash too: "
        "fix the crash first"
    )
    return WorkloadIssue("crash_loop", namespace, pod, container, detail)


def bound_defects(
    trend: ResourceTrend | None, rest: Iterable[Point], issues: Sequence[WorkloadIssue]
) -> ResourceTrend | None:
    """The memory forecast knowing which containers leak or crash-loop.

    A leak grows until its container's limit, where an OOM kill restarts it: it adds at most its limit,
    and extrapolating it onto the namespace's total forecasts an exhaustion that never comes. A
    crash-looping container's working set saw-tooths between restarts: it adds at most its observed peak
    (`peak_bytes`), not a trend. The rest of the usage (`rest`: the total without those containers) is
    assessed on its own; each leak grows at its own rate up to its limit. Direction and changes stay the
    total's: what the data did. Issues without the numbers (a crash loop without `peak_bytes`) are left
    out of the decomposition, so `rest` must still hold their usage.
    """
    parts: list[BoundedGrowth] = []
    names: list[str] = []
    for i in issues:
        if i.kind == "memory_leak" and i.leak is not None:
            parts.append(
                BoundedGrowth(i.leak.current_bytes, max(0.0, i.leak.daily_growth_bytes), i.leak.limit_bytes)
            )
            names.append(f"a memory leak in {i.name} (up to its limit)")
        elif i.kind == "crash_loop" and i.peak_bytes is not None:
            parts.append(BoundedGrowth(i.peak_bytes, 0.0, None))
            names.append(f"a crash loop in {i.name} (up to its peak, {format_bytes(i.peak_bytes)})")
    if trend is None or not parts:
        return trend
    rest_pts = finite_points(rest)
    rest_trend = assess_trend(rest_pts)
    reason = (
        f"{trend.reason}; forecast from the containers without defects ({rest_trend.reason}) "
        f"plus {', '.join(names)}"
    )
    return _with_forecast(
        replace(
            trend,
            reason=reason,
            forecast_known=trend.forecast_known and (rest_trend.known or not rest_pts),
            base=rest_pts[-1][1] if rest_pts else 0.0,
            base_growth_per_day=rest_trend.growth_per_day,
            bounded=tuple(parts),
        )
    )


@dataclass(frozen=True, slots=True)
class CapacityOutlook:
    """The engine's `trending` block (and the MCP server's `/capacity/trends` fields)."""

    cpu: ResourceTrend | None
    memory: ResourceTrend | None
    days_until_85_percent: int  # the sooner resource, -1 for none forecast
    projected_exhaustion_date: date | None  # the date of days_until_85_percent (the engine's meaning)
    forecasted_exhaustion_days: int  # days until the sooner resource reaches 100 %, -1 for none forecast
    confidence: float
    recommended_replica_increase: int
    replica_advice: str = ""  # why that many replicas (and why none, when none helps)
    exhausting_resource: str | None = None  # the resource of forecasted_exhaustion_days
    issues: tuple[WorkloadIssue, ...] = ()


_BASIS_REMEDY = {
    "quota": "the namespace's ResourceQuota bounds it: more replicas only use more of the quota; raise the quota",
    "allocatable": "the nodes' allocatable bounds it: more replicas only use more of it; add nodes",
}


def capacity_outlook(
    cpu: ResourceTrend | None,
    memory: ResourceTrend | None,
    *,
    today: date,
    replicas: int,
    per_replica_capacity: bool,
    capacity_basis: str | None = None,
    issues: Sequence[WorkloadIssue] = (),
) -> CapacityOutlook:
    """Combine CPU and memory: the sooner exhaustion wins, and its confidence is the one reported.

    Replicas are suggested only where they help: when the capacity runs out within 30 days and grows with
    each replica (`per_replica_capacity`: the sum of container limits), at least one, enough that usage
    would be at 70 % when today's capacity runs out. Never for a crash loop or a leak without a limit
    (more replicas crash or leak too), nor against a quota or the nodes' allocatable (more replicas only
    use more of it). `replica_advice` says which.
    """
    trends = [(name, t) for name, t in (("cpu", cpu), ("memory", memory)) if t is not None]
    soonest_85 = min(
        (t for _, t in trends if t.days_until_85_percent is not None),
        key=lambda t: t.days_until_85_percent or 0.0,
        default=None,
    )
    full = sorted(
        ((t.days_until_full, name, t) for name, t in trends if t.days_until_full is not None),
        key=lambda x: x[0],
    )
    days_85 = soonest_85.days_until_85_percent if soonest_85 is not None else None
    days_full, resource, exhausting = full[0] if full else (None, None, None)
    confidence = (
        soonest_85.confidence
        if soonest_85 is not None
        else max((t.confidence for _, t in trends), default=0.0)
    )
    increase, advice = _replicas(
        days_full, resource, exhausting, trends, replicas, per_replica_capacity, capacity_basis, issues
    )
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
        replica_advice=advice,
        exhausting_resource=resource,
        issues=tuple(issues),
    )


def _replicas(
    days_full: float | None,
    resource: str | None,
    trend: ResourceTrend | None,
    trends: Sequence[tuple[str, ResourceTrend]],
    replicas: int,
    per_replica_capacity: bool,
    capacity_basis: str | None,
    issues: Sequence[WorkloadIssue],
) -> tuple[int, str]:
    if not trends:
        return 0, "no usage history: no forecast"
    if days_full is None or trend is None or resource is None:
        unknown = [f"{name}: {t.reason}" for name, t in trends if not t.forecast_known]
        if unknown:
            return 0, "no exhaustion forecast — " + "; ".join(unknown)
        return 0, "no exhaustion forecast: usage does not grow towards its capacity"
    if days_full > SCALE_OUT_HORIZON_DAYS:
        return 0, (
            f"{resource} capacity lasts {days_full:.0f} days at the fitted growth, beyond the "
            f"{SCALE_OUT_HORIZON_DAYS}-day horizon: no scale-out needed yet"
        )
    when = "is exhausted now" if days_full == 0 else f"runs out in {days_full:.1f} days"
    crashing = [i for i in issues if i.kind == "crash_loop"]
    if crashing:
        names = ", ".join(i.name for i in crashing)
        return 0, f"{resource} {when}, but {names} crash-loops: replicas would crash too; fix the crash first"
    unbounded = [
        i for i in issues if i.kind == "memory_leak" and i.leak is not None and i.leak.limit_bytes is None
    ]
    if resource == "memory" and unbounded:
        names = ", ".join(i.name for i in unbounded)
        return 0, (
            f"memory {when}, driven by a memory leak without a limit in {names}: replicas would leak "
            "too; fix the leak (and set a memory limit)"
        )
    if not per_replica_capacity:
        remedy = _BASIS_REMEDY.get(capacity_basis or "", "its capacity does not grow with replicas")
        return 0, f"{resource} {when}: {remedy}"
    if replicas <= 0:
        return 0, f"{resource} {when}, but no running pods to scale"
    peak = max(1.0, trend.utilisation or 0.0)
    increase = max(1, math.ceil(replicas * peak / TARGET_UTILISATION) - replicas)
    advice = (
        f"{resource} {when}: {increase} more replica(s) ({replicas} → {replicas + increase} pods) raise the "
        f"summed limits so that usage would be at {TARGET_UTILISATION:.0%} when today's capacity runs out"
    )
    if trend.capacity:
        later = trend.days_until(trend.capacity * (replicas + increase) / replicas)
        if later is not None:
            advice += f"; at the fitted growth the larger capacity lasts about {later:.1f} days"
    return increase, advice


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
    the deseasonalised samples (used only for a trend `assess_trend` accepts — enough history, a
    significant slope, R² ≥ 0.5 — else the mean). The trend is
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

    trend = assess_trend((t, v - offset(t)) for t, v in pts)
    fit = trend.fit
    # Only an accepted trend (enough history, a line that fits: see assess_trend) is extrapolated.
    trending = fit is not None and trend.known and trend.growth_per_day != 0
    trend_until = min(target, pts[-1][0] + span)
    level = fit.value_at(trend_until) if fit is not None and trending else overall
    value = max(0.0, level + offset(target))
    model = [(fit.value_at(t) if fit is not None and trending else overall) + offset(t) for t, _ in pts]
    rmse = math.sqrt(math.fsum((v - m) ** 2 for (_, v), m in zip(pts, model, strict=True)) / len(pts))
    scale = math.fsum(abs(v) for _, v in pts) / len(pts)
    quality = _clamp01(1 - rmse / scale) if scale > 0 else 1.0
    horizon = max(0.0, target - pts[-1][0])
    observed = span / (span + horizon) if span + horizon > 0 else 0.0
    change = trend.daily_change_percent
    word: Direction = trend.direction if trend.direction in ("increasing", "decreasing") else "stable"
    recent = [v for t, v in pts if t > pts[-1][0] - ROLLING_MEAN_S]
    name = {"week": "hour-of-week mean", "day": "hour-of-day mean", "": "mean"}[period]
    return UsageForecast(
        value=value if math.isfinite(value) else 0.0,
        method=f"{name} + linear trend" if trending else name,
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
