"""Memory-leak detection and rightsizing."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.domain import capacity as cap
from tests.unit.capacity_series import DAY, HOUR, T0, GiB, MiB, line


# ----------------------------------------------------------------------------------------- memory leaks
def test_linear_growth_is_a_leak_with_a_projected_time_to_the_limit() -> None:
    # 200 MiB -> 950 MiB over 3 hours of a 1 GiB limit (the test history's `leaky` pod).
    growth_per_day = 750 * MiB / (3 * HOUR) * DAY
    samples = line(slope_per_day=growth_per_day, start=200 * MiB, n=181, noise=256 * 1024)
    a = cap.assess_memory_leak(samples, 1 * GiB)
    assert a is not None
    assert a.leak_detected, a.reason
    assert a.daily_growth_bytes == pytest.approx(growth_per_day, rel=0.01)
    assert a.r_squared > 0.99 and a.monotonicity == 1.0
    assert a.current_bytes == samples[-1][1]
    expected = (1 * GiB - samples[-1][1]) / a.daily_growth_bytes
    assert a.days_until_limit is not None
    assert a.days_until_limit == pytest.approx(expected, abs=1e-3)
    assert a.limit_reached_at == pytest.approx(
        datetime.fromtimestamp(samples[-1][0], UTC) + timedelta(days=a.days_until_limit),
        abs=timedelta(seconds=90),
    )
    assert a.restarts == 0 and a.samples == 181
    assert 0 < a.confidence <= 1
    assert "linear growth" in a.reason


def test_a_leak_without_a_limit_has_no_projection() -> None:
    a = cap.assess_memory_leak(line(slope_per_day=1 * GiB, start=200 * MiB, n=100), None)
    assert a is not None and a.leak_detected
    assert (a.limit_bytes, a.days_until_limit, a.limit_reached_at) == (None, None, None)


def test_a_stable_working_set_is_not_a_leak() -> None:
    a = cap.assess_memory_leak(
        line(slope_per_day=0.0, start=300 * MiB, n=181, noise=4 * MiB, seed=5), 1 * GiB
    )
    assert a is not None
    assert not a.leak_detected and a.confidence == 0.0
    assert a.days_until_limit is None


def test_a_step_up_is_not_a_leak() -> None:
    samples = [(T0 + i * 60, (180 if i < 120 else 200) * MiB + (i % 3) * 1024) for i in range(180)]
    a = cap.assess_memory_leak(samples, 512 * MiB)
    assert a is not None and not a.leak_detected
    assert a.r_squared < cap.LEAK_MIN_R_SQUARED or a.monotonicity < cap.LEAK_MIN_MONOTONICITY


def test_a_cache_that_warmed_up_and_stopped_is_not_a_leak() -> None:
    # Fast growth for 40 minutes, then flat for over two hours.
    samples = [(T0 + i * 60, (100 + min(i, 40) * 5) * MiB + (i % 2) * 2 * MiB) for i in range(180)]
    a = cap.assess_memory_leak(samples, 1 * GiB)
    assert a is not None
    assert not a.leak_detected, a


def test_slow_growth_is_not_a_leak() -> None:
    a = cap.assess_memory_leak(line(slope_per_day=0.01 * 300 * MiB, start=300 * MiB, n=181), 1 * GiB)
    assert a is not None and not a.leak_detected
    assert "slow" in a.reason


def test_shrinking_memory_is_not_a_leak() -> None:
    a = cap.assess_memory_leak(line(slope_per_day=-1 * GiB, start=900 * MiB, n=100), 1 * GiB)
    assert a is not None and not a.leak_detected and a.reason == "working set is not growing"


def test_a_leak_that_restarts_is_judged_on_the_stretch_since_the_last_restart() -> None:
    # Grows 100 -> 500 MiB over two hours, is OOM-killed, and grows again at the same rate for 90 minutes.
    first = [(T0 + i * 60, (100 + i * 400 / 120) * MiB) for i in range(120)]
    second = [(T0 + (120 + i) * 60, (100 + i * 400 / 120) * MiB) for i in range(90)]
    a = cap.assess_memory_leak(first + second, 512 * MiB)
    assert a is not None
    assert a.leak_detected, a.reason
    assert a.restarts == 1
    assert a.samples == 90
    assert a.current_bytes == second[-1][1]


def test_a_crash_loop_leaves_too_little_data_to_call_a_leak() -> None:
    # A fresh container every 5 minutes, each growing fast: never an hour of data since a restart.
    samples = [(T0 + i * 15, (40 + (i % 20) * 20) * MiB) for i in range(240)]
    a = cap.assess_memory_leak(samples, 512 * MiB)
    assert a is not None and not a.leak_detected
    assert a.restarts == 11
    assert "too little data" in a.reason


def test_leak_assessment_ignores_nan_and_needs_a_finite_sample() -> None:
    samples = line(slope_per_day=1 * GiB, start=200 * MiB, n=100)
    with_nan = samples[:50] + [(samples[49][0] + 1, math.nan)] + samples[50:]
    assert cap.assess_memory_leak(with_nan, 1 * GiB) == cap.assess_memory_leak(samples, 1 * GiB)
    assert cap.assess_memory_leak([(T0, math.nan)]) is None
    assert cap.assess_memory_leak([]) is None
    nan_limit = cap.assess_memory_leak(samples, math.nan)
    assert nan_limit is not None and nan_limit.limit_bytes is None


def test_split_at_restarts_and_monotonicity() -> None:
    pts = [(0.0, 10.0), (1.0, 12.0), (2.0, 5.0), (3.0, 6.0), (4.0, 2.0)]
    assert cap.split_at_restarts(pts) == [[(0.0, 10.0), (1.0, 12.0)], [(2.0, 5.0), (3.0, 6.0)], [(4.0, 2.0)]]
    assert cap.split_at_restarts([(0.0, 0.0), (1.0, 0.0)]) == [[(0.0, 0.0), (1.0, 0.0)]]
    rising = [(float(i), float(i)) for i in range(24)]
    assert cap.monotonicity(rising) == 1.0
    assert cap.monotonicity(rising[::-1]) == 0.0
    assert cap.monotonicity(rising[:5]) == 0.0  # too few samples for two groups of three


# ----------------------------------------------------------------------------------------- rightsizing
def usage(**overrides: Any) -> cap.ContainerUsage:
    base = cap.ContainerUsage(
        "shop", "cart-1", "cart", p95_cpu_cores=0.2, p95_memory_bytes=300 * MiB,
        cpu_request=0.25, cpu_limit=1.0, memory_request=256 * MiB, memory_limit=1 * GiB, throttle_fraction=0.0,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


@pytest.mark.parametrize(
    ("request_", "p95", "expected"),
    [
        (2.0, 1.0, "right-sized"),  # exactly 2x: not over
        (2.01, 1.0, "over-provisioned"),
        (0.8, 1.0, "right-sized"),  # exactly 0.8x: not under
        (0.79, 1.0, "under-provisioned"),
        (1.0, 0.0, "over-provisioned"),  # reserved and never used
        (0.0, 0.0, "right-sized"),
        (None, 0.5, "under-provisioned"),  # no request at all
        (1.0, None, "unknown"),
    ],
)
def test_sizing_bands(request_: float | None, p95: float | None, expected: str) -> None:
    assert cap.sizing(request_, p95) == expected


def test_recommendation_adds_headroom_to_p95() -> None:
    r = cap.recommend(usage())
    assert r.recommended_cpu_request == pytest.approx(0.2 * 1.2)
    assert r.recommended_cpu_limit == pytest.approx(0.2 * 1.5)
    assert r.recommended_memory_request == pytest.approx(300 * MiB * 1.2)
    assert r.recommended_memory_limit == pytest.approx(300 * MiB * 1.5)
    assert (r.cpu_sizing, r.memory_sizing, r.reasons) == ("right-sized", "right-sized", ())
    assert cap.verdict(r) == "right-sized"


def test_throttling_makes_cpu_under_provisioned_and_raises_the_limit() -> None:
    r = cap.recommend(usage(p95_cpu_cores=0.499, cpu_request=0.5, cpu_limit=0.5, throttle_fraction=0.6))
    assert r.cpu_sizing == "under-provisioned"  # request/P95 alone would say right-sized
    assert r.recommended_cpu_limit == pytest.approx(0.75)  # at least 1.5x the limit that capped it
    assert any("throttled in 60%" in reason for reason in r.reasons)
    mild = cap.recommend(usage(throttle_fraction=0.25))  # at the threshold: not throttled
    assert mild.cpu_sizing == "right-sized"


def test_memory_near_its_limit_is_under_provisioned() -> None:
    r = cap.recommend(usage(p95_memory_bytes=0.95 * GiB, memory_request=0.9 * GiB))
    assert r.memory_sizing == "under-provisioned"
    assert any("memory limit" in reason for reason in r.reasons)


def test_missing_requests_are_reported_and_nan_inputs_become_unknown() -> None:
    r = cap.recommend(usage(cpu_request=None, memory_request=None))
    assert (r.cpu_sizing, r.memory_sizing) == ("under-provisioned", "under-provisioned")
    assert set(r.reasons) == {"no CPU request", "no memory request"}
    nan = cap.recommend(usage(p95_cpu_cores=math.nan, cpu_request=math.inf, throttle_fraction=math.nan))
    assert nan.cpu_sizing == "unknown"
    assert nan.usage.cpu_request is None and nan.usage.throttle_fraction is None
    assert nan.recommended_cpu_request is None and nan.recommended_cpu_limit is None
    negative = cap.recommend(usage(p95_memory_bytes=-1.0))
    assert negative.memory_sizing == "unknown"


def test_verdict_precedence_is_the_engines() -> None:
    def with_sizes(cpu: str, memory: str) -> cap.Rightsizing:
        return dataclasses.replace(cap.recommend(usage()), cpu_sizing=cpu, memory_sizing=memory)  # type: ignore[arg-type]

    assert cap.verdict(with_sizes("over-provisioned", "under-provisioned")) == "over-provisioned"
    assert cap.verdict(with_sizes("right-sized", "under-provisioned")) == "under-provisioned"
    assert cap.verdict(with_sizes("unknown", "right-sized")) == "right-sized"
    assert cap.verdict(with_sizes("unknown", "unknown")) == "unknown"


@pytest.mark.parametrize(
    ("cores", "text"),
    [
        (0.0, "0"),
        (0.0004, "1m"),
        (0.25, "250m"),
        (0.9996, "1000m"),
        (1.0, "1.00"),
        (2.345, "2.35"),
        (None, ""),
    ],
)
def test_format_cores(cores: float | None, text: str) -> None:
    assert cap.format_cores(cores) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512.0, "512"),
        (1536.0, "1.5Ki"),
        (300 * MiB, "300.0Mi"),
        (1.5 * GiB, "1.5Gi"),
        (None, ""),
        (math.nan, ""),
    ],
)
def test_format_bytes(size: float | None, text: str) -> None:
    assert cap.format_bytes(size) == text
