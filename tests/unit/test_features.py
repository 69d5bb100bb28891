"""The 45-feature vector from aggregated samples: order, lags, windows, missing values and their reasons."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.features import (
    BASE_METRICS,
    FEATURE_NAMES,
    FEATURES,
    InvalidScope,
    Scope,
    base_queries,
    compute,
    grid,
    metric_features,
    node_lookup_query,
    scope_for,
)

AT = 1_800_000_000.0


def test_names_and_order_are_the_engines() -> None:
    assert len(FEATURE_NAMES) == 45
    assert FEATURE_NAMES[0] == "node_cpu_utilization_value"
    assert FEATURE_NAMES[15] == "node_memory_utilization_lag_5"
    assert FEATURE_NAMES[26] == "pod_cpu_usage_pct_change"
    assert FEATURE_NAMES[36] == "container_restart_count_value"
    assert FEATURE_NAMES[44] == "container_restart_count_pct_change"
    for m, metric in enumerate(BASE_METRICS):
        for f, feature in enumerate(FEATURES):
            assert FEATURE_NAMES[9 * m + f] == f"{metric}_{feature}"


def test_lags_are_the_values_one_and_five_minutes_ago() -> None:
    samples = [(t, float(i)) for i, t in enumerate(grid(AT))]  # 0..10, value at AT is 10
    values, reasons = metric_features(AT, samples)
    assert reasons == {}
    assert values["value"] == 10 and values["lag_1"] == 9 and values["lag_5"] == 5
    assert values["mean_5m"] == statistics.fmean([6, 7, 8, 9, 10])
    assert values["std_5m"] == pytest.approx(statistics.pstdev([6, 7, 8, 9, 10]))
    assert (values["min_5m"], values["max_5m"]) == (6, 10)
    assert values["diff"] == 1 and values["pct_change"] == pytest.approx(1 / 9)


def test_missing_values_have_reasons_and_no_invented_defaults() -> None:
    values, reasons = metric_features(AT, [(AT - 600, 1.0)])  # only a sample 10 minutes ago
    assert all(v is None for v in values.values())
    assert reasons["value"] == "no sample at the evaluation time"
    assert reasons["pct_change"] == "needs value and lag_1"


def test_pct_change_from_zero() -> None:
    flat = [(t, 0.0) for t in grid(AT)]
    assert metric_features(AT, flat)[0]["pct_change"] == 0.0
    jump = [*flat[:-1], (AT, 3.0)]
    values, reasons = metric_features(AT, jump)
    assert values["pct_change"] is None and "lag_1 is 0" in reasons["pct_change"]
    assert values["diff"] == 3.0


def test_non_finite_samples_never_leave() -> None:
    samples = [(t, math.nan if t == AT else 1.0) for t in grid(AT)]
    samples[-2] = (samples[-2][0], math.inf)
    values, reasons = metric_features(AT, samples)
    assert values["value"] is None and "finite" in reasons["value"]
    assert all(v is None or math.isfinite(v) for v in values.values())


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()), min_size=11, max_size=11))
def test_every_value_is_finite_or_missing_with_a_reason(raw: list[float | None]) -> None:
    samples = [(t, v) for t, v in zip(grid(AT), raw, strict=True) if v is not None]
    vector = compute(AT, dict.fromkeys(BASE_METRICS, samples))
    for name, value in vector.by_name().items():
        assert (value is not None and math.isfinite(value)) or name in vector.missing


def test_a_failed_metric_marks_its_nine_features_missing_with_the_reason() -> None:
    ok = [(t, 1.0) for t in grid(AT)]
    results = {m: ok for m in BASE_METRICS} | {"pod_memory_usage": "prometheus unavailable: ConnectError"}
    vector = compute(AT, results)
    assert set(vector.missing) == {f"pod_memory_usage_{f}" for f in FEATURES}
    assert set(vector.missing.values()) == {"prometheus unavailable: ConnectError"}
    assert vector.get("pod_cpu_usage_value") == 1.0


def test_scope_selectors_and_injection_attempts() -> None:
    queries = base_queries(Scope(namespace="shop", deployment="cart"), ["node-a"])
    assert 'pod=~"cart-[a-z0-9]+-[a-z0-9]+"' in queries["pod_cpu_usage"]
    assert 'namespace="shop"' in queries["container_restart_count"]
    assert 'node=~"node-a"' in queries["node_cpu_utilization"]
    assert node_lookup_query(Scope(namespace="shop", pod="p-1")) == 'count by (node) (kube_pod_info{namespace="shop",pod="p-1"})'
    assert node_lookup_query(Scope()) is None
    for bad in ('a"}or vector(1)', "Shop", "", "a" * 64, "ns\\"):
        with pytest.raises(InvalidScope) as error:
            Scope(namespace=bad)
        assert error.value.field == "namespace"
    with pytest.raises(InvalidScope):
        Scope(pod="p")  # a pod needs its namespace


def test_incident_scopes() -> None:
    assert scope_for("shop", "Pod/cart-1") == Scope(namespace="shop", pod="cart-1")
    assert scope_for("shop", "Deployment/cart") == Scope(namespace="shop", deployment="cart")
    assert scope_for("", "Node/worker-1") == Scope(node="worker-1")
    assert scope_for("shop", "Alert/Watchdog") == Scope(namespace="shop")
    assert scope_for("Not A Namespace", "Pod/x") == Scope()  # free-form labels widen the scope
