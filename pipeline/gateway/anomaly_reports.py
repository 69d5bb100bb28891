"""The Python coordination engine's anomaly routes: `POST /api/v1/anomalies` (an anomaly report, not an
Alertmanager webhook) and `GET /api/v1/anomalies/{anomaly_id}`.

A report becomes an `IncidentOpened` on `incidents` whose id is the `anomaly_id` (read your writes), and, when
it names a resource, a remediation proposal on `remediation` (read your writes) that passes the same
arbitration as every other proposal. Its `action_id` is the proposal id, its `workflow_id` the workflow the
remediate stage runs for it.

Layers (the Python engine's `deterministic` and `ai_driven`): a report is **deterministic** when a rule of
`rules/remediation.yaml` matches its type (and resource kind), it does not ask for a different action, and its
confidence (1.0 when absent, the Python engine's default) is at least `CONFIDENCE_THRESHOLD`; otherwise it is
**ai_driven**. The proposal's source follows the layer (`deterministic` with the rule, or `ai` with the report's
confidence), so arbitration applies the same confidence threshold, approval rules and pause as to the score
stage's proposals — a detector's report is never treated as an operator's command.

The report's resource is kept in `affected_resources` and `parameters.resource`, not in the incident's
`resource`: the propose stage derives rule proposals from incidents with a `resource`, and this route proposes
the action itself (once).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.adapters.rules import load_rules
from pipeline.api.contract import PUBLISH_ERRORS, op
from pipeline.api.errors import ApiError, from_pydantic
from pipeline.api.requests import read_json, require_token
from pipeline.bus.producer import EventProducer
from pipeline.config import Settings
from pipeline.domain.arbitration import FALLBACK_ACTION, Rules, proposal_id
from pipeline.domain.incidents import new_manual_incident, to_api, with_workflow
from pipeline.domain.names import is_dns_label, is_dns_subdomain
from pipeline.events import Event, Incident, IncidentOpened, Proposal, RemediationProposed, Severity, iso_z
from pipeline.gateway.bodies import new_incident_id
from pipeline.gateway.projection import IncidentProjection, publish_visible
from pipeline.gateway.remediation_view import RemediationView, decision_view, workflow_view
from pipeline.gateway.responses import AnomalyAccepted, AnomalyView

MAX_BODY = 256 * 1024
DETERMINISTIC, AI_DRIVEN = "deterministic", "ai_driven"
ESTIMATED_RESOLUTION = "5m"  # the same fixed estimate as `POST /api/v1/remediation/trigger`
FINISHED = frozenset({"completed", "failed", "rejected", "superseded", "skipped", "cancelled"})
_WORKFLOW_NAMESPACE = uuid.UUID("5d0c1e7a-8a4b-4f5e-9b61-2f7f1c3a9e24")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]{0,62}")
_CLUSTER_SCOPED = frozenset({"Node", "Namespace", "PersistentVolume"})
# Kinds as detectors write them (`resource_type: "pod"`) -> Kubernetes kinds.
_KINDS = {k.lower(): k for k in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                                 "Node", "Namespace", "Service", "PersistentVolumeClaim", "PersistentVolume")}
# `details` keys of the Python engine's examples that name the affected object.
_DETAIL_KINDS = (("pod", "Pod"), ("deployment", "Deployment"), ("statefulset", "StatefulSet"),
                 ("daemonset", "DaemonSet"), ("node", "Node"))
# The Python engine's action names (its ActionType mapping and predictions) -> our catalogue.
ACTION_ALIASES = {
    "scale_deployment": "scale_replicas",
    "scale_up": "scale_replicas",
    "increase_memory_limits": "scale_resources",
    "increase_memory_limit": "scale_resources",
}
_SEVERITIES = {"info": Severity.LOW, "informational": Severity.LOW, "warning": Severity.MEDIUM,
               "warn": Severity.MEDIUM, "error": Severity.HIGH}

Submit = Callable[[Proposal], Awaitable[None]]


def _aliases(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class AnomalyReport(BaseModel):
    """The Python engine's anomaly body (`type`, `severity`, `confidence_score`, `details`, `recommended_action`,
    `source`, `timestamp`) and the superset other detectors send; snake_case and camelCase."""

    model_config = ConfigDict(extra="ignore")
    anomaly_type: str = Field(min_length=1, max_length=128,
                              validation_alias=_aliases("type", "anomaly_type", "anomalyType", "issue_type",
                                                        "issueType"))
    severity: Severity = Severity.MEDIUM
    confidence: float | None = Field(None, ge=0.0, le=1.0,
                                     validation_alias=_aliases("confidence_score", "confidenceScore", "confidence"))
    namespace: str | None = Field(None, max_length=63)
    resource: str | dict[str, Any] | None = None
    resource_name: str | None = Field(None, max_length=253,
                                      validation_alias=_aliases("resource_name", "resourceName"))
    resource_kind: str | None = Field(None, max_length=63,
                                      validation_alias=_aliases("resource_type", "resourceType", "resource_kind",
                                                                "resourceKind", "kind"))
    target: str | None = Field(None, max_length=316)
    title: str | None = Field(None, max_length=200)
    description: str = Field("", max_length=2000)
    metrics: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    source: str | None = Field(None, min_length=1, max_length=64)
    detected_at: datetime | None = Field(None, validation_alias=_aliases("detected_at", "detectedAt", "timestamp"))
    recommended_action: str | None = Field(None, max_length=64,
                                           validation_alias=_aliases("recommended_action", "recommendedAction",
                                                                     "action", "action_type", "actionType"))
    dry_run: bool = Field(False, validation_alias=_aliases("dry_run", "dryRun"))

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _SEVERITIES.get(value, value)
        return value

    @field_validator("metrics", "details", "labels", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(frozen=True, slots=True)
class Resource:
    namespace: str  # "" for cluster-scoped kinds
    kind: str
    name: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the report gets: its layer, and the action (None without a resource) with the rule that chose it."""

    layer: str
    action: str | None
    rule_id: str | None
    rule_priority: int | None
    note: str  # why, in words (the 201 `message`)


class InvalidReport(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _kind(raw: str, field: str) -> str:
    kind = _KINDS.get(raw.strip().lower(), raw.strip())
    if not _KIND.fullmatch(kind):
        raise InvalidReport(field, f"{field} must be a Kubernetes kind (e.g. Pod, Deployment, Node)")
    return kind


def resolve_resource(report: AnomalyReport) -> Resource | None:
    """The object the report is about, from (first given) `resource` ("Kind/name", or an object with `kind`,
    `name`, `namespace`), `resource_name` + `resource_type`, `target` ("Kind/name" or "namespace/Kind/name"),
    or `details.pod|deployment|statefulset|daemonset|node`. A bare name is a Deployment (as `POST
    /api/v1/remediate`). The namespace is `namespace`, else the resource's or `details.namespace`. None when
    the report names no object. Raises InvalidReport naming the field."""
    namespace = report.namespace or None
    found: tuple[str, str, str] | None = None  # (kind, name, field)
    default_kind = _kind(report.resource_kind, "resource_type") if report.resource_kind else "Deployment"
    if isinstance(report.resource, dict):
        name, kind = report.resource.get("name"), report.resource.get("kind") or default_kind
        if not isinstance(name, str) or not name:
            raise InvalidReport("resource.name", "resource.name is required when resource is an object")
        if not isinstance(kind, str):
            raise InvalidReport("resource.kind", "resource.kind must be a string")
        found = (_kind(kind, "resource.kind"), name, "resource.name")
        ns = report.resource.get("namespace")
        if isinstance(ns, str) and ns and namespace is None:
            namespace = ns
    elif isinstance(report.resource, str) and report.resource.strip():
        kind, _, name = report.resource.strip().rpartition("/")
        found = (_kind(kind, "resource") if kind else default_kind, name, "resource")
    elif report.resource_name:
        found = (default_kind, report.resource_name, "resource_name")
    elif report.target and report.target.strip():
        parts = report.target.strip().split("/")
        if len(parts) == 3:
            namespace = namespace or parts[0]
            found = (_kind(parts[1], "target"), parts[2], "target")
        elif len(parts) == 2:
            found = (_kind(parts[0], "target"), parts[1], "target")
        elif len(parts) == 1:
            found = (default_kind, parts[0], "target")
        else:
            raise InvalidReport("target", "target must be `Kind/name`, `namespace/Kind/name` or a name")
    else:
        for key, kind in _DETAIL_KINDS:
            value = report.details.get(key)
            if isinstance(value, str) and value:
                found = (kind, value, f"details.{key}")
                break
    if namespace is None and isinstance(ns := report.details.get("namespace"), str) and ns:
        namespace = ns
    if namespace is not None and not is_dns_label(namespace):
        raise InvalidReport("namespace", "namespace must be a Kubernetes namespace name (DNS label)")
    if found is None:
        return None
    kind, name, field = found
    if not is_dns_subdomain(name):
        raise InvalidReport(field, f"{field} must be a Kubernetes object name (DNS subdomain)")
    if kind in _CLUSTER_SCOPED:
        return Resource("", kind, name)
    if not namespace:
        raise InvalidReport("namespace", f"namespace is required for a {kind}")
    return Resource(namespace, kind, name)


def assign(rules: Rules, anomaly_type: str, resource: Resource | None, recommended: str | None,
           confidence: float | None, threshold: float) -> Assignment:
    """The layer and the action: the recommended action when the catalogue has it (Python engine names mapped:
    `ACTION_ALIASES`), else the highest-priority rule matching the type and kind, else `manual_intervention` (a
    human decides; we never guess). Deterministic iff a rule matches, the action is the rule's, and the
    confidence (1.0 when absent) is at least `threshold`."""
    kind = resource.kind if resource else ""
    matching = sorted((r for r in rules.rules if r.matches([anomaly_type], kind)), key=lambda r: -r.priority)
    rule = matching[0] if matching else None
    notes: list[str] = []
    requested = ACTION_ALIASES.get(recommended, recommended) if recommended else None
    if requested is not None and requested not in rules.actions:
        notes.append(f"recommended action {recommended!r} is not in the action catalogue "
                     f"({', '.join(sorted(rules.actions))}); "
                     + (f"rule {rule.id} chose {rule.action}" if rule else "no rule matches either"))
        requested = None
    conf = 1.0 if confidence is None else confidence
    on = f" on a {kind}" if kind else ""
    ruled = rule if rule is not None and requested in (None, rule.action) else None
    if ruled is not None and conf >= threshold:
        layer = DETERMINISTIC
        notes.append(f"rule {ruled.id} matches {anomaly_type!r}{on} and confidence {conf:.2f} >= {threshold:.2f}")
    else:
        layer = AI_DRIVEN
        if rule is None:
            notes.append(f"no rule matches {anomaly_type!r}{on}")
        elif ruled is None:
            notes.append(f"the recommended action {requested} is not the rule's ({rule.action})")
        else:
            notes.append(f"confidence {conf:.2f} < {threshold:.2f}")
    if resource is None:
        notes.append("no resource named: no action proposed")
        return Assignment(layer, None, None, None, "; ".join(notes))
    if ruled is not None:
        action, rule_id, priority = ruled.action, ruled.id, ruled.priority
    elif requested is not None:
        action, rule_id, priority = requested, None, None
    else:
        action, rule_id, priority = FALLBACK_ACTION, None, None
    if action not in rules.actions:  # a catalogue without manual_intervention
        notes.append(f"no action proposed: {action} is not in the catalogue")
        return Assignment(layer, None, None, None, "; ".join(notes))
    return Assignment(layer, action, rule_id, priority, "; ".join(notes))


def _title(report: AnomalyReport, resource: Resource | None) -> str:
    if report.title:
        return report.title
    where = f" on {resource.ref}" if resource else (f" in {report.namespace}" if report.namespace else "")
    return f"Anomaly: {report.anomaly_type}{where}"[:200]


def new_anomaly_incident(report: AnomalyReport, resource: Resource | None, assignment: Assignment, now: datetime,
                         anomaly_id: str | None = None) -> Incident:
    """The incident of an anomaly report; `parameters` keeps what the Python engine's API shows."""
    anomaly_id = anomaly_id or "anom-" + uuid.uuid4().hex[:12]
    namespace = resource.namespace if resource and resource.namespace else (report.namespace or "")
    workflow_id = workflow_id_of(anomaly_id) if assignment.action else None
    labels = {**report.labels, **({"namespace": namespace} if namespace else {})}
    detected = report.detected_at
    if detected is not None and detected.tzinfo is not None:
        detected = detected.astimezone(UTC)
    incident = new_manual_incident(
        incident_id=new_incident_id(), title=_title(report, resource), description=report.description,
        severity=report.severity, now=now,
        source=report.source or "anomaly", labels=labels,
        affected_resources=[resource.ref] if resource else [], confidence=report.confidence,
        parameters={
            "anomaly_report": True,
            "anomaly_type": report.anomaly_type,
            "assigned_layer": assignment.layer,
            "layer_reason": assignment.note,
            "metrics": report.metrics,
            "details": report.details,
            "detected_at": iso_z(detected),
            "recommended_action": report.recommended_action,
            "resource": ({"namespace": resource.namespace, "kind": resource.kind, "name": resource.name}
                         if resource else None),
            "action": assignment.action,
            "rule_id": assignment.rule_id,
            "workflow_id": workflow_id,
        },
    )
    return incident.model_copy(update={
        "id": anomaly_id, "issue_type": report.anomaly_type, "workflow_id": workflow_id,
        "action_type": assignment.action, "tags": ["anomaly", assignment.layer, report.anomaly_type],
    })


def workflow_id_of(anomaly_id: str) -> str:
    return "wf-" + uuid.uuid5(_WORKFLOW_NAMESPACE, anomaly_id).hex[:12]


def proposal_of(rules: Rules, incident: Incident, resource: Resource, assignment: Assignment,
                dry_run: bool = False) -> Proposal:
    """The anomaly's proposal: source `deterministic` (with its rule) or `ai` (with the report's confidence)."""
    assert assignment.action is not None
    action, spec = assignment.action, rules.actions[assignment.action]
    source = "deterministic" if assignment.layer == DETERMINISTIC else "ai"
    confidence = 1.0 if incident.confidence is None else incident.confidence
    anomaly_type = incident.parameters["anomaly_type"]
    return Proposal(
        id=proposal_id(incident.id, source, "anomaly", action, resource.key),
        target=resource.key,
        namespace=resource.namespace,
        action=action,
        source=source,
        priority=assignment.rule_priority if assignment.rule_priority is not None else spec.priority,
        confidence=confidence,
        incident_id=incident.id,
        rule_id=assignment.rule_id,
        risk=spec.risk,
        groups=rules.groups_of(action),
        severity=incident.severity,
        scores={"anomaly_confidence": confidence} if source == "ai" else {},
        reason=f"anomaly report {anomaly_type} ({assignment.layer}): {assignment.note}",
        dry_run=dry_run,
        workflow_id=incident.workflow_id,
        requested_by="anomalies",
        parameters={"issue_type": anomaly_type, "anomaly_id": incident.id},
    )


class AnomalyReports:
    """The anomaly routes' logic; `accept` is also what the ingest route calls for a non-Alertmanager body."""

    def __init__(self, settings: Settings, projection: IncidentProjection, view: RemediationView,
                 producer: EventProducer, submit: Submit | None = None) -> None:
        self.settings, self.projection, self.view, self.producer = settings, projection, view, producer
        self.rules: Rules = load_rules(settings.remediation_rules_path)
        self.submit = submit or self._submit

    async def _submit(self, proposal: Proposal) -> None:
        """As `POST /api/v1/remediate` publishes: answer once the broker has it and this gateway shows it."""
        event = Event.of(RemediationProposed(namespace=proposal.namespace, proposal=proposal),
                         source="pipeline/gateway", subject=proposal.target, incidentid=proposal.incident_id,
                         workflowid=proposal.workflow_id)
        await publish_visible(self.producer, self.settings.topic("remediation"), event, self.view.applied,
                              self.settings.gateway_write_timeout_s, "action", workflow_id=proposal.workflow_id,
                              anomaly_id=proposal.incident_id)

    async def accept(self, request: Request, body: Any) -> JSONResponse:
        """A report already read (and its token checked by the caller): validate, publish, answer 201."""
        if not isinstance(body, dict):
            raise ApiError(400, "VALIDATION_FAILED", "body must be a JSON object", field="body")
        try:
            report = AnomalyReport.model_validate(body)
        except ValidationError as exc:
            raise from_pydantic(exc, status=400) from None
        try:
            resource = resolve_resource(report)
        except InvalidReport as exc:
            raise ApiError(400, "VALIDATION_FAILED", str(exc), field=exc.field) from None
        assignment = assign(self.rules, report.anomaly_type, resource, report.recommended_action, report.confidence,
                            self.settings.confidence_threshold)
        incident = new_anomaly_incident(report, resource, assignment, datetime.now(UTC))
        event = Event.of(IncidentOpened(incident=incident), source="pipeline/gateway", incidentid=incident.id)
        await publish_visible(self.producer, self.settings.topic("incidents"), event, self.projection.applied,
                              self.settings.gateway_write_timeout_s, "anomaly", anomaly_id=incident.id)
        proposal = None
        if resource is not None and assignment.action is not None:
            proposal = proposal_of(self.rules, incident, resource, assignment, report.dry_run)
            await self.submit(proposal)
        entry = self.view.workflow(incident.workflow_id) if incident.workflow_id else None
        message = f"Anomaly accepted ({assignment.layer}: {assignment.note})"
        if proposal is not None:
            message += f"; proposed {proposal.action} on {proposal.target}"
        return JSONResponse(
            {
                "anomaly_id": incident.id,
                "status": "accepted",
                "assigned_layer": assignment.layer,
                "priority": incident.severity.priority,
                "estimated_resolution_time": ESTIMATED_RESOLUTION if proposal is not None else None,
                "action_id": proposal.id if proposal else None,
                "action": proposal.action if proposal else None,
                "rule_id": assignment.rule_id,
                "action_status": (entry.status if entry else "pending") if proposal else None,
                "workflow_id": incident.workflow_id,
                "dry_run": report.dry_run if proposal else None,
                "message": message,
                "created_at": iso_z(incident.created_at),
            },
            status_code=201,
        )

    def show(self, anomaly_id: str) -> dict[str, Any] | None:
        """`GET /api/v1/anomalies/{id}`: the anomaly, its action and its workflow, from the read models."""
        incident = self.projection.get(anomaly_id)
        if incident is None or not incident.parameters.get("anomaly_report"):
            return None
        params = incident.parameters
        wid = incident.workflow_id
        entry = self.view.workflow(wid) if wid else None
        if entry is not None and entry.workflow is not None:
            current = entry.workflow
            incident = with_workflow(incident, current.id, current.action, current.status, current.completed_at)
        action: dict[str, Any] | None = None
        resolution: dict[str, Any] | None = None
        if wid is not None:
            if entry is None:  # stored with the anomaly but not (or not yet) in the remediation read model
                action = {"action_id": None, "type": params.get("action"), "status": "unknown", "workflow_id": wid,
                          "message": "the action is not in this gateway's remediation read model"}
            else:
                p, d, w = entry.proposal, entry.decision, entry.workflow
                action = {
                    "action_id": p.id, "type": p.action, "status": entry.status, "workflow_id": wid,
                    "source": p.source, "rule_id": p.rule_id, "confidence": p.confidence, "target": p.target,
                    "dry_run": p.dry_run, "submitted_at": iso_z(entry.submitted_at),
                    "started_at": iso_z(w.started_at) if w else None,
                    "completed_at": iso_z(w.completed_at) if w else None,
                    "reason": w.reason if w else None,
                    "decision": decision_view(d, entry.resolution_seconds) if d else None,
                }
                if entry.status in FINISHED:
                    resolution = {"status": entry.status, "completed_at": iso_z(w.completed_at) if w else None,
                                  "reason": (w.reason if w else None) or (
                                      "; ".join(r.message for r in d.reasons) if d else None)}
        api = to_api(incident)
        return {
            "anomaly_id": incident.id,
            "status": api["status"],
            "anomaly_type": params.get("anomaly_type"),
            "assigned_layer": params.get("assigned_layer"),
            "layer_reason": params.get("layer_reason"),
            "severity": api["severity"],
            "priority": api["priority"],
            "confidence": incident.confidence,
            "namespace": incident.namespace,
            "resource": params.get("resource"),
            "title": incident.title,
            "description": incident.description,
            "source": incident.source,
            "metrics": params.get("metrics", {}),
            "details": params.get("details", {}),
            "recommended_action": params.get("recommended_action"),
            "detected_at": params.get("detected_at"),
            "created_at": api["created_at"],
            "action_id": action["action_id"] if action else None,
            "workflow_id": wid,
            "action": action,
            "workflow": workflow_view(wid, entry) if wid and entry is not None else None,
            "resolution": resolution,
            "incident": api,
        }

    # The report's request and 201 models, for the ingest route that hands reports here.
    contract = (AnomalyReport, AnomalyAccepted)

    def router(self, post: bool = True) -> APIRouter:
        """The GET route, and the POST route when no ingest part in this process owns `/api/v1/anomalies`."""
        api = APIRouter(tags=["anomalies"])
        settings = self.settings

        if post:
            @api.post("/api/v1/anomalies", summary="Report an anomaly (Python engine API)",
                      **op(AnomalyAccepted, status=201, body=AnomalyReport, token=True,
                           errors=(422, *PUBLISH_ERRORS)))
            async def report(request: Request) -> JSONResponse:
                require_token(request, settings.bearer_token)
                body = await read_json(request, MAX_BODY)
                if isinstance(body, dict) and "alerts" in body:
                    raise ApiError(422, "VALIDATION_FAILED",
                                   "Alertmanager webhooks are received by the ingest part (`pipeline run` or "
                                   "`pipeline stage ingest`), not by this gateway", field="alerts")
                return await self.accept(request, body)

        @api.get("/api/v1/anomalies/{anomaly_id}",
                 summary="An anomaly, its action and its workflow (Python engine API)",
                 **op(AnomalyView, errors=(404,)))
        async def get_anomaly(anomaly_id: str) -> JSONResponse:
            shown = self.show(anomaly_id)
            if shown is None:
                raise ApiError(404, "NOT_FOUND", "Anomaly not found", field="anomaly_id")
            return JSONResponse(shown)

        return api


def router(settings: Settings, projection: IncidentProjection, view: RemediationView, producer: EventProducer,
           submit: Submit | None = None, *, post: bool = True) -> APIRouter:
    """The anomaly routes; `post=False` when the ingest router owns `POST /api/v1/anomalies` and hands it
    non-Alertmanager bodies (build an `AnomalyReports` and pass its `accept` to the ingest router)."""
    return AnomalyReports(settings, projection, view, producer, submit).router(post)
