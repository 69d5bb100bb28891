"""Signals, incidents, feature vectors and scores."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.events.base import IncidentStatus, Payload, Severity


class Resource(BaseModel):
    """The Kubernetes object a signal or incident is about. Cluster-scoped objects have namespace ''."""

    model_config = ConfigDict(frozen=True)
    namespace: str = ""
    kind: str
    name: str

    @property
    def key(self) -> str:
        """Partition key of everything about this resource: `namespace/Kind/name`."""
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


class Signal(Payload):
    """One observation about one resource: an alert instance changed state, or a cluster event happened.

    `signal_id` is deterministic for an alert instance and status, so a redelivered webhook yields the same id.
    """

    event_type: ClassVar[str] = "pipeline.signal.observed.v1"
    key_field: ClassVar[str] = "resource_key"

    signal_id: str
    source: Literal["alertmanager", "kubernetes", "manual"]
    origin: str = Field("", description="Where it came from: Alertmanager externalURL, cluster name, ...")
    resource: Resource
    name: str = Field(description="alertname, or the Kubernetes reason (CrashLoopBackOff, ...)")
    status: Literal["firing", "resolved"]
    severity: Severity
    summary: str = ""
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    fingerprint: str = Field(description="Stable identity of the alert (label-set hash) within its source")
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    observed_at: datetime = Field(description="When the pipeline received it (not when it happened: starts_at)")
    truncated_alerts: int = Field(
        0, ge=0, description="Alerts Alertmanager cut from the webhook that carried this alert (its truncatedAlerts)"
    )
    inferred_by: Literal["reconcile"] | None = Field(
        None,
        description="Set when the pipeline produced this signal instead of its source: `reconcile` resolves an "
        "open alert that Alertmanager no longer lists as active (its resolve notification was lost)",
    )

    @property
    def resource_key(self) -> str:
        return self.resource.key


class AttachedSignal(BaseModel):
    """The latest state of one alert (or event kind) attached to an incident."""

    fingerprint: str
    name: str
    source: str
    status: Literal["firing", "resolved"]
    severity: Severity
    starts_at: datetime
    ends_at: datetime | None = None
    last_signal_id: str
    summary: str = ""
    firing_seen: bool = Field(True, description="False when the alert was first received already resolved")
    resolved_by: Literal["source", "reconcile"] | None = Field(
        None, description="Who said it resolved: its source, or reconcile (absent from Alertmanager's active alerts)"
    )


class Incident(BaseModel):
    """An incident: everything wrong with one resource from its first firing signal until all resolved."""

    id: str
    title: str
    description: str = ""
    severity: Severity
    status: IncidentStatus = IncidentStatus.ACTIVE
    source: str
    namespace: str = ""
    resource: str = Field("", description="Kind/name of the affected object")
    resource_key: str = ""
    target: str = ""
    issue_type: str = ""
    signals: dict[str, AttachedSignal] = Field(
        default_factory=dict,
        description="Alerts by fingerprint. In a change record on the `incidents` topic: only the alerts that change "
        "attached or changed (a delta, so a record's size does not grow with the incident; fold the records, as the "
        "read model does). In the read model: at most INCIDENT_ALERTS_LISTED of them, firing ones first; "
        "`alerts_total` and `alerts_firing` count them all",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    affected_resources: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    confidence: float | None = None
    correlation_id: str | None = None
    external_id: str | None = None
    created_by: str | None = None
    workflow_id: str | None = None
    action_type: str | None = Field(None, description="The action of the incident's latest workflow")
    created_at: datetime = Field(description="When it started: the earliest startsAt of its alerts (event time)")
    updated_at: datetime = Field(description="When the pipeline last changed it (receive time; orders the changes)")
    resolved_at: datetime | None = Field(None, description="When it ended: the latest endsAt of its alerts")
    received_at: datetime | None = Field(None, description="When the pipeline received its first signal")
    signal_count: int = Field(0, description="Signals attached (every state change of every alert)")
    alerts_total: int = Field(0, ge=0, description="Distinct alerts (fingerprints) attached")
    alerts_firing: int = Field(0, ge=0, description="Attached alerts firing now")
    truncated_alerts: int = Field(
        0, ge=0, description="The most alerts Alertmanager cut (truncatedAlerts) from a webhook that brought alerts "
        "to this incident: alerts of the same group may be missing"
    )


class IncidentChange(Payload):
    """An incident changed; the payload carries the incident after the change (event-carried state), with only
    the alerts this change attached or changed in `incident.signals` (a delta: its size stays constant however
    many alerts the incident has; `alerts_total`/`alerts_firing` count them all)."""

    key_field: ClassVar[str] = "incident_id"
    incident: Incident
    signal_id: str | None = Field(None, description="The signal that caused the change, if any")

    @property
    def incident_id(self) -> str:
        return self.incident.id


class IncidentOpened(IncidentChange):
    """A new incident: the first firing signal for a resource, or one created through the API."""

    event_type: ClassVar[str] = "pipeline.incident.opened.v1"


class IncidentUpdated(IncidentChange):
    """A signal was attached to an open incident, or an attached alert changed state."""

    event_type: ClassVar[str] = "pipeline.incident.updated.v1"


class IncidentResolved(IncidentChange):
    """Every alert attached to the incident has resolved."""

    event_type: ClassVar[str] = "pipeline.incident.resolved.v1"


class CorrelationState(Payload):
    """The correlate stage's state of one resource: its open incident (with every attached alert) and the
    signal ids it saw last. On its compacted changelog the incident's alerts are not in this record
    (`incident.signals` is empty there): each alert is its own `CorrelatedAlert` record, so a record's size
    does not grow with the incident (`domain.correlation.StateAssembly` puts them back together)."""

    event_type: ClassVar[str] = "pipeline.correlation.state.v1"
    key_field: ClassVar[str] = "resource_key"
    resource_key: str
    incident: Incident | None = None
    recent_signal_ids: list[str] = Field(default_factory=list)
    firing_by_severity: dict[str, int] = Field(
        default_factory=dict, description="Firing alerts of the open incident per severity (its severity is the highest)"
    )


class CorrelatedAlert(Payload):
    """Changelog record of the correlate stage: one alert of a resource's open incident (compacted topic, key
    `resource key#fingerprint`; a tombstone once the incident resolves)."""

    event_type: ClassVar[str] = "pipeline.correlation.alert.v1"
    key_field: ClassVar[str] = "key"
    resource_key: str
    incident_id: str
    alert: AttachedSignal

    @property
    def key(self) -> str:
        return alert_key(self.resource_key, self.alert.fingerprint)


def alert_key(resource_key: str, fingerprint: str) -> str:
    """The changelog key of one alert of a resource's incident."""
    return f"{resource_key}#{fingerprint}"


class FeaturesComputed(Payload):
    """The anomaly-detector's 45-feature vector for an incident, with the provenance of every value.

    `values[i]` is the feature named `feature_names[i]`; None means missing, and `missing[name]` says why.
    """

    event_type: ClassVar[str] = "pipeline.features.computed.v1"
    key_field: ClassVar[str] = "incident_id"
    incident_id: str
    scope: dict[str, str] = Field(description="namespace / deployment / pod / node the vector describes")
    evaluated_at: datetime
    feature_names: list[str]
    values: list[float | None]
    missing: dict[str, str] = Field(default_factory=dict)
    query_count: int
    query_seconds: float
    source: str = Field("", description="The Prometheus / Thanos URL queried")
    target: str = Field("", description="The incident's resource key, namespace/Kind/name")
    severity: Severity | None = Field(None, description="The incident's severity when the vector was computed")


class RecommendedAction(BaseModel):
    action: str
    confidence: float
    reason: str


class ScoreComputed(Payload):
    """An ML verdict on an incident's feature vector, or "degraded" (rules only) with the reason."""

    event_type: ClassVar[str] = "pipeline.score.computed.v1"
    key_field: ClassVar[str] = "incident_id"
    incident_id: str
    verdict: Literal["anomaly", "normal", "degraded"]
    model: str | None = None
    model_version: str | None = None
    score: float | None = Field(None, description="0..1, higher is more anomalous")
    confidence: float | None = None
    prediction: int | None = Field(None, description="-1 anomaly, 1 normal")
    recommended_actions: list[RecommendedAction] = Field(default_factory=list)
    degraded_reason: str | None = None
    source: str = Field("", description="kserve | ml-service | rules")
    latency_seconds: float = 0.0
    features_event_id: str
    target: str = Field("", description="The incident's resource key, namespace/Kind/name (from the features)")
    namespace: str = ""
    severity: Severity | None = None
