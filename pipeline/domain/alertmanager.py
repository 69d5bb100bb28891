"""Alertmanager webhook v4 payloads, and how each alert in one becomes a Signal."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.events import CorrelationState, Resource, Severity, Signal
from pipeline.events.base import uuid5_str

# Alertmanager sends this for "no end yet".
ZERO_TIME_YEAR = 1
_SIGNAL_NAMESPACE = uuid.UUID("6f1d2a8e-3c55-4c1e-9a43-0d9a1f0b7e21")

# Which label names the object an alert is about, most specific first.
_RESOURCE_LABELS: tuple[tuple[str, str], ...] = (
    ("pod", "Pod"),
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("job_name", "Job"),
    ("cronjob", "CronJob"),
    ("persistentvolumeclaim", "PersistentVolumeClaim"),
    ("service", "Service"),
    ("node", "Node"),
)
_CLUSTER_SCOPED = {"Node"}

_SEVERITY_WORDS = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "high": Severity.HIGH,
    "error": Severity.HIGH,
    "major": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "minor": Severity.MEDIUM,
    "low": Severity.LOW,
    "info": Severity.LOW,
    "none": Severity.LOW,
}


class WebhookAlert(BaseModel):
    """One alert in a webhook. Unknown fields are ignored; these are the ones we need."""

    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=128)


class AlertmanagerWebhook(BaseModel):
    """Alertmanager webhook payload, version 4 (the only version Alertmanager has sent since 0.7)."""

    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert] = Field(max_length=10_000)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0


def resource_of(labels: dict[str, str]) -> Resource:
    """The object an alert is about: the most specific resource label, else the alert name itself."""
    namespace = labels.get("namespace", "")
    for label, kind in _RESOURCE_LABELS:
        name = labels.get(label)
        if name:
            return Resource(namespace="" if kind in _CLUSTER_SCOPED else namespace, kind=kind, name=name)
    return Resource(namespace=namespace, kind="Alert", name=labels.get("alertname", "unnamed"))


def severity_of(labels: dict[str, str]) -> Severity:
    """Map the many severity words in use onto the engine's four; unknown words count as medium."""
    word = labels.get("severity", "").strip().lower()
    if not word:
        return Severity.MEDIUM
    return _SEVERITY_WORDS.get(word, Severity.MEDIUM)


def alert_instance_key(alert: WebhookAlert) -> str:
    """Alertmanager is at least once; this identifies one delivery's content: fingerprint, start, status."""
    return f"{alert.fingerprint}|{alert.startsAt.isoformat()}|{alert.status}"  # see instance_signal_id


def signal_id(alert: WebhookAlert) -> str:
    """Deterministic, so a redelivered alert maps to the same signal id everywhere downstream."""
    return uuid5_str(_SIGNAL_NAMESPACE, alert_instance_key(alert))


def instance_signal_id(fingerprint: str, starts_at: datetime, status: str) -> str:
    """`signal_id` of the alert instance `fingerprint`/`starts_at` in `status`, without its webhook."""
    return uuid5_str(_SIGNAL_NAMESPACE, f"{fingerprint}|{starts_at.isoformat()}|{status}")


def lost_resolutions(
    states: Iterable[CorrelationState], active: Collection[str], origin: str, now: datetime
) -> list[Signal]:
    """Resolved signals for the firing Alertmanager alerts of open incidents whose fingerprint is not among
    Alertmanager's unresolved alerts (`active`, from `GET /api/v2/alerts`): their resolve notification was lost.
    Each has the id the real resolve notification would have (so one arriving later is a duplicate), no
    `ends_at` (Alertmanager no longer says when it ended), `observed_at` now and `inferred_by="reconcile"`."""
    out: list[Signal] = []
    for state in states:
        incident = state.incident
        if incident is None:
            continue
        namespace, kind, name = state.resource_key.split("/", 2)
        for alert in incident.signals.values():
            if alert.source != "alertmanager" or alert.status != "firing" or alert.fingerprint in active:
                continue
            out.append(
                Signal(
                    signal_id=instance_signal_id(alert.fingerprint, alert.starts_at, "resolved"),
                    source="alertmanager",
                    origin=origin,
                    resource=Resource(namespace=namespace, kind=kind, name=name),
                    name=alert.name,
                    status="resolved",
                    severity=alert.severity,
                    summary=alert.summary,
                    labels={"alertname": alert.name},
                    fingerprint=alert.fingerprint,
                    starts_at=alert.starts_at,
                    observed_at=now,
                    inferred_by="reconcile",
                )
            )
    return out


def to_signal(alert: WebhookAlert, webhook: AlertmanagerWebhook, observed_at: datetime,
              sid: str | None = None) -> Signal:
    """Normalise one alert of a webhook into a Signal (`sid`: its `signal_id`, when the caller has it)."""
    ends_at = alert.endsAt if alert.endsAt and alert.endsAt.year > ZERO_TIME_YEAR else None
    return Signal(
        signal_id=sid or signal_id(alert),
        source="alertmanager",
        origin=webhook.externalURL,
        resource=resource_of(alert.labels),
        name=alert.labels.get("alertname", "unnamed"),
        status=alert.status,
        severity=severity_of(alert.labels),
        summary=alert.annotations.get("summary", ""),
        description=alert.annotations.get("description", alert.annotations.get("message", "")),
        labels=alert.labels,
        annotations=alert.annotations,
        fingerprint=alert.fingerprint,
        starts_at=alert.startsAt,
        ends_at=ends_at,
        generator_url=alert.generatorURL,
        observed_at=observed_at,
        truncated_alerts=max(webhook.truncatedAlerts, 0),
    )
