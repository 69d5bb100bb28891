"""Incidents as the REST API shows them: filters, paging, the summary, and manual creation."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.events import Incident, IncidentStatus, Severity

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Words clients use for an incident whose alerts resolved, and for one still open.
_STATUS_ALIASES = {"resolved": IncidentStatus.COMPLETED, "open": IncidentStatus.ACTIVE}


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
            namespace=_no_filter(namespace),
            severity=_enum(Severity, "severity", _no_filter(severity)),
            status=_status(_no_filter(status)),
            limit=_int("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset=_int("offset", offset, 0, 0, 10**9),
        )

    def matches(self, incident: Incident) -> bool:
        return (
            (self.namespace is None or self.namespace in (incident.namespace, incident.target))
            and (self.severity is None or incident.severity == self.severity)
            and (self.status is None or incident.status == self.status)
        )


def _no_filter(value: str | None) -> str | None:
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


def _int(field: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidQuery(field, f"{field} must be an integer") from None
    if not low <= value <= high:
        raise InvalidQuery(field, f"{field} must be between {low} and {high}")
    return value


def newest_first(incidents: Iterable[Incident]) -> list[Incident]:
    return sorted(incidents, key=lambda i: (i.created_at, i.id), reverse=True)


def select(incidents: Iterable[Incident], query: IncidentQuery) -> tuple[list[Incident], list[Incident]]:
    """All incidents matching the filters (newest first), and the requested page of them."""
    matching = newest_first(i for i in incidents if query.matches(i))
    return matching, matching[query.offset : query.offset + query.limit]


def summary(incidents: Iterable[Incident]) -> dict[str, Any]:
    """The `summary` object the MCP server reads: counts over all matching incidents, not just the page."""
    counts = {"total": 0, "active": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0}
    by_severity = {s.value: 0 for s in Severity}
    for incident in incidents:
        counts["total"] += 1
        counts[incident.status.value] += 1
        by_severity[incident.severity.value] += 1
    return {**counts, "by_severity": by_severity}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def with_workflow(incident: Incident, workflow_id: str, action: str, status: str,
                  completed_at: datetime | None) -> Incident:
    """The incident as the MCP server should see it while a workflow remediates it: `running` while the workflow
    runs, `completed` or `failed` from its outcome (its alerts' resolution still completes it); otherwise the
    incident's own status. Carries the workflow's id and action."""
    update: dict[str, Any] = {"workflow_id": workflow_id, "action_type": action}
    if incident.status == IncidentStatus.ACTIVE:
        if status == "running":
            update["status"] = IncidentStatus.RUNNING
        elif status in ("completed", "failed"):
            update["status"] = IncidentStatus(status)
            update["resolved_at"] = completed_at
    return incident.model_copy(update=update)


def to_api(incident: Incident) -> dict[str, Any]:
    """One incident in the list shape: the MCP server's fields plus the engine's."""
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
        "action_type": incident.action_type,
        "source": incident.source,
        "confidence": incident.confidence,
        "parameters": incident.parameters,
        "created_at": _iso(incident.created_at),
        "updated_at": _iso(incident.updated_at),
        "started_at": _iso(incident.created_at),
        "completed_at": _iso(finished),
        "resolved_at": _iso(incident.resolved_at),
        "duration_seconds": duration,
        "tags": incident.tags,
        "namespace": incident.namespace,
        "resource": incident.resource,
        "issue_type": incident.issue_type,
        "workflow_id": incident.workflow_id,
        "labels": incident.labels,
        "affected_resources": incident.affected_resources,
        "correlation_id": incident.correlation_id,
        "external_id": incident.external_id,
        "signal_count": incident.signal_count,
        "alerts": [
            {
                "fingerprint": s.fingerprint,
                "name": s.name,
                "source": s.source,
                "status": s.status,
                "severity": s.severity.value,
                "starts_at": _iso(s.starts_at),
                "ends_at": _iso(s.ends_at),
                "summary": s.summary,
            }
            for s in incident.signals.values()
        ],
    }


def new_manual_incident(
    *,
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
    """An incident created through the API. `target` defaults to the namespace label, else 'cluster'."""
    labels = labels or {}
    target = target or labels.get("namespace") or "cluster"
    return Incident(
        id="inc-" + uuid.uuid4().hex[:12],
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
    )
