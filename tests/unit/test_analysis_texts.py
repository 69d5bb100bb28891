"""Texts of `POST /api/v1/anomalies/analyze` that the MCP server shows verbatim."""

from __future__ import annotations

from pipeline.domain import analysis


def _ml(target: str, namespace: str = "", pod: str = "") -> analysis.Finding:
    return analysis.Finding(
        metric="feature_vector", type="ml_anomaly", anomaly_score=0.85, value=0.85, expected_min=0.0,
        expected_max=0.5, namespace=namespace, pod=pod, explanation="x", recommended_action="immediate_investigation",
        model="anomaly-detector", target=target,
    )


def test_an_ml_finding_names_its_scope_in_the_recommendation() -> None:
    assert analysis.recommendations([_ml("cluster")]) == ["Investigate cluster now: the anomaly model flags its metrics"]
    assert analysis.recommendations([_ml("namespace shop", namespace="shop")]) == [
        "Investigate namespace shop now: the anomaly model flags its metrics"
    ]


def test_a_finding_without_target_falls_back_to_namespace_and_pod() -> None:
    finding = _ml("", namespace="shop", pod="cart-1")
    assert finding.subject == "shop/cart-1"
    assert _ml("").subject == "the cluster"


def test_the_throttling_alert_says_what_is_wrong_while_the_explanation_stays_parseable() -> None:
    finding = analysis.throttling("payments", "throttled-1", 0.6066)
    assert finding is not None
    assert finding.explanation == "payments/throttled-1"  # the MCP splits it into namespace and pod
    assert finding.metrics["throttle_rate_pct"] == 0.6066  # a fraction: the MCP multiplies by 100
    (alert,) = analysis.alerts([finding])
    assert alert["message"].startswith("payments/throttled-1: CPU throttled in 61% of its CFS periods")
    assert finding.model == "statistical-baseline"
