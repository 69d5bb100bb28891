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


def test_a_truncated_webhook_says_on_every_signal_how_many_alerts_alertmanager_cut() -> None:
    webhook = AlertmanagerWebhook.model_validate({**sample("alertmanager-webhook-firing.json"), "truncatedAlerts": 3})
    assert {to_signal(a, webhook, NOW).truncated_alerts for a in webhook.alerts} == {3}
    whole = AlertmanagerWebhook.model_validate(sample("alertmanager-webhook-firing.json"))
    assert {to_signal(a, whole, NOW).truncated_alerts for a in whole.alerts} == {0}


def test_lost_resolutions_resolve_only_open_alertmanager_alerts_alertmanager_no_longer_has() -> None:
    from pipeline.domain.alertmanager import lost_resolutions
    from pipeline.domain.correlation import correlate

    webhook = AlertmanagerWebhook.model_validate(sample("alertmanager-webhook-firing.json"))
    states = {}
    for alert in webhook.alerts:
        s = to_signal(alert, webhook, NOW)
        states[s.resource_key] = correlate(states.get(s.resource_key), s).state
    fingerprints = [a.fingerprint for a in webhook.alerts]
    assert len(fingerprints) >= 2
    still_active = fingerprints[1:]
    later = datetime(2026, 11, 23, tzinfo=UTC)
    (lost,) = lost_resolutions(states.values(), still_active, "http://am:9093", later)
    gone = webhook.alerts[0]
    assert (lost.fingerprint, lost.status, lost.inferred_by) == (gone.fingerprint, "resolved", "reconcile")
    assert lost.resource == resource_of(gone.labels) and lost.starts_at == gone.startsAt
    assert lost.ends_at is None and lost.observed_at == later  # Alertmanager no longer says when it ended
    # The same id as the real resolve notification would have: one arriving later is a duplicate.
    real_resolve = gone.model_copy(update={"status": "resolved"})
    assert lost.signal_id == signal_id(real_resolve)
    assert lost_resolutions(states.values(), fingerprints, "http://am:9093", later) == []
