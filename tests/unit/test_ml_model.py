"""The reference model's pure parts: score mapping, input checks, imputation, versioning, persistence,
the training set's rows and labels at every kind of scope, the evaluation's counts, and the legacy routes'
series arithmetic. No servers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipeline.domain.features import FEATURE_NAMES, metric_features
from pipeline.embedded.history import (
    CART_PODS,
    CRASHY_POD,
    LEAKY_DEPLOYMENT,
    LEAKY_POD,
    SCENARIOS,
    THROTTLED_POD,
    History,
    MiB,
    generate_history,
)
from pipeline.ml.detect import vector_from_metrics
from pipeline.ml.evaluate import Counts, evaluation_histories, score, table
from pipeline.ml.forecast import PredictRequest, forecast
from pipeline.ml.model import (
    InvalidVector,
    ModelError,
    ModelUnavailable,
    ReferenceModel,
    anomaly_score,
    as_vector,
    confidence,
    impute,
    is_stale,
    model_version,
    training_medians,
    vector_from_mapping,
)
from pipeline.ml.patterns import PatternRequest, analyze
from pipeline.ml.series import MAX_DEVIATION, MetricSample, SeriesKey, linear_fit, robust_z, severity
from pipeline.ml.training import (
    EVALUATION_EVERY_S,
    TRAINING_HISTORIES,
    WARMUP_S,
    HistorySpec,
    Row,
    is_anomalous,
    plan_rows,
    recipe_id,
    significant,
    targets,
)

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


# ----------------------------------------------------------------------------- the training set's rows
HOUR = 3600


def scope_rows(history: History, spec: HistorySpec, *, normal_only: bool) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    for row in plan_rows(history, spec, normal_only=normal_only):
        rows.setdefault(f"{row.target.kind} {row.target.name}", []).append(row.at)
    return rows


def test_the_scenario_cluster_trains_on_cart_throughout_and_crashy_before_its_first_restart() -> None:
    spec = HistorySpec(duration_s=2 * HOUR)
    history = spec.generate()
    normal = scope_rows(history, spec, normal_only=True)
    assert set(normal) == {
        f"pod shop/{CART_PODS[0]}",
        f"pod shop/{CART_PODS[1]}",
        "deployment shop/cart",
        f"pod payments/{CRASHY_POD}",
        "deployment payments/crashy",
    }  # shop always holds the leak, payments the throttled pod: no namespace, node or cluster is healthy
    cart = normal["deployment shop/cart"]
    assert cart[-1] == history.end and cart[0] >= history.start + WARMUP_S
    assert {b - a for a, b in zip(cart, cart[1:], strict=False)} == {float(EVALUATION_EVERY_S)}
    assert max(normal["deployment payments/crashy"]) < history.crashy_restart_times[0]
    assert plan_rows(history, spec) == plan_rows(history, spec)  # a stable order


def test_healthy_variants_add_namespaces_nodes_and_the_cluster() -> None:
    spec = HistorySpec(healthy=SCENARIOS, duration_s=HOUR, every=(("pod", 600), ("cluster", 60)))
    history = spec.generate()
    assert history.crashy_restart_times == ()
    every = scope_rows(history, spec, normal_only=False)
    normal = scope_rows(history, spec, normal_only=True)
    assert normal == every and len(normal) == len(targets()) == 14
    # after the 15-minute warm-up: every minute for the cluster, every 10 minutes for a pod
    assert (len(normal["cluster cluster"]), len(normal[f"pod payments/{THROTTLED_POD}"])) == (46, 5)
    shop_healthy = HistorySpec(healthy=(LEAKY_DEPLOYMENT,), duration_s=HOUR)
    normal = scope_rows(shop_healthy.generate(), shop_healthy, normal_only=True)
    assert {"namespace shop", "node node-a", f"pod shop/{LEAKY_POD}"} <= set(normal)
    assert not {"namespace payments", "node node-b", "cluster cluster"} & set(normal)


def test_a_scope_is_anomalous_while_one_of_its_pods_is() -> None:
    history = HistorySpec(duration_s=2 * HOUR).generate()
    by_name = {t.name: t for t in targets()}
    first_restart = history.crashy_restart_times[0]
    assert not is_anomalous(history, by_name["payments/crashy"], first_restart - 1)
    assert is_anomalous(history, by_name["payments/crashy"], first_restart)
    assert is_anomalous(history, by_name["payments"], history.start)  # throttled from the start
    assert is_anomalous(history, by_name["node-a"], history.start)  # the leak runs on node-a
    assert not is_anomalous(history, by_name["shop/cart"], history.end)


def test_healthy_scenarios_behave_healthily_in_the_generated_samples() -> None:
    end = 1_704_067_200.0
    sick, healthy = (
        generate_history(end=end, duration_s=HOUR),
        generate_history(end=end, duration_s=HOUR, healthy=SCENARIOS),
    )
    leak = [v for _, v in healthy.series("container_memory_working_set_bytes", pod=LEAKY_POD)]
    assert max(leak) - min(leak) < 40 * MiB
    assert sick.instant("kube_pod_container_status_restarts_total", end, pod=CRASHY_POD) == 12
    assert healthy.instant("kube_pod_container_status_restarts_total", end, pod=CRASHY_POD) == 0
    cpu = healthy.series("container_cpu_usage_seconds_total", pod=THROTTLED_POD)
    cores = (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0])
    assert cores == pytest.approx(0.25, abs=0.02)
    throttled = healthy.series("container_cpu_cfs_throttled_periods_total", pod=THROTTLED_POD)
    periods = healthy.series("container_cpu_cfs_periods_total", pod=THROTTLED_POD)
    assert (throttled[-1][1] - throttled[0][1]) / (periods[-1][1] - periods[0][1]) < 0.01
    assert set(sick.samples) == set(healthy.samples)  # the same series: only the values differ
    with pytest.raises(ValueError, match="unknown scenarios"):
        generate_history(end=end, duration_s=HOUR, healthy=["cart"])


def test_the_default_history_is_unchanged_by_the_options() -> None:
    end = 1_704_067_200.0
    assert (
        generate_history(end=end, duration_s=HOUR).openmetrics
        == generate_history(end=end, duration_s=HOUR, healthy=(), leak_end_bytes=950 * MiB).openmetrics
    )


def test_the_recipe_names_the_training_histories_and_evaluation_uses_other_seeds() -> None:
    assert recipe_id() == recipe_id(TRAINING_HISTORIES)
    assert recipe_id(TRAINING_HISTORIES[:-1]) != recipe_id()
    training_seeds = {h.seed for h in TRAINING_HISTORIES}
    assert not training_seeds & {h.seed for h in evaluation_histories()}
    with pytest.raises(ValueError, match="training seeds"):
        evaluation_histories([TRAINING_HISTORIES[0].seed])


def test_a_cached_model_from_another_recipe_is_stale_and_one_from_a_cluster_never(
    fitted: ReferenceModel,
) -> None:
    current = ReferenceModel(
        fitted.pipeline, fitted.medians, "v", {"source": "generated", "recipe": recipe_id()}
    )
    older = ReferenceModel(
        fitted.pipeline, fitted.medians, "v", {"history": {}, "pods": {}}
    )  # before recipes
    cluster = ReferenceModel(fitted.pipeline, fitted.medians, "v", {"source": "prometheus"})
    assert not is_stale(current) and is_stale(older) and not is_stale(cluster)


# ----------------------------------------------------------------------------- evaluation counts
def test_precision_recall_and_false_positive_rate_say_when_they_are_unknown() -> None:
    counts = Counts()
    for flagged, anomalous in [(True, True), (True, False), (False, True), (False, False), (False, False)]:
        counts.add(flagged, anomalous)
    assert (counts.precision, counts.recall, counts.false_positive_rate) == (0.5, 0.5, 1 / 3)
    nothing = Counts(true_negative=4)
    assert nothing.precision is None and nothing.recall is None and nothing.false_positive_rate == 0.0


def test_scoring_counts_the_models_verdicts_per_kind_and_scope(fitted: ReferenceModel) -> None:
    history = HistorySpec(healthy=SCENARIOS, duration_s=HOUR).generate()
    by_name = {t.name: t for t in targets()}
    rows = [
        Row(0, by_name["shop/cart"], history.end, False),
        Row(0, by_name["cluster"], history.end, True),
        Row(0, by_name["cluster"], history.end - 60, False),
    ]
    vectors = np.array([[0.3] * 36 + [0.0] * 9, [5.0] * N, [5.0] * N])
    result = score(fitted, [history], rows, vectors)
    assert result.by_kind["deployment"].true_negative == 1
    assert (result.by_kind["cluster"].true_positive, result.by_kind["cluster"].false_positive) == (1, 1)
    assert result.by_kind["pod"].rows == 0 and result.overall.rows == 3
    assert result.by_scope[(0, "cluster", "cluster")].precision == 0.5
    text = table(result)
    assert (
        "| cluster | 2 | 1 | 2 | 0.50 | 1.00 | 1.00 |" in text
        and "| pod | 0 | 0 | 0 | n/a | n/a | n/a |" in text
    )


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


def test_training_values_keep_nine_significant_digits_so_the_version_is_stable() -> None:
    a = np.array([[0.1 + 0.2, 1e-17, np.nan, 123456.7890123]])
    b = np.array([[0.3, 1.0000000000000001e-17, np.nan, 123456.7890124]])
    assert model_version(significant(a)) == model_version(significant(b))
    assert significant(a)[0, 3] == 123456.789 and np.isnan(significant(a)[0, 2])
