"""Capacity exhaustion, usage forecasts, the trend gate, bounded growth, replica advice, and that no
function returns a non-finite number."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain import capacity as cap
from tests.unit.capacity_series import DAY, HOUR, T0, GiB, MiB, line, sawtooth


# ----------------------------------------------------------------------------------------- capacity
def test_growing_memory_against_container_limits_forecasts_85_percent_and_replicas() -> None:
    # 2 replicas with 1 GiB limits each; usage grew 0.1 GiB/day for 5 days from 1 GiB to ~1.5 GiB (~75 %).
    memory = cap.resource_trend(line(slope_per_day=0.1 * GiB, start=1.0 * GiB, n=5 * 24, step=HOUR), 2 * GiB)
    cpu = cap.resource_trend(line(slope_per_day=0.0, start=0.5, n=5 * 24, step=HOUR), 2.0)
    assert memory is not None and cpu is not None
    assert memory.direction == "increasing" and cpu.direction == "stable"
    current = memory.current
    assert memory.days_until_85_percent == pytest.approx((0.85 * 2 * GiB - current) / (0.1 * GiB), rel=1e-6)
    assert memory.days_until_full == pytest.approx((2 * GiB - current) / (0.1 * GiB), rel=1e-6)
    assert cpu.days_until_85_percent is None
    assert memory.days_until_85_percent is not None and memory.days_until_full is not None
    assert memory.utilisation is not None
    today = date(2025, 1, 1)
    o = cap.capacity_outlook(cpu, memory, today=today, replicas=2, per_replica_capacity=True)
    assert o.days_until_85_percent == math.ceil(memory.days_until_85_percent)
    assert o.projected_exhaustion_date == today + timedelta(days=o.days_until_85_percent)
    assert o.forecasted_exhaustion_days == math.ceil(memory.days_until_full)
    assert o.confidence == memory.confidence
    # utilisation ~0.75 > 0.70: ceil(2 * 0.75 / 0.7) - 2 = 1 more replica
    assert o.recommended_replica_increase == math.ceil(2 * memory.utilisation / 0.7) - 2 == 1
    quota = cap.capacity_outlook(cpu, memory, today=today, replicas=2, per_replica_capacity=False)
    assert quota.recommended_replica_increase == 0  # more replicas only use more of a quota


def test_flat_usage_never_exhausts() -> None:
    flat = cap.resource_trend(line(slope_per_day=0.0, start=0.5, n=48, step=HOUR, noise=0.01), 2.0)
    o = cap.capacity_outlook(flat, None, today=date(2025, 1, 1), replicas=3, per_replica_capacity=True)
    assert (o.days_until_85_percent, o.projected_exhaustion_date, o.forecasted_exhaustion_days) == (
        -1,
        None,
        -1,
    )
    assert o.recommended_replica_increase == 0
    assert o.confidence == (flat.confidence if flat else None)


def test_usage_above_85_percent_is_due_now_and_unknown_capacity_is_never() -> None:
    high = cap.resource_trend([(T0 + i * HOUR, 1.8) for i in range(10)], 2.0)
    assert high is not None and high.days_until_85_percent == 0.0 and high.utilisation == pytest.approx(0.9)
    no_capacity = cap.resource_trend(line(slope_per_day=1.0, start=1.0, n=10), None)
    assert (
        no_capacity is not None
        and no_capacity.days_until_85_percent is None
        and no_capacity.utilisation is None
    )
    assert cap.resource_trend([(T0, math.nan)], 2.0) is None
    empty = cap.capacity_outlook(None, None, today=date(2025, 1, 1), replicas=0, per_replica_capacity=True)
    assert (empty.days_until_85_percent, empty.confidence, empty.recommended_replica_increase) == (-1, 0.0, 0)


# ----------------------------------------------------------------------------------------- forecasts
def daily_wave(
    days: float, step: float = HOUR, base: float = 10.0, amplitude: float = 4.0
) -> list[tuple[float, float]]:
    start = datetime(2025, 1, 6, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
    n = int(days * DAY / step)
    return [
        (start + i * step, base + amplitude * math.sin(2 * math.pi * (i * step % DAY) / DAY))
        for i in range(n)
    ]


def test_flat_history_forecasts_its_mean() -> None:
    f = cap.forecast_usage([(T0 + i * 60, 2.0) for i in range(100)], T0 + DAY)
    assert f is not None
    assert (f.value, f.method, f.trend, f.rolling_mean, f.samples) == (2.0, "mean", "stable", 2.0, 100)


def test_daily_profile_predicts_the_value_of_the_target_hour() -> None:
    history = daily_wave(days=3)
    last = history[-1][0]
    target = last - last % DAY + DAY + 6 * HOUR  # tomorrow 06:00, the crest of the wave
    f = cap.forecast_usage(history, target)
    assert f is not None
    assert f.method == "hour-of-day mean"
    assert f.value == pytest.approx(14.0, abs=1e-6)
    trough = cap.forecast_usage(history, target + 12 * HOUR)
    assert trough is not None and trough.value == pytest.approx(6.0, abs=1e-6)
    assert f.confidence > 0.8


def test_weekly_profile_needs_two_weeks() -> None:
    start = datetime(2025, 1, 6, tzinfo=UTC).timestamp()  # Monday
    busy_mondays = [(start + i * HOUR, 9.0 if (i // 24) % 7 == 0 else 1.0) for i in range(15 * 24)]
    monday = cap.next_occurrence(datetime.fromtimestamp(busy_mondays[-1][0], UTC), 0, 12).timestamp()
    f = cap.forecast_usage(busy_mondays, monday)
    assert f is not None
    assert f.method == "hour-of-week mean"
    assert f.value == pytest.approx(9.0, abs=1e-6)
    tuesday = cap.forecast_usage(busy_mondays, monday + DAY)
    assert tuesday is not None and tuesday.value == pytest.approx(1.0, abs=1e-6)


def test_a_significant_trend_is_extrapolated_but_not_beyond_the_history_span() -> None:
    history = line(slope_per_day=24.0, start=0.0, n=181)  # +1 per hour over 3 hours
    last_t, last_v = history[-1]
    near = cap.forecast_usage(history, last_t + HOUR)
    assert near is not None
    assert near.method == "mean + linear trend" and near.trend == "upward"
    assert near.value == pytest.approx(last_v + 1.0, rel=1e-6)
    far = cap.forecast_usage(history, last_t + 3 * DAY)
    assert far is not None
    assert far.value == pytest.approx(last_v + 3.0, rel=1e-6)  # capped at +3 hours of growth
    assert far.confidence < near.confidence  # observed share of the time to the target shrinks


def test_forecasts_are_never_negative_and_handle_nan_and_empty_input() -> None:
    falling = line(slope_per_day=-100.0, start=1.0, n=100)
    f = cap.forecast_usage(falling, falling[-1][0] + DAY)
    assert f is not None and f.value == 0.0 and f.trend == "downward"
    assert cap.forecast_usage([], T0) is None
    assert cap.forecast_usage([(T0, math.nan), (T0 + 1, math.inf)], T0) is None
    single = cap.forecast_usage([(T0, 3.0)], T0 + HOUR)
    assert single is not None and single.value == 3.0 and single.confidence == 0.0


def test_rolling_mean_covers_the_last_24_hours() -> None:
    history = [(T0 + i * HOUR, 1.0 if i < 48 else 5.0) for i in range(72)]
    f = cap.forecast_usage(history, T0 + 80 * HOUR)
    assert f is not None and f.rolling_mean == 5.0


def test_combined_trend_and_recommendations() -> None:
    assert cap.combined_trend(("stable", 0.1), ("stable", 9.0)) == "stable"
    assert cap.combined_trend(("upward", 2.0), ("downward", -5.0)) == "downward"
    assert cap.combined_trend() == "stable"
    assert cap.usage_recommendation(95.0, 10.0, "stable").startswith("CRITICAL: CPU")
    assert cap.usage_recommendation(80.0, 10.0, "stable").startswith("WARNING: CPU")
    assert cap.usage_recommendation(10.0, 90.0, "stable").startswith("CRITICAL: memory")
    assert cap.usage_recommendation(10.0, 85.0, "stable").startswith("WARNING: memory")
    assert "upward" in cap.usage_recommendation(10.0, 10.0, "upward")
    assert "downward" in cap.usage_recommendation(None, None, "downward")
    assert "stable" in cap.usage_recommendation(79.9, 84.9, "stable")


# ----------------------------------------------------------------------------------------- next occurrence
WED_1030 = datetime(2025, 1, 8, 10, 30, tzinfo=UTC)  # a Wednesday (day_of_week 2)


@pytest.mark.parametrize(
    ("now", "day", "hour", "expected"),
    [
        (WED_1030, 2, 11, datetime(2025, 1, 8, 11, tzinfo=UTC)),  # later today
        (WED_1030, 2, 10, datetime(2025, 1, 15, 10, tzinfo=UTC)),  # this hour has begun: next week
        (WED_1030.replace(minute=0), 2, 10, datetime(2025, 1, 15, 10, tzinfo=UTC)),  # strictly future
        (WED_1030, 2, 9, datetime(2025, 1, 15, 9, tzinfo=UTC)),
        (WED_1030, 4, 0, datetime(2025, 1, 10, 0, tzinfo=UTC)),  # Friday
        (WED_1030, 0, 23, datetime(2025, 1, 13, 23, tzinfo=UTC)),  # next Monday
        (WED_1030, 6, 12, datetime(2025, 1, 12, 12, tzinfo=UTC)),  # Sunday
        (datetime(2025, 12, 31, 23, 30, tzinfo=UTC), 3, 0, datetime(2026, 1, 1, 0, tzinfo=UTC)),  # year end
        (WED_1030.replace(tzinfo=None), 2, 11, datetime(2025, 1, 8, 11, tzinfo=UTC)),  # naive = UTC
        # 10:30 at UTC+2 is 08:30 UTC: 09:00 UTC the same Wednesday is still ahead.
        (WED_1030.replace(tzinfo=timezone(timedelta(hours=2))), 2, 9, datetime(2025, 1, 8, 9, tzinfo=UTC)),
    ],
)
def test_next_occurrence(now: datetime, day: int, hour: int, expected: datetime) -> None:
    result = cap.next_occurrence(now, day, hour)
    assert result == expected and result.tzinfo == UTC
    assert result.weekday() == day and result.hour == hour and result > now.replace(tzinfo=now.tzinfo or UTC)
    assert result - now.replace(tzinfo=now.tzinfo or UTC) <= timedelta(days=7)


@pytest.mark.parametrize(("day", "hour"), [(-1, 0), (7, 0), (0, -1), (0, 24)])
def test_next_occurrence_rejects_out_of_range_values(day: int, hour: int) -> None:
    with pytest.raises(ValueError):
        cap.next_occurrence(WED_1030, day, hour)


# ----------------------------------------------------------------------------------------- nothing non-finite
def _numbers(obj: object) -> list[float]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [x for f in dataclasses.fields(obj) for x in _numbers(getattr(obj, f.name))]
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, tuple | list):
        return [x for item in obj for x in _numbers(item)]
    return []


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1e300, math.nan, math.inf]),
)
series = st.lists(st.tuples(st.floats(min_value=0, max_value=4e9) | st.just(math.nan), values), max_size=60)
optional = st.none() | values


@settings(max_examples=300, deadline=None)
@given(points=series, limit=optional, target=st.floats(min_value=0, max_value=4e9))
def test_no_function_returns_a_non_finite_number(
    points: list[tuple[float, float]], limit: float | None, target: float
) -> None:
    results: list[object] = [
        cap.fit_line(points),
        cap.forecast_disk(points, limit),
        cap.assess_memory_leak(points, limit),
        cap.resource_trend(points, limit),
        cap.forecast_usage(points, target),
    ]
    trend = results[3]
    assert trend is None or isinstance(trend, cap.ResourceTrend)
    results.append(
        cap.capacity_outlook(trend, trend, today=date(2025, 1, 1), replicas=3, per_replica_capacity=True)
    )
    for result in results:
        assert all(math.isfinite(x) for x in _numbers(result)), result


@settings(max_examples=300, deadline=None)
@given(st.lists(optional, min_size=7, max_size=7))
def test_rightsizing_never_returns_a_non_finite_number(numbers: list[float | None]) -> None:
    r = cap.recommend(cap.ContainerUsage("ns", "pod", "c", *numbers))
    assert all(math.isfinite(x) for x in _numbers(r)), r
    assert cap.format_cores(r.recommended_cpu_limit) is not None


# ----------------------------------------------------------------------------------------- trend gate
def test_a_trend_needs_enough_history() -> None:
    short = cap.assess_trend(line(slope_per_day=10.0, start=1.0, n=20, step=60))  # 20 samples
    brief = cap.assess_trend(line(slope_per_day=10.0, start=1.0, n=50, step=60))  # 49 minutes
    for trend in (short, brief):
        assert (trend.direction, trend.growth_per_day, trend.known) == ("no_trend", 0.0, False)
        assert "too little history" in trend.reason
    enough = cap.assess_trend(line(slope_per_day=10.0, start=1.0, n=61, step=60))
    assert enough.direction == "increasing" and enough.growth_per_day == pytest.approx(10.0)


def test_a_saw_tooth_is_no_trend_and_forecasts_no_exhaustion() -> None:
    points = sawtooth(n=400, step=HOUR)
    fit = cap.fit_line(points)
    assert fit is not None and fit.significant  # the old rule called it a trend
    trend = cap.assess_trend(points)
    assert (trend.direction, trend.growth_per_day) == ("no_trend", 0.0)
    assert "not along a line" in trend.reason and f"{fit.r_squared:.2f}" in trend.reason
    memory = cap.resource_trend(points, 512.0)  # 440 of 512 at the peak, growing by the old rule
    assert memory is not None and memory.direction == "no_trend" and not memory.forecast_known
    assert (memory.days_until_85_percent, memory.days_until_full) == (None, None)
    assert memory.confidence <= round(fit.r_squared, 2) + 0.01
    o = cap.capacity_outlook(None, memory, today=date(2025, 1, 1), replicas=1, per_replica_capacity=True)
    assert (o.forecasted_exhaustion_days, o.days_until_85_percent, o.recommended_replica_increase) == (
        -1,
        -1,
        0,
    )
    assert "no exhaustion forecast" in o.replica_advice and "not along a line" in o.replica_advice


def test_flat_noise_is_stable_and_a_real_trend_is_accepted() -> None:
    flat = cap.assess_trend(line(slope_per_day=0.0, start=0.45, n=180, noise=0.01, seed=5))
    assert flat.direction == "stable" and flat.growth_per_day == 0.0 and flat.known
    up = cap.assess_trend(line(slope_per_day=1.0, start=1.0, n=180, noise=0.001))
    assert up.direction == "increasing" and up.fit is not None and up.fit.r_squared >= 0.5
    # A saw-tooth that stays above 85 % is there now: no trend needed for that.
    high = cap.resource_trend([(t, v + 600.0) for t, v in sawtooth(n=400, step=HOUR)], 1000.0)
    assert high is not None and high.direction == "no_trend" and high.days_until_85_percent == 0.0


def test_rate_warm_up_points_are_dropped_only_where_the_series_starts_inside_the_range() -> None:
    # rate(x[120s]) at 60 s steps, data from T0: the first two windows reach back before the data.
    series = [(T0 + 60.0, 0.09), (T0 + 120.0, 0.33), *[(T0 + i * 60.0, 0.45) for i in range(3, 180)]]
    kept = cap.drop_warmup(series, range_start=T0 - 600, warmup_s=120)
    assert kept[0] == (T0 + 180.0, 0.45) and len(kept) == len(series) - 2
    # Data from before the range: the first point's window was full.
    assert cap.drop_warmup(series, range_start=T0 + 60.0, warmup_s=120) == series
    # The warm-up alone made this flat series "increasing"; without it there is no trend.
    assert cap.assess_trend(series).fit is not None
    assert cap.assess_trend(kept).direction == "stable"
    assert cap.drop_warmup([], range_start=T0, warmup_s=120) == []


# ----------------------------------------------------------------------------------------- bounded growth
def test_bounded_days_until_stops_each_part_at_its_ceiling() -> None:
    leak = cap.BoundedGrowth(current=900.0, growth_per_day=1000.0, ceiling=1000.0)  # at its limit in 0.1 d
    assert cap.bounded_days_until(600.0, 0.0, [leak], 1600.0) == pytest.approx(0.1)
    assert cap.bounded_days_until(600.0, 0.0, [leak], 1700.0) is None  # 600 + 1000 at most
    # The rest grows 10/day: after the leak stops, 1700 is reached when the rest has grown 100.
    assert cap.bounded_days_until(600.0, 10.0, [leak], 1700.0) == pytest.approx(10.0)
    unbounded = cap.BoundedGrowth(current=900.0, growth_per_day=100.0, ceiling=None)
    assert cap.bounded_days_until(600.0, 0.0, [unbounded], 2000.0) == pytest.approx(5.0)
    assert cap.bounded_days_until(2000.0, 0.0, [leak], 1000.0) == 0.0
    assert cap.bounded_days_until(600.0, -10.0, [], 1000.0) is None
    assert cap.bounded_days_until(math.nan, 0.0, [leak], 1000.0) is None


def leaky(limit: float | None) -> cap.WorkloadIssue:
    """A leak from 200 MiB growing 6 GiB/day (the generated history's `leaky`), at 950 MiB now."""
    points = line(slope_per_day=6 * GiB, start=200 * MiB, n=181)
    points = [(t, v - points[-1][1] + 950 * MiB) for t, v in points]
    assessment = cap.assess_memory_leak(points, limit)
    assert assessment is not None and assessment.leak_detected
    return cap.leak_issue("shop", "leaky-6c9d8-abcde", "leaky", assessment)


def test_a_leak_that_stops_at_its_limit_does_not_exhaust_the_namespace() -> None:
    # shop: two flat carts (300 MiB each, 1 GiB limits) and the leak (1 GiB limit): the total grows fast,
    # but can reach only 600 MiB + 1 GiB of the 3 GiB of limits.
    carts = line(slope_per_day=0.0, start=600 * MiB, n=181, noise=4 * MiB, seed=2)
    leak = leaky(1 * GiB)
    total = [(t, v + leak.leak.current_bytes) for t, v in carts] if leak.leak else []
    total = [(t, v + 6 * GiB * (t - total[-1][0]) / DAY) for t, v in total]
    naive = cap.resource_trend(total, 3 * GiB)
    assert naive is not None and naive.direction == "increasing" and naive.days_until_full is not None
    assert naive.days_until_full < 1  # what the old forecast said: "limits reached in 1 day"
    bounded = cap.bound_defects(naive, carts, [leak])
    assert bounded is not None and bounded.direction == "increasing"  # what the data did
    assert (bounded.days_until_85_percent, bounded.days_until_full) == (None, None)
    assert "memory leak in shop/leaky-6c9d8-abcde" in bounded.reason
    o = cap.capacity_outlook(None, bounded, today=date(2025, 1, 1), replicas=3, per_replica_capacity=True,
                             issues=[leak])  # fmt: skip
    assert (o.forecasted_exhaustion_days, o.recommended_replica_increase) == (-1, 0)
    assert o.issues == (leak,) and "fix the leak" in leak.detail and "limit in" in leak.detail


def test_a_leak_without_a_limit_exhausts_and_replicas_do_not_help() -> None:
    carts = line(slope_per_day=0.0, start=600 * MiB, n=181, noise=4 * MiB, seed=2)
    leak = leaky(None)
    total = [(t, v + 950 * MiB) for t, v in carts]
    naive = cap.resource_trend(total, 3 * GiB)
    bounded = cap.bound_defects(naive, carts, [leak])
    assert bounded is not None and bounded.days_until_full is not None and 0 < bounded.days_until_full < 1
    o = cap.capacity_outlook(None, bounded, today=date(2025, 1, 1), replicas=3, per_replica_capacity=True,
                             issues=[leak])  # fmt: skip
    assert o.forecasted_exhaustion_days == 1 and o.recommended_replica_increase == 0
    assert "leak" in o.replica_advice and "replicas would leak too" in o.replica_advice


# ----------------------------------------------------------------------------------------- replicas
def growing(util_now: float, days_to_full: float, capacity: float = 2.0) -> cap.ResourceTrend:
    """Usage at `util_now` of `capacity` now, growing linearly to it in `days_to_full` days."""
    rate = capacity * (1 - util_now) / days_to_full
    points = line(slope_per_day=rate, start=0.0, n=5 * 24, step=HOUR)
    points = [(t, v - points[-1][1] + capacity * util_now) for t, v in points]
    trend = cap.resource_trend(points, capacity)
    assert trend is not None and trend.days_until_full == pytest.approx(days_to_full, rel=1e-6)
    return trend


def test_exhaustion_within_30_days_suggests_at_least_one_replica_even_below_70_percent() -> None:
    # 40 % used, full in 10 days: the engine's rule (only above 70 % now) said 0 replicas.
    cpu = growing(0.4, 10.0)
    o = cap.capacity_outlook(cpu, None, today=date(2025, 1, 1), replicas=2, per_replica_capacity=True)
    assert o.forecasted_exhaustion_days == 10 and o.exhausting_resource == "cpu"
    assert o.recommended_replica_increase == math.ceil(2 / 0.7) - 2 == 1
    assert "1 more replica(s) (2 → 3 pods)" in o.replica_advice and "lasts about" in o.replica_advice
    many = cap.capacity_outlook(cpu, None, today=date(2025, 1, 1), replicas=10, per_replica_capacity=True)
    assert many.recommended_replica_increase == math.ceil(10 / 0.7) - 10 == 5
    later = cap.capacity_outlook(growing(0.4, 45.0), None, today=date(2025, 1, 1), replicas=2,
                                 per_replica_capacity=True)  # fmt: skip
    assert (later.forecasted_exhaustion_days, later.recommended_replica_increase) == (45, 0)
    assert "beyond the 30-day horizon" in later.replica_advice


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"per_replica_capacity": False, "capacity_basis": "quota"}, "raise the quota"),
        ({"per_replica_capacity": False, "capacity_basis": "allocatable"}, "add nodes"),
        (
            {
                "per_replica_capacity": True,
                "issues": [cap.crash_loop_issue("payments", "crashy-1", "crashy", 12, "1h")],
            },
            "payments/crashy-1 crash-loops: replicas would crash too",
        ),
        ({"per_replica_capacity": True, "replicas": 0}, "no running pods"),
    ],
)
def test_no_replicas_where_they_do_not_help_and_the_advice_says_why(
    kwargs: dict[str, Any], says: str
) -> None:
    arguments: dict[str, Any] = {"today": date(2025, 1, 1), "replicas": 2, **kwargs}
    o = cap.capacity_outlook(growing(0.4, 10.0), None, **arguments)
    assert (o.forecasted_exhaustion_days, o.recommended_replica_increase) == (10, 0)
    assert says in o.replica_advice and "cpu runs out in 10.0 days" in o.replica_advice


def test_a_saw_tooth_is_not_extrapolated_by_the_usage_forecast() -> None:
    points = sawtooth(n=400, step=HOUR)
    f = cap.forecast_usage(points, points[-1][0] + 3 * HOUR)
    assert f is not None and f.trend == "stable" and "trend" not in f.method
