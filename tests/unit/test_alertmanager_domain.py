"""Normalising Alertmanager webhooks into signals: pure functions, real captured payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.domain.alertmanager import AlertmanagerWebhook, resource_of, severity_of, signal_id, to_signal
from pipeline.events import Resource, Severity
from tests.support import sample

NOW = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"namespace": "shop", "pod": "cart-1", "deployment": "cart"}, Resource(namespace="shop", kind="Pod", name="cart-1")),
        ({"namespace": "shop", "deployment": "cart"}, Resource(namespace="shop", kind="Deployment", name="cart")),
        ({"namespace": "db", "statefulset": "pg"}, Resource(namespace="db", kind="StatefulSet", name="pg")),
        ({"node": "worker-3", "namespace": "ignored"}, Resource(namespace="", kind="Node", name="worker-3")),
        ({"alertname": "Watchdog"}, Resource(namespace="", kind="Alert", name="Watchdog")),
    ],
)
def test_resource_is_the_most_specific_object_named_by_the_labels(labels: dict, expected: Resource) -> None:
    assert resource_of(labels) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("critical", Severity.CRITICAL), ("page", Severity.CRITICAL), ("error", Severity.HIGH),
     ("warning", Severity.MEDIUM), ("Warning", Severity.MEDIUM), ("info", Severity.LOW),
     ("none", Severity.LOW), ("", Severity.MEDIUM), ("bizarre", Severity.MEDIUM)],
)
def test_severity_words_map_onto_the_engine_vocabulary(word: str, expected: Severity) -> None:
    assert severity_of({"severity": word} if word else {}) == expected


def test_captured_firing_webhook_becomes_one_signal_per_alert() -> None:
    webhook = AlertmanagerWebhook.model_validate(sample("alertmanager-webhook-firing.json"))
    signals = [to_signal(a, webhook, NOW) for a in webhook.alerts]
    assert [s.resource_key for s in signals] == ["shop/Pod/cart-7d9f8b6c5-hw7kz", "shop/Pod/cart-7d9f8b6c5-x2x9q"]
    first = signals[0]
    assert first.status == "firing" and first.severity == Severity.CRITICAL
    assert first.ends_at is None  # Alertmanager's zero time means "no end yet"
    assert first.summary.startswith("Container app in shop/")
    assert first.origin == "http://127.0.0.1:19093"


def test_resolved_webhook_keeps_the_end_time() -> None:
    webhook = AlertmanagerWebhook.model_validate(sample("alertmanager-webhook-resolved-from-prometheus.json"))
    signal = to_signal(webhook.alerts[0], webhook, NOW)
    assert signal.status == "resolved" and signal.ends_at is not None and signal.ends_at > signal.starts_at


def test_signal_id_identifies_an_alert_instance_and_status() -> None:
    webhook = AlertmanagerWebhook.model_validate(sample("alertmanager-webhook-firing.json"))
    alert = webhook.alerts[0]
    again = AlertmanagerWebhook.model_validate(sample("alertmanager-webhook-firing.json")).alerts[0]
    assert signal_id(alert) == signal_id(again)
    resolved = alert.model_copy(update={"status": "resolved"})
    restarted = alert.model_copy(update={"startsAt": NOW})
    assert len({signal_id(alert), signal_id(resolved), signal_id(restarted)}) == 3
