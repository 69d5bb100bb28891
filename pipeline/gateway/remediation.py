"""Coordination routes: manual remediation commands and the arbitration status.

`POST /api/v1/remediation/trigger` (the Go engine and the MCP server) and `POST /api/v1/remediate` (the
Python engine) publish a manual proposal to `remediation`; it passes the same arbitration as every other
proposal. Both answer 202 once the broker has the command. `GET /api/v1/workflows/{id}` shows the
decision record; `GET /api/v1/status` and `GET /api/v1/cluster/status` the queue, actions and conflicts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.api.errors import ApiError, from_pydantic
from pipeline.api.requests import read_model, require_token
from pipeline.bus.control import ControlState
from pipeline.bus.producer import EventProducer
from pipeline.config import Settings
from pipeline.domain.arbitration import (
    Rules,
    Target,
    UnknownAction,
    load_rules,
    manual_action,
    propose_manual,
)
from pipeline.domain.names import is_dns_label, is_dns_subdomain
from pipeline.events import Event, Proposal, RemediationProposed, Severity
from pipeline.gateway.bodies import MAX_WRITE_BODY, SNAKE_OR_CAMEL
from pipeline.gateway.projection import publish_visible
from pipeline.gateway.remediation_view import LAYERS, RemediationView, go_duration, workflow_view
from pipeline.stages.arbitrate import policy_from_settings

REPEAT_WINDOW = timedelta(minutes=5)  # an identical request within it returns the same workflow
_WORKFLOW_NAMESPACE = uuid.UUID("0b9b7f63-2f0e-4c55-9a53-3c1d2a6f4e80")
_KIND = r"^[A-Z][A-Za-z0-9]{0,62}$"


def _namespace(value: str) -> str:
    if not is_dns_label(value):
        raise ValueError("must be a Kubernetes namespace name (DNS label)")
    return value


def _object_name(value: str) -> str:
    if not is_dns_subdomain(value):
        raise ValueError("must be a Kubernetes object name (DNS subdomain)")
    return value


class ResourceRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: str = Field(pattern=_KIND)
    name: str

    _name = field_validator("name")(_object_name)


class Issue(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=2000)
    severity: Severity = Severity.MEDIUM

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TriggerRequest(BaseModel):
    """`POST /api/v1/remediation/trigger`, as the MCP server sends it (snake or camel case)."""

    model_config = SNAKE_OR_CAMEL
    incident_id: str = Field("", max_length=256)
    namespace: str
    resource: ResourceRef
    issue: Issue
    dry_run: bool = False
    action: str | None = Field(None, max_length=64, description="Our extension: the action to propose")
    priority: int | None = Field(None, ge=0, le=100)

    _ns = field_validator("namespace")(_namespace)


class RemediateRequest(BaseModel):
    """`POST /api/v1/remediate`, the Python engine's command: an action on a target."""

    model_config = SNAKE_OR_CAMEL
    action: str = Field(min_length=1, max_length=64, validation_alias=AliasChoices("action", "action_type", "actionType"))
    namespace: str
    target: str = Field(min_length=1, max_length=316, description="`Kind/name`, or a name with `resource_kind`")
    resource_kind: str = Field("Deployment", pattern=_KIND)
    incident_id: str = Field("", max_length=256, validation_alias=AliasChoices("incident_id", "incidentId", "anomaly_id", "anomalyId"))
    priority: int | None = Field(None, ge=0, le=100)
    severity: Severity = Severity.MEDIUM
    dry_run: bool = False
    parameters: dict[str, Any] = Field(default_factory=dict)

    _ns = field_validator("namespace")(_namespace)

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def resource(self) -> ResourceRef:
        kind, _, name = self.target.rpartition("/")
        try:
            return ResourceRef(kind=kind or self.resource_kind, name=name)
        except ValidationError as exc:
            raise from_pydantic(exc) from None


def _request_key(request: Request, body: Any) -> tuple[str, str]:
    """(key, body hash): the Idempotency-Key header when given, else the body's canonical hash."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
    given = request.headers.get("idempotency-key", "").strip()
    if len(given) > 256:
        raise ApiError(400, "VALIDATION_FAILED", "Idempotency-Key must be at most 256 characters",
                       field="Idempotency-Key")
    return (f"key:{given}" if given else f"body:{digest}"), digest


def _workflow_id(request_id: str) -> str:
    return "wf-" + uuid.uuid5(_WORKFLOW_NAMESPACE, request_id).hex[:12]


def router(settings: Settings, view: RemediationView, producer: EventProducer, started: float,
           control: ControlState | None = None, detector: Any = None,
           workers: Callable[[], Awaitable[int]] | None = None) -> APIRouter:
    """`control` is the followed control topic (kill switch, pause, approvals); `detector` (adapters.detection)
    tells a trigger's deployment method when this gateway can read the cluster; `workers` counts the remediate
    stage's consumers (the processes that execute approved actions) -- without it `/api/v1/cluster/status`
    answers 503, as it cannot tell."""
    api = APIRouter(tags=["remediation"])
    control = control if control is not None else ControlState()
    topic = settings.topic("remediation")
    rules: Rules = load_rules(settings.remediation_rules_path)
    policy = policy_from_settings(settings)

    def earlier(key: str, digest: str) -> str | None:
        """The workflow of an earlier request with the same key (and, for body keys, within the window)."""
        found = view.by_request(key)
        if found is None:
            return None
        if found.proposal.parameters.get("request_hash") != digest:
            raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key was used with a different request",
                           field="Idempotency-Key", workflow_id=found.proposal.workflow_id)
        if key.startswith("body:") and datetime.now(UTC) - found.submitted_at > REPEAT_WINDOW:
            return None
        return found.proposal.workflow_id

    async def submit(proposal: Proposal) -> None:
        """Publish the command; answer once the broker has it and this gateway shows it (read your writes)."""
        event = Event.of(RemediationProposed(namespace=proposal.namespace, proposal=proposal),
                         source="pipeline/gateway", subject=proposal.target, incidentid=proposal.incident_id or None,
                         workflowid=proposal.workflow_id)
        await publish_visible(producer, topic, event, view.applied, settings.gateway_write_timeout_s, "command",
                              workflow_id=proposal.workflow_id)

    def propose(key: str, digest: str, namespace: str, ref: ResourceRef, action: str,
                rule_id: str | None, **kw: Any) -> Proposal:
        # A body key names this request at this moment, so a repeat after the window is a new workflow.
        request_id = key if key.startswith("key:") else f"{key}@{time.time_ns()}"
        workflow_id = _workflow_id(request_id)
        params = {**kw.pop("parameters", {}), "request_key": key, "request_hash": digest}
        target = Target(key=f"{namespace}/{ref.kind}/{ref.name}", namespace=namespace, kind=ref.kind,
                        incident_id=kw.pop("incident_id") or workflow_id, severity=kw.pop("severity"))
        return propose_manual(rules, target, action, request_id=request_id, rule_id=rule_id,
                              workflow_id=workflow_id, parameters=params, **kw)

    async def submit_manual(*, namespace: str, kind: str, name: str, action: str, incident_id: str, dry_run: bool,
                            requested_by: str, reason: str, body: Any, parameters: dict[str, Any]) -> Proposal:
        """Propose and publish a manual action (used by the coordination routes); one per identical body."""
        key, digest = f"body:{requested_by}", ""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
        key = f"body:{digest}"
        found = view.by_request(key)
        if found is not None and datetime.now(UTC) - found.submitted_at <= REPEAT_WINDOW:
            return found.proposal
        proposal = propose(key, digest, namespace, ResourceRef.model_construct(kind=kind, name=name), action, None,
                           incident_id=incident_id, severity=Severity.MEDIUM, priority=None, dry_run=dry_run,
                           requested_by=requested_by, reason=reason, parameters=parameters)
        await submit(proposal)
        return proposal

    async def deployment_method(namespace: str, kind: str, name: str) -> str:
        if detector is None:
            return "unknown"
        try:
            info = await asyncio.wait_for(detector.detect(namespace, kind, name), 3.0)
        except Exception:  # noqa: BLE001 - not found, forbidden, slow: the remediator detects again anyway
            return "unknown"
        return str(info.method)

    from pipeline.gateway.workflows import router as workflows_router

    api.include_router(workflows_router(settings, view, control, producer, submit_manual))

    @api.post("/api/v1/remediation/trigger", status_code=202, summary="Propose a remediation (manual command)")
    async def trigger(request: Request) -> JSONResponse:
        require_token(request, settings.bearer_token)
        req, body = await read_model(request, TriggerRequest, MAX_WRITE_BODY)
        key, digest = _request_key(request, body)
        workflow_id = earlier(key, digest)
        if workflow_id is None:
            try:
                action, rule_id = manual_action(rules, req.issue.type, req.resource.kind, req.action)
            except UnknownAction as exc:
                raise ApiError(400, "VALIDATION_FAILED", str(exc), field="action") from None
            proposal = propose(key, digest, req.namespace, req.resource, action, rule_id,
                               incident_id=req.incident_id, severity=req.issue.severity, priority=req.priority,
                               dry_run=req.dry_run, requested_by="remediation/trigger",
                               reason=f"manual trigger: {req.issue.type}"
                               + (f" ({req.issue.description})" if req.issue.description else ""),
                               parameters={"issue_type": req.issue.type})
            await submit(proposal)
            workflow_id = proposal.workflow_id
            assert workflow_id is not None
        entry = view.workflow(workflow_id)
        return JSONResponse(
            {
                "workflow_id": workflow_id,
                "status": "pending" if entry is None else entry.status,
                "deployment_method": (entry.workflow.deployment_method if entry is not None and entry.workflow
                                      else await deployment_method(req.namespace, req.resource.kind,
                                                                   req.resource.name)),
                "estimated_duration": "5m",
                "dry_run": req.dry_run,
                "incident_id": req.incident_id,
            },
            status_code=202,
        )

    @api.post("/api/v1/remediate", status_code=202, summary="Queue a remediation action (Python engine API)")
    async def remediate(request: Request) -> JSONResponse:
        require_token(request, settings.bearer_token)
        req, body = await read_model(request, RemediateRequest, MAX_WRITE_BODY)
        if req.action not in rules.actions:
            raise ApiError(400, "VALIDATION_FAILED",
                           f"unknown action {req.action!r}; known: {', '.join(sorted(rules.actions))}", field="action")
        key, digest = _request_key(request, body)
        workflow_id = earlier(key, digest)
        proposal: Proposal | None = None
        if workflow_id is None:
            proposal = propose(key, digest, req.namespace, req.resource(), req.action, None,
                               incident_id=req.incident_id, severity=req.severity, priority=req.priority,
                               dry_run=req.dry_run, requested_by="remediate", parameters=req.parameters)
            await submit(proposal)
            workflow_id = proposal.workflow_id
            assert workflow_id is not None
        entry = view.workflow(workflow_id)
        queue = [e.proposal.id for e in view.pending()]
        if entry is None:  # not projected yet: it is behind everything the gateway has seen
            action_id, status, position = proposal.id if proposal else None, "queued", len(queue) + 1
        elif entry.decision is None:
            action_id, status, position = entry.proposal.id, "queued", queue.index(entry.proposal.id) + 1
        else:
            action_id, status, position = entry.proposal.id, entry.status, 0
        return JSONResponse(
            {
                "status": status,
                "action_id": action_id,
                "workflow_id": workflow_id,
                "queued": position > 0,
                "position_in_queue": position,
                "dry_run": req.dry_run,
            },
            status_code=202,
        )

    @api.get("/api/v1/workflows/{workflow_id}", summary="A manual remediation and its decision record")
    async def get_workflow(workflow_id: str) -> JSONResponse:
        entry = view.workflow(workflow_id)
        if entry is None:
            raise ApiError(404, "NOT_FOUND", "Workflow not found", field="workflow_id")
        return JSONResponse(workflow_view(workflow_id, entry))

    def uptime() -> float:
        return round(time.monotonic() - started, 3)

    def today(now: datetime) -> tuple[int, int]:
        """Conflicts detected and resolved since midnight UTC (the Python engine's daily counters)."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        detected = sum(1 for e in view.entries.values() if e.decision is not None and e.decision.decided_at >= midnight
                       and any(r.code in ("lost_conflict", "duplicate") for r in e.decision.reasons))
        return detected, detected

    @api.get("/api/v1/status", summary="Coordination status: engine, queue, actions, conflicts, layers")
    async def status() -> JSONResponse:
        now = datetime.now(UTC)
        c = view.counts(now)
        s = c["statuses"]
        conflicts = sum(c["conflicts"].values())
        killed = policy.kill_switch or control.killed
        detected, resolved = today(now)
        by_source = {src: sum(1 for e in view.entries.values() if e.proposal.source == src and e.workflow is not None
                              and e.workflow.status in ("completed", "failed"))
                     for src in ("deterministic", "ai", "manual")}
        queued = s.get("pending", 0) + s.get("awaiting_approval", 0)
        return JSONResponse({
            "status": "running",
            "timestamp": now.isoformat(),
            # the Python engine's fields
            "engine_status": "stopped" if killed else ("paused" if control.paused else "running"),
            "active_actions": s.get("running", 0),
            "queued_actions": queued,
            "conflicts_detected_today": detected,
            "conflicts_resolved_today": resolved,
            "layers": {
                **{name: c["layers"].get(name, {}) for name in LAYERS},
                "deterministic": {"status": "stopped" if killed else "active",
                                  "actions_processed": by_source["deterministic"] + by_source["manual"]},
                "ai_driven": {"status": "stopped" if killed else "active", "actions_processed": by_source["ai"]},
            },
            # ours
            "engine": {"running": not killed, "mode": "event-log", "version": settings.version,
                       "uptime_seconds": uptime(), "kill_switch": killed, "paused": control.paused,
                       "remediation_mode": settings.remediation_mode},
            "queue": {"pending": s.get("pending", 0), "awaiting_approval": s.get("awaiting_approval", 0),
                      "active": s.get("running", 0)},
            "actions": {"total": c["total"], **{k: s.get(k, 0) for k in (
                "pending", "approved", "awaiting_approval", "running", "completed", "failed", "rejected",
                "superseded", "skipped", "cancelled", "expired")}, "by_source": c["by_source"]},
            "conflicts": {"total": conflicts, "resolved": conflicts, "by_kind": c["conflicts"]},
            "controls": control.view(),
            "policy": {"confidence_threshold": policy.confidence_threshold, "cooldown_seconds": policy.cooldown_seconds,
                       "namespace_budget": policy.namespace_budget,
                       "protected_namespaces": sorted(policy.protected_namespaces), "kill_switch": killed,
                       "approval": [r.model_dump(mode="json", exclude_defaults=True) for r in policy.approval]},
        })

    @api.get("/api/v1/cluster/status", summary="The cluster status the MCP server reads")
    async def cluster_status() -> JSONResponse:
        try:
            if workers is None:
                raise RuntimeError("this gateway has no Kafka admin client")
            workers_count = await workers()
        except Exception as exc:  # noqa: BLE001 - any failure: the count is unknown, and we say so
            raise ApiError(503, "KAFKA_UNAVAILABLE",
                           f"cannot count the remediate workers: {type(exc).__name__}: {exc}",
                           headers={"Retry-After": "5"}) from None
        now = datetime.now(UTC)
        c = view.counts(now)
        s = c["statuses"]
        conflicts = sum(c["conflicts"].values())
        pending = s.get("pending", 0) + s.get("awaiting_approval", 0)
        killed = policy.kill_switch or control.killed
        reasons = [why for why, yes in (("kill switch on: every proposal is rejected", killed),
                                        ("paused: no workflow starts", control.paused),
                                        ("no remediate worker: approved actions wait", workers_count == 0)) if yes]
        up = uptime()
        return JSONResponse({
            "status": "degraded" if reasons else "healthy",
            "reasons": reasons,
            "timestamp": now.isoformat(),
            "actions": {"total": c["total"], "pending": pending, "running": s.get("running", 0),
                        "completed": s.get("completed", 0), "failed": s.get("failed", 0),
                        "rejected": s.get("rejected", 0) + s.get("superseded", 0), "skipped": s.get("skipped", 0)},
            "conflicts": {"total": conflicts, "resolved": conflicts},
            "engine": {"running": not killed, "queue_length": pending, "workers_count": workers_count,
                       "uptime": go_duration(int(up)), "uptime_seconds": up},
        })

    return api
