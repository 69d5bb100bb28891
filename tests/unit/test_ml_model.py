"""The reference model's pure parts: score mapping, input checks, imputation, versioning, persistence,
the training set's normal windows, and the legacy routes' series arithmetic. No servers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipeline.domain.features import FEATURE_NAMES, metric_features
from pipeline.embedded.history import CART_PODS, CRASHY_POD, generate_history
from pipeline.ml.model import (
    InvalidVector,
    ModelError,
    ModelUnavailable,
    ReferenceModel,
    anomaly_score,
    as_vector,
    confidence,
    impute,
    model_version,
    training_medians,
    vector_from_mapping,
)
from pipeline.ml.service import (
    MAX_DEVIATION,
    MetricSample,
    PatternRequest,
    PredictRequest,
    SeriesKey,
    analyze,
    forecast,
    linear_fit,
    robust_z,
    severity,
    vector_from_metrics,
)
from pipeline.ml.training import WARMUP_S, evaluation_times, evaluations, normal_windows

N = len(FEATURE_NAMES)


def normal_vectors(rows: int = 300, seed: int = 7) -> np.ndarray:
    """Gaussian around 0.3 with small spread; the restart block constant 0 like the real training set."""
    rng = np.random.default_rng(seed)
    vectors = 0.3 + 0.01 * rng.standard_normal((rows, N))
    vectors[:, 36:] = 0.0
    return vectors


@pytest.fixture(scope="module")
def fitted() -> ReferenceModel:
    return ReferenceModel.fit(normal_vectors())


# ----------------------------------------------------------------------------- score mapping
def test_the_boundary_scores_one_half_and_more_anomalous_scores_higher() -> None:
    assert anomaly_score(0.0) == 0.5
    decisions = [-0.3, -0.1, -0.01, 0.0, 0.01, 0.1, 0.3]
    scores = [anomaly_score(d) for d in decisions]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)
    assert anomaly_score(-0.1) == pytest.approx(0.8176, abs=1e-4)  # the documented mapping
    assert anomaly_score(0.1) == pytest.approx(1 - 0.8176, abs=1e-4)


def test_extreme_decisions_stay_within_0_and_1() -> None:
    assert anomaly_score(-1e9) == 1.0
    assert anomaly_score(1e9) == pytest.approx(0.0, abs=1e-12)
    assert confidence(1e9) == 1.0


def test_confidence_is_the_distance_from_the_boundary() -> None:
    assert confidence(0.0) == 0.0
    assert confidence(-0.05) == pytest.approx(confidence(0.05))
    assert confidence(-0.2) > confidence(-0.05) > 0.0


def test_prediction_is_anomalous_exactly_when_the_score_is_above_one_half(fitted: ReferenceModel) -> None:
    vectors = normal_vectors(50, seed=11).tolist() + [[5.0] * N, [0.3] * 36 + [4.0] * 9]
    for p in fitted.predict(vectors):
        assert (p.prediction == -1) == (p.score > 0.5) == (p.decision < 0)
        assert p.confidence == pytest.approx(abs(2 * p.score - 1))


def test_a_vector_far_from_the_training_data_is_anomalous(fitted: ReferenceModel) -> None:
    far, near = fitted.predict([[5.0] * N, [0.3] * 36 + [0.0] * 9])
    assert far.prediction == -1 and far.score > 0.8
    assert near.prediction == 1 and near.score < 0.5


# ----------------------------------------------------------------------------- input checks
def test_a_vector_is_45_finite_numbers_or_nulls() -> None:
    assert as_vector([1] * N, "v") == [1.0] * N
    assert as_vector([None] * (N - 1) + [0], "v") == [None] * (N - 1) + [0.0]


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ([0.1] * 44, "instances[0]", "has 44 values; the model expects 45"),
        ("0.1", "instances[0]", "expected a list of 45 numbers"),
        ([0.1] * 3 + ["x"] + [0.1] * 41, "instances[0][3]", "node_cpu_utilization_min_5m is not a number"),
        ([True] + [0.1] * 44, "instances[0][0]", "not a number"),
        ([0.1] * 44 + [math.inf], "instances[0][44]", "container_restart_count_pct_change is not finite"),
        ([None] * 45, "instances[0]", "every value is missing"),
        ([10**400] + [0.1] * 44, "instances[0][0]", "node_cpu_utilization_value is not finite"),
    ],
)
def test_a_malformed_vector_names_where_and_why(values: object, field: str, words: str) -> None:
    with pytest.raises(InvalidVector) as caught:
        as_vector(values, "instances[0]")
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_name_to_value_object_becomes_the_vector_with_absent_names_missing() -> None:
    vector = vector_from_mapping({"pod_memory_usage_value": 0.9, "node_cpu_utilization_value": 1}, "features")
    assert vector[FEATURE_NAMES.index("pod_memory_usage_value")] == 0.9
    assert vector[0] == 1.0
    assert sum(v is None for v in vector) == N - 2


def test_a_name_to_value_object_rejects_unknown_names_and_non_numbers() -> None:
    with pytest.raises(InvalidVector) as unknown:
        vector_from_mapping({"pod_memory_usage_value": 0.9, "memory": 1}, "features")
    assert unknown.value.field == "features.memory"
    with pytest.raises(InvalidVector) as text:
        vector_from_mapping({"pod_cpu_usage_value": "high"}, "features")
    assert text.value.field == "features.pod_cpu_usage_value"
    assert "not a number" in str(text.value)


# ----------------------------------------------------------------------------- imputation
def test_missing_values_get_the_training_median_and_are_named() -> None:
    medians = np.arange(N, dtype=float)
    row: list[float | None] = [0.5] * N
    row[2], row[40] = None, math.nan
    matrix, imputed = impute([row, [0.5] * N], medians)
    assert matrix[0, 2] == 2.0 and matrix[0, 40] == 40.0
    assert matrix[0, 0] == 0.5 and (matrix[1] == 0.5).all()
    assert imputed == [(FEATURE_NAMES[2], FEATURE_NAMES[40]), ()]


def test_training_medians_ignore_missing_values_and_need_one_value_per_feature() -> None:
    vectors = np.full((3, N), 1.0)
    vectors[:, 5] = [1.0, np.nan, 3.0]
    medians = training_medians(vectors)
    assert medians[5] == 2.0 and medians[0] == 1.0
    vectors[:, 7] = np.nan
    with pytest.raises(ModelError, match=FEATURE_NAMES[7]):
        training_medians(vectors)


def test_fitting_imputes_the_training_set_and_reports_what_it_imputed() -> None:
    vectors = normal_vectors(100)
    vectors[0, 3] = np.nan
    vectors[1, 3] = np.nan
    model = ReferenceModel.fit(vectors, {"source": "unit"})
    assert model.training["imputed"] == {FEATURE_NAMES[3]: 2}
    assert model.training["size"] == 100 and model.training["source"] == "unit"
    assert model.predict([[None] * N])[0].imputed == FEATURE_NAMES


def test_deviations_are_in_robust_units_from_the_training_median(fitted: ReferenceModel) -> None:
    vector = [0.3] * N
    vector[27] = 5.0
    deviations = {d.name: d for d in fitted.deviations(vector)}
    worst = max(deviations.values(), key=lambda d: abs(d.deviation))
    assert worst.name == FEATURE_NAMES[27] and worst.value == 5.0 and worst.deviation > 100
    assert worst.expected == pytest.approx(0.3, abs=0.01)


# ----------------------------------------------------------------------------- version and persistence
def test_the_version_is_a_content_hash_of_the_training_set() -> None:
    vectors = normal_vectors()
    assert model_version(vectors) == model_version(vectors.copy())
    changed = vectors.copy()
    changed[0, 0] += 1e-12
    assert model_version(changed) != model_version(vectors)
    missing = vectors.copy()
    missing[0, 0] = np.nan
    assert model_version(missing) != model_version(vectors)


def test_fitting_twice_gives_the_same_model() -> None:
    first, second = ReferenceModel.fit(normal_vectors()), ReferenceModel.fit(normal_vectors())
    probe = normal_vectors(20, seed=3).tolist()
    assert first.version == second.version
    assert [p.decision for p in first.predict(probe)] == [p.decision for p in second.predict(probe)]


def test_a_saved_model_loads_with_its_version_and_answers(fitted: ReferenceModel, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    loaded = ReferenceModel.load(tmp_path / "m")
    probe = normal_vectors(20, seed=5).tolist() + [[5.0] * N]
    assert loaded.version == fitted.version
    assert loaded.predict(probe) == fitted.predict(probe)
    assert loaded.load_seconds is not None
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.joblib", "model.json"]


def test_a_missing_torn_or_foreign_model_is_unavailable(fitted: ReferenceModel, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        ReferenceModel.load(tmp_path / "absent")
    fitted.save(tmp_path / "torn")
    with open(tmp_path / "torn" / "model.joblib", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelUnavailable, match="does not match"):
        ReferenceModel.load(tmp_path / "torn")
    fitted.save(tmp_path / "foreign")
    metadata = json.loads((tmp_path / "foreign" / "model.json").read_text())
    metadata["features"] = metadata["features"][:5]
    (tmp_path / "foreign" / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelUnavailable, match="other features"):
        ReferenceModel.load(tmp_path / "foreign")


# ----------------------------------------------------------------------------- the training set's windows
def test_training_keeps_cart_throughout_crashy_before_its_first_restart_and_nothing_else() -> None:
    history = generate_history(end=1_704_067_200.0, duration_s=2 * 3600)
    windows = {w.pod: w for w in normal_windows(history)}
    assert set(windows) == {*CART_PODS, CRASHY_POD}
    assert windows[CART_PODS[0]].start == history.start + WARMUP_S
    assert windows[CRASHY_POD].end == history.crashy_restart_times[0]
    crashy_times = evaluation_times(history, windows[CRASHY_POD])
    assert max(crashy_times) < history.crashy_restart_times[0]
    cart_times = evaluation_times(history, windows[CART_PODS[0]])
    assert cart_times[-1] == history.end and cart_times[0] >= history.start + WARMUP_S
    assert {b - a for a, b in zip(cart_times, cart_times[1:], strict=False)} == {120.0}
    plan = list(evaluations(history))
    assert len(plan) == 2 * len(cart_times) + len(crashy_times)
    assert plan == list(evaluations(history))


# ----------------------------------------------------------------------------- legacy routes' arithmetic
def samples(
    name: str, values: list[float], start: float = 1_704_067_200.0, step: float = 60.0
) -> list[MetricSample]:
    return [
        MetricSample(name=name, value=v, timestamp=datetime.fromtimestamp(start + i * step, UTC))
        for i, v in enumerate(values)
    ]


def test_robust_z_measures_in_median_absolute_deviations_and_caps_constant_series() -> None:
    reference = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert robust_z(3.0, reference) == 0.0
    assert robust_z(3.0 + 1.4826, reference) == pytest.approx(1.0)
    assert robust_z(7.0, [2.0] * 5) == MAX_DEVIATION
    assert robust_z(3.0, [1.0, 1.0, 1.0, 1.0, 5.0]) == pytest.approx(2.0 / (1.2533 * 0.8))  # MAD 0
    assert robust_z(2.0, [2.0] * 5) == 0.0


def test_linear_fit_extrapolates_from_the_last_point() -> None:
    line = linear_fit([(0.0, 1.0), (60.0, 2.0), (120.0, 3.0)])
    assert line is not None
    assert line.slope == pytest.approx(1 / 60) and line.intercept == pytest.approx(3.0) and line.r2 == 1.0
    assert linear_fit([(0.0, 1.0)]) is None


def test_severity_is_relative_to_the_threshold() -> None:
    assert [severity(d, 3.0) for d in (3.0, -6.0, 9.5)] == ["low", "medium", "high"]


def test_a_base_metric_series_gives_the_features_the_pipeline_computes() -> None:
    memory = [0.30 + 0.01 * i for i in range(11)]
    series: dict[SeriesKey, list[tuple[float, float]]] = {
        ("pod_memory_usage", ()): [(1_704_067_200.0 + 60 * i, v) for i, v in enumerate(memory)],
        ("container_restart_count_value", ()): [(1_704_067_200.0 + 600, 3.0)],
    }
    built = vector_from_metrics(series)
    assert built is not None
    vector, at = built
    expected, _ = metric_features(at, series[("pod_memory_usage", ())])
    assert at == 1_704_067_200.0 + 600
    for feature, value in expected.items():
        assert vector[FEATURE_NAMES.index(f"pod_memory_usage_{feature}")] == value
    assert vector[FEATURE_NAMES.index("container_restart_count_value")] == 3.0
    assert vector[0] is None
    assert vector_from_metrics({("http_requests", ()): [(0.0, 1.0)]}) is None


def test_forecast_follows_the_line_and_rates_ratio_risk() -> None:
    rising = samples("pod_memory_usage", [0.5 + 0.01 * i for i in range(30)])
    flat = samples("cpu", [2.0] * 30)
    answer = forecast(PredictRequest(historical_metrics=rising + flat, predict_ahead="1h"))
    by_name = {p["metric_name"]: p for p in answer["predictions"]}
    memory = by_name["pod_memory_usage"]
    assert memory["predicted_value"] == pytest.approx(0.79 + 0.6)
    assert memory["trend"] == "increasing" and memory["risk"] == "high"
    assert memory["confidence"] == pytest.approx(1.0)
    assert by_name["cpu"]["trend"] == "stable" and "risk" not in by_name["cpu"]
    assert answer["summary"] == {
        "time_range": "1h",
        "metrics_count": 2,
        "overall_confidence": pytest.approx(1.0),
    }


def test_patterns_find_a_trend_a_spike_a_level_shift_and_a_correlation() -> None:
    rng = np.random.default_rng(1)
    noise = (0.001 * rng.standard_normal(40)).tolist()
    leak = samples("pod_memory_usage", [0.2 + 0.015 * i + n for i, n in enumerate(noise)])
    node = samples("node_memory_utilization", [0.3 + 0.004 * i for i in range(40)])
    spike = samples("latency", [0.1 + n for n in noise[:20]] + [5.0] + [0.1 + n for n in noise[20:39]])
    shift = samples("replicas", [3.0 + n for n in noise[:20]] + [1.0 + n for n in noise[20:]])
    answer = analyze(PatternRequest(metrics=leak + node + spike + shift))
    kinds = {(p["type"], tuple(p["metrics"])) for p in answer["patterns"]}
    assert ("trend", ("pod_memory_usage",)) in kinds
    assert ("spike", ("latency",)) in kinds
    assert ("level_shift", ("replicas",)) in kinds
    assert ("correlation", ("node_memory_utilization", "pod_memory_usage")) in kinds
    assert any(i.startswith("pod_memory_usage reaches 1.0 in about") for i in answer["insights"])
    assert answer["summary"]["patterns_found"] == len(answer["patterns"])
    only_trends = analyze(PatternRequest(metrics=leak + spike, analysis_type="trend"))
    assert {p["type"] for p in only_trends["patterns"]} == {"trend"}


def test_an_alternating_series_is_not_a_level_shift() -> None:
    flapping = samples("ready", [float(i % 2) for i in range(10)])
    assert analyze(PatternRequest(metrics=flapping, analysis_type="level_shift"))["patterns"] == []
