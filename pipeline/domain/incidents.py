"""Incidents as the REST API shows them: the read model's fold of the change records, the query filters, the API
shape and manual creation. Listing, filtering and counting read IncidentRows (pipeline/domain/incident_index.py), so a
read model answers them without holding every incident decoded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.events import AttachedSignal, Incident, IncidentStatus, Severity, iso_z

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Words clients use for an incident whose alerts resolved, and for one still open.
_STATUS_ALIASES = {"resolved": IncidentStatus.COMPLETED, "open": IncidentStatus.ACTIVE}


def fold(current: Incident | None, change: Incident, listed: int) -> Incident:
    """The read model's incident after a change record. The record carries only the alerts its change touched;
    they are merged into the ones listed, at most `listed` of them (`list_alerts`). The newest record (by
    `updated_at`) gives every other field; an older one arriving late only adds alerts not listed yet. A record
    written before records carried deltas holds every alert: its counts are taken from them."""
    if change.alerts_total < len(change.signals):  # a whole incident (older records): count its alerts
        firing = sum(1 for a in change.signals.values() if a.status == "firing")
        change = change.model_copy(update={"alerts_total": len(change.signals), "alerts_firing": firing})
    if current is None:
        return change.model_copy(update={"signals": list_alerts({}, change.signals, listed)})
    if change.updated_at >= current.updated_at:
        return change.model_copy(update={"signals": list_alerts(current.signals, change.signals, listed)})
    late = {fp: a for fp, a in change.signals.items() if fp not in current.signals}
    return current.model_copy(update={"signals": list_alerts(current.signals, late, listed)}) if late else current


def list_alerts(
    listed: dict[str, AttachedSignal], changed: dict[str, AttachedSignal], limit: int
) -> dict[str, AttachedSignal]:
    """The alerts an incident lists after some changed: a listed one is updated; a new one is added while fewer
    than `limit` are listed, else a firing one takes the place of the earliest-listed resolved one and a
    resolved one (or a firing one with every listed alert firing) is counted, not listed."""
    out = dict(listed)
    for fingerprint, alert in changed.items():
        if fingerprint not in out and len(out) >= limit:
            if alert.status != "firing":
                continue
            resolved = next((fp for fp, a in out.items() if a.status != "firing"), None)
            if resolved is None:
                continue
            del out[resolved]
        out[fingerprint] = alert
    return out


class InvalidQuery(ValueError):
    """A query parameter has a value we do not understand; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """`GET /api/v1/incidents` filters. `None` means no filter (`all` and empty map to it)."""

    namespace: str | None = None
    severity: Severity | None = None
    status: IncidentStatus | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(
        cls,
        namespace: str | None,
        severity: str | None,
        status: str | None,
        limit: str | None,
        offset: str | None,
    ) -> IncidentQuery:
        """Validate raw query strings; raise InvalidQuery naming the parameter."""
        return cls(
            namespace=no_filter(namespace),
            severity=_enum(Severity, "severity", no_filter(severity)),
            status=_status(no_filter(status)),
            limit=int_param("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset=int_param("offset", offset, 0, 0, 10**9),
        )



def no_filter(value: str | None) -> str | None:
    """A query value; None (no filter) for absent, empty or `all`."""
    value = (value or "").strip()
    return None if value.lower() in ("", "all") else value


def _enum(kind: Any, field: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return kind(value.lower())
    except ValueError:
        allowed = ", ".join(["all", *(m.value for m in kind)])
        raise InvalidQuery(field, f"{field} must be one of: {allowed}") from None


def _status(value: str | None) -> IncidentStatus | None:
    if value is not None and value.lower() in _STATUS_ALIASES:
        return _STATUS_ALIASES[value.lower()]
    return _enum(IncidentStatus, "status", value)  # type: ignore[no-any-return]


def int_param(field: str, raw: str | None, default: int, low: int, high: int) -> int:
    """An integer query value in [low, high] (`default` when absent); InvalidQuery naming `field` otherwise."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidQuery(field, f"{field} must be an integer") from None
    if not low <= value <= high:
        raise InvalidQuery(field, f"{field} must be between {low} and {high}")
    return value


# How sure the pipeline is that an incident is real, when nobody stated it. Alert and Kubernetes incidents are
# built only from observations -- an alert Alertmanager reports firing, an object state or event read from the
# API server -- attached by exact resource key (pipeline/domain/correlation.py): nothing is inferred, so 1.0.
# An incident created through the API or an anomaly report carries the caller's confidence; without one, it
# is taken as stated (1.0, the Python engine's default for anomaly reports too).
OBSERVED = 1.0

# `action_type` when no action is or was carried out for the incident (the MCP server decodes it into a
# string, so a null would show as "" as if it were data).
NO_ACTION = "none"
# The remediation states (`remediation_status`): a proposal not decided yet by arbitration, one waiting for a
# human, one approved (`pending` until a remediator runs it, then `running`, `completed`, `failed`), and the
# ones where nothing is done (`rejected`, `superseded`, `skipped`, `cancelled`).
PENDING_DECISION = "pending_decision"
AWAITING_APPROVAL = "awaiting_approval"
ACTED = frozenset({"pending", "running", "completed", "failed"})  # approved: the action is or was carried out
REMEDIATION_STATES = (PENDING_DECISION, AWAITING_APPROVAL, *sorted(ACTED), "rejected", "superseded", "skipped",
                      "cancelled")


def confidence_of(incident: Incident) -> float:
    """The incident's confidence: the stated one, else OBSERVED (see above)."""
    return OBSERVED if incident.confidence is None else incident.confidence


@dataclass(frozen=True, slots=True)
class Remediation:
    """What is being done about an incident: its chosen proposal's action and state (one of REMEDIATION_STATES),
    the workflow id, when it finished, and whether it is a dry run."""

    state: str
    action: str
    workflow_id: str | None = None
    completed_at: datetime | None = None
    dry_run: bool = False

    @property
    def rank(self) -> int:
        """Which of an incident's proposals speaks for it: an approved action over one waiting for a human over
        one not decided over one where nothing is done."""
        if self.state in ACTED:
            return 3
        return {AWAITING_APPROVAL: 2, PENDING_DECISION: 1}.get(self.state, 0)


def action_type(remediation: Remediation | None) -> str:
    """`action_type` as the MCP server shows it: the action once approved (pending, running, completed, failed),
    `awaiting_approval` or `pending_decision` while it waits, else `none`."""
    if remediation is None:
        return NO_ACTION
    if remediation.state in ACTED:
        return remediation.action
    if remediation.state in (AWAITING_APPROVAL, PENDING_DECISION):
        return remediation.state
    return NO_ACTION


def with_remediation(incident: Incident, remediation: Remediation | None) -> Incident:
    """The incident as the MCP server should see it: `action_type` always a string (see `action_type`), the
    workflow id, and the MCP status vocabulary while an approved action works on it -- `running` while it runs,
    `completed` or `failed` from its outcome (its alerts' resolution still completes it). A dry run never changes
    the incident's status: it changed nothing in the cluster."""
    if remediation is None:
        return incident  # `to_api` shows `none`
    update: dict[str, Any] = {"action_type": action_type(remediation)}
    if remediation.workflow_id:
        update["workflow_id"] = remediation.workflow_id
    status = shown_status(incident.status, remediation)
    if status != incident.status:
        update["status"] = status
        if status != IncidentStatus.RUNNING:
            update["resolved_at"] = remediation.completed_at
    return incident.model_copy(update=update)


def shown_status(status: IncidentStatus, remediation: Remediation | None) -> IncidentStatus:
    """The status `with_remediation` shows for an incident of `status`."""
    if remediation is None or status != IncidentStatus.ACTIVE or remediation.dry_run:
        return status
    if remediation.state == "running":
        return IncidentStatus.RUNNING
    if remediation.state in ("completed", "failed"):
        return IncidentStatus(remediation.state)
    return status


def with_workflow(incident: Incident, workflow_id: str, action: str, status: str,
                  completed_at: datetime | None) -> Incident:
    """`with_remediation` for a workflow a remediator has (its status is the remediation state)."""
    return with_remediation(incident, Remediation(status, action, workflow_id, completed_at))


def to_api(incident: Incident, remediation: Remediation | None = None) -> dict[str, Any]:
    """One incident in the list shape: the MCP server's fields plus the engine's and ours. Every field the MCP
    server decodes into a non-pointer Go type is never null (`action_type`, `confidence`); `completed_at` and
    `duration_seconds` (Go pointers) are null until the incident is finished. `created_at`/`started_at` and
    `completed_at` are the alerts' own times (startsAt, endsAt); `received_at` is when the pipeline got it."""
    finished = incident.resolved_at if incident.status != IncidentStatus.ACTIVE else None
    duration = (finished - incident.created_at).total_seconds() if finished else None
    return {
        "id": incident.id,
        "title": incident.title,
        "description": incident.description,
        "severity": incident.severity.value,
        "status": incident.status.value,
        "priority": incident.severity.priority,
        "target": incident.target,
        "action_type": incident.action_type or action_type(remediation),
        "source": incident.source,
        "confidence": confidence_of(incident),
        "parameters": incident.parameters,
        "created_at": iso_z(incident.created_at),
        "updated_at": iso_z(incident.updated_at),
        "started_at": iso_z(incident.created_at),
        "completed_at": iso_z(finished),
        "resolved_at": iso_z(incident.resolved_at),
        "received_at": iso_z(incident.received_at),
        "duration_seconds": duration,
        "tags": incident.tags,
        "namespace": incident.namespace,
        "resource": incident.resource,
        "issue_type": incident.issue_type,
        "workflow_id": incident.workflow_id,
        "remediation_status": (remediation.state if remediation
                               else NO_ACTION if incident.workflow_id is None else None),
        "remediation_dry_run": remediation.dry_run if remediation else None,
        "labels": incident.labels,
        "affected_resources": incident.affected_resources,
        "correlation_id": incident.correlation_id,
        "external_id": incident.external_id,
        "signal_count": incident.signal_count,
        "alerts_total": max(incident.alerts_total, len(incident.signals)),
        "alerts_firing": incident.alerts_firing,
        "alerts_listed": len(incident.signals),
        "truncated_alerts": incident.truncated_alerts,
        "alerts": [
            {
                "fingerprint": s.fingerprint,
                "name": s.name,
                "source": s.source,
                "status": s.status,
                "severity": s.severity.value,
                "starts_at": iso_z(s.starts_at),
                "ends_at": iso_z(s.ends_at),
                "summary": s.summary,
                "firing_seen": s.firing_seen,
                "resolved_by": s.resolved_by,
            }
            for s in incident.signals.values()
        ],
    }


def new_manual_incident(
    *,
    incident_id: str,
    title: str,
    description: str,
    severity: Severity,
    now: datetime,
    target: str | None = None,
    source: str | None = None,
    labels: dict[str, str] | None = None,
    affected_resources: list[str] | None = None,
    correlation_id: str | None = None,
    external_id: str | None = None,
    created_by: str | None = None,
    confidence: float | None = None,
    parameters: dict[str, Any] | None = None,
) -> Incident:
    """An incident created through the API, under the id the caller chose (`inc-<hex>`, see the gateway).
    `target` defaults to the namespace label, else 'cluster'."""
    labels = labels or {}
    target = target or labels.get("namespace") or "cluster"
    return Incident(
        id=incident_id,
        title=title,
        description=description,
        severity=severity,
        status=IncidentStatus.ACTIVE,
        source=source or "manual",
        namespace=labels.get("namespace", ""),
        target=target,
        labels=labels,
        affected_resources=affected_resources or [],
        tags=[source or "manual"],
        parameters=parameters or {},
        confidence=confidence,
        correlation_id=correlation_id,
        external_id=external_id,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        received_at=now,
    )
