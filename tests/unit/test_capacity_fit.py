"""The capacity math's base: samples and line fits, thresholds and urgency, disk forecasts."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.domain import capacity as cap
from tests.unit.capacity_series import DAY, HOUR, T0, GiB, MiB, line, sawtooth


# ----------------------------------------------------------------------------------------- samples and fits
def test_finite_points_drops_nan_and_inf_sorts_and_keeps_the_last_value_per_timestamp() -> None:
    raw = [
        (3.0, 1.0),
        (1.0, math.nan),
        (2.0, math.inf),
        (math.nan, 5.0),
        (0.0, -math.inf),
        (3.0, 2.0),
        (1.5, 7.0),
    ]
    assert cap.finite_points(raw) == [(1.5, 7.0), (3.0, 2.0)]


def test_fit_recovers_an_exact_line_at_unix_timestamps() -> None:
    fit = cap.fit_line(line(slope_per_day=86.4, start=10.0, n=100))
    assert fit is not None
    assert fit.slope == pytest.approx(86.4 / DAY, rel=1e-9)
    assert fit.slope_per_day == pytest.approx(86.4, rel=1e-9)
    assert fit.value_at(T0) == pytest.approx(10.0, abs=1e-6)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.slope_stderr == pytest.approx(0.0, abs=1e-12)
    assert fit.significant
    assert (fit.n, fit.start, fit.end, fit.span_s) == (100, T0, T0 + 99 * 60, 99 * 60)


def test_flat_series_fits_with_zero_slope_full_r_squared_and_no_trend() -> None:
    fit = cap.fit_line([(T0 + i, 5.0) for i in range(10)])
    assert fit is not None
    assert (fit.slope, fit.r_squared, fit.significant) == (0.0, 1.0, False)
    assert cap.direction(fit, cap.daily_change_percent(fit)) == "stable"


@pytest.mark.parametrize(
    "points",
    [
        [],
        [(T0, 1.0)],
        [(T0, 1.0), (T0 + 1, 2.0)],  # two points always fit: not evidence
        [(T0, 1.0), (T0, 2.0), (T0, 3.0)],  # one timestamp: no time span
        [(T0, 1.0), (T0 + 1, math.nan), (T0 + 2, math.inf)],  # NaN/Inf leave too few
    ],
)
def test_too_few_usable_points_give_no_fit(points: list[tuple[float, float]]) -> None:
    assert cap.fit_line(points) is None


def test_nan_samples_are_ignored_by_the_fit() -> None:
    clean = line(slope_per_day=10.0, start=0.0, n=20)
    dirty = clean[:5] + [(T0 + 5 * 60 + 1, math.nan), (T0 + 5 * 60 + 2, -math.inf)] + clean[5:]
    assert cap.fit_line(dirty) == cap.fit_line(clean)


def test_noise_is_not_a_significant_trend_but_a_real_trend_under_noise_is() -> None:
    noise_only = cap.fit_line(line(slope_per_day=0.0, start=100.0, n=500, noise=5.0, seed=7))
    assert noise_only is not None and not noise_only.significant
    assert noise_only.r_squared < 0.05
    trending = cap.fit_line(line(slope_per_day=100.0, start=100.0, n=500, noise=5.0, seed=7))
    assert trending is not None and trending.significant
    assert 0.5 < trending.r_squared < 1.0
    assert trending.slope_per_day == pytest.approx(100.0, rel=0.05)


def test_direction_needs_both_the_threshold_and_significance() -> None:
    up = cap.fit_line(line(slope_per_day=10.0, start=100.0, n=50))
    assert up is not None
    assert cap.daily_change_percent(up) == round(10.0 / up.mean_value * 100, 4)
    assert cap.direction(up, 0.6) == "increasing"
    assert cap.direction(up, -0.6) == "decreasing"
    assert cap.direction(up, 0.5) == "stable"  # at the engine's threshold: stable
    assert cap.direction(None, 50.0) == "stable"
    assert cap.daily_change_percent(None) == 0.0


def test_trend_confidence_scales_with_fit_quality_not_just_the_number_of_points() -> None:
    fit = cap.fit_line(line(slope_per_day=1.0, start=0.0, n=84, step=HOUR))  # 84 points over 83 hours
    assert fit is not None and fit.significant and fit.r_squared == pytest.approx(1.0)
    assert cap.trend_confidence(fit) == round(0.5 * 84 / 168 + 0.5 * (83 * HOUR) / (7 * DAY), 2)
    long = cap.fit_line(line(slope_per_day=1.0, start=0.0, n=400, step=HOUR))
    assert cap.trend_confidence(long) == 1.0
    assert cap.trend_confidence(None) == 0.0
    # A week of a saw-tooth (a crash loop's working set) has a "significant" slope the line does not
    # describe: the engine's formula gave it >= 0.4 for the 168+ points alone; now it is at most its R².
    saw = cap.fit_line(sawtooth(n=400, step=HOUR))
    assert saw is not None and saw.significant and saw.r_squared < 0.2
    assert cap.trend_confidence(saw) <= round(saw.r_squared, 2) + 0.01
    # No significant slope: the verdict is "stable", as sure as the history is long.
    noise = cap.fit_line(line(slope_per_day=0.0, start=100.0, n=400, step=HOUR, noise=5.0, seed=3))
    assert noise is not None and not noise.significant and cap.trend_confidence(noise) == 1.0


# ----------------------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize(
    ("current", "rate", "threshold", "expected"),
    [
        (50.0, 10.0, 85.0, 3.5),
        (85.0, 10.0, 85.0, 0.0),  # already there
        (90.0, -1.0, 85.0, 0.0),  # past it, even while falling
        (50.0, 0.0, 85.0, None),  # flat: never
        (50.0, -3.0, 85.0, None),  # falling: never
        (0.0, 1e-9, 1e6, None),  # beyond a century: never
        (math.nan, 1.0, 85.0, None),
        (50.0, math.inf, 85.0, None),
        (50.0, 1.0, math.nan, None),
    ],
)
def test_days_until(current: float, rate: float, threshold: float, expected: float | None) -> None:
    assert cap.days_until(current, rate, threshold) == expected


def test_whole_days_round_up_and_never_is_minus_one() -> None:
    assert [cap.whole_days(d) for d in (0.0, 0.01, 2.0, 2.1, None)] == [0, 1, 2, 3, -1]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0.0, "critical"),
        (6.9, "critical"),
        (7.0, "critical"),  # "within 7 days" is inclusive: days_until_full 7 is critical
        (7.01, "warning"),
        (30.0, "warning"),
        (30.5, "info"),
        (5000.0, "info"),
        (None, "stable"),
    ],
)
def test_urgency_classes(days: float | None, expected: str) -> None:
    assert cap.urgency(days) == expected


def test_urgency_agrees_with_the_rounded_up_days() -> None:
    for days in (0.2, 6.01, 6.99, 7.0, 7.2, 29.5, 30.0, 30.01):
        assert cap.urgency(days) == cap.urgency(float(cap.whole_days(days)))
    assert cap.urgency(3.0, known=False) == "unknown"


def test_date_after_counts_from_the_last_sample_in_utc() -> None:
    last = datetime(2025, 3, 1, 23, 0, tzinfo=UTC).timestamp()
    assert cap.date_after(last, 0.5) == date(2025, 3, 2)
    assert cap.date_after(last, None) is None


# ----------------------------------------------------------------------------------------- disk
def test_a_filling_disk_is_forecast_from_its_fitted_rate() -> None:
    # 40 GiB free, losing 16 GiB a day: full in 2.5 days.
    samples = line(slope_per_day=-16 * GiB, start=40 * GiB, n=181, noise=8 * MiB)
    f = cap.forecast_disk(samples, 100 * GiB)
    assert f is not None
    assert f.available_bytes == samples[-1][1]
    assert f.total_bytes == 100 * GiB
    assert f.used_fraction == round((100 * GiB - samples[-1][1]) / (100 * GiB), 3)
    assert f.daily_fill_rate_bytes == pytest.approx(16 * GiB, rel=0.01)
    expected_days = samples[-1][1] / f.daily_fill_rate_bytes
    assert f.days_until_full == math.ceil(expected_days)
    assert f.urgency == "critical"
    assert (
        f.projected_full_date
        == (datetime.fromtimestamp(samples[-1][0], UTC) + timedelta(days=expected_days)).date()
    )
    assert f.r_squared is not None and f.r_squared > 0.99
    assert f.samples == 181
    assert 0 < f.confidence <= 1


def test_a_disk_being_freed_or_only_noisy_is_stable() -> None:
    freed = cap.forecast_disk(line(slope_per_day=1 * GiB, start=40 * GiB, n=100), 100 * GiB)
    assert freed is not None
    assert (freed.days_until_full, freed.urgency, freed.projected_full_date) == (-1, "stable", None)
    assert freed.daily_fill_rate_bytes < 0
    noisy = cap.forecast_disk(
        line(slope_per_day=0.0, start=70 * GiB, n=181, noise=8 * MiB, seed=3), 100 * GiB
    )
    assert noisy is not None
    assert (noisy.days_until_full, noisy.urgency) == (-1, "stable")


def test_a_full_disk_is_critical_now_even_without_a_trend() -> None:
    f = cap.forecast_disk([(T0, 0.0)], 100 * GiB)
    assert f is not None
    assert (f.days_until_full, f.urgency, f.used_fraction, f.r_squared) == (0, "critical", 1.0, None)


def test_disk_with_too_little_data_is_unknown_and_without_size_has_no_used_fraction() -> None:
    f = cap.forecast_disk([(T0, 10 * GiB), (T0 + 60, 9 * GiB)], None)
    assert f is not None
    assert (f.urgency, f.days_until_full, f.used_fraction, f.total_bytes) == ("unknown", -1, None, None)
    assert f.daily_fill_rate_bytes == 0.0
    assert cap.forecast_disk([(T0, math.nan)], 100.0) is None
    assert cap.forecast_disk([], 100.0) is None
    zero_size = cap.forecast_disk([(T0, 1.0), (T0 + 1, 1.0), (T0 + 2, 1.0)], 0.0)
    assert zero_size is not None and zero_size.used_fraction is None
