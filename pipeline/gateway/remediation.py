"""Coordination routes: manual remediation commands and the arbitration status.

`POST /api/v1/remediation/trigger` (the Go engine and the MCP server) and `POST /api/v1/remediate` (the
Python engine) publish a manual proposal to `remediation`; it passes the same arbitration as every other
proposal. Both answer 202 once the broker has the command. `GET /api/v1/workflows` lists the workflows,
`GET /api/v1/workflows/{id}` shows one with its decision record; `GET /api/v1/status` and
`GET /api/v1/cluster/status` the queue, actions and conflicts.
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

from pipeline.adapters.rules import load_rules
from pipeline.api.contract import PUBLISH_ERRORS, op
from pipeline.api.errors import ApiError, from_pydantic
from pipeline.api.requests import read_model, require_token
from pipeline.bus.control import ControlState
from pipeline.bus.producer import EventProducer
from pipeline.config import Settings
from pipeline.domain.arbitration import (
    Rules,
    Target,
    UnknownAction,
    manual_action,
    policy_from_settings,
    propose_manual,
)
from pipeline.domain.decisions import WorkflowQuery
from pipeline.domain.incidents import InvalidQuery
from pipeline.domain.names import is_dns_label, is_dns_subdomain
from pipeline.events import Event, Proposal, RemediationProposed, Severity
from pipeline.gateway.bodies import MAX_WRITE_BODY, SNAKE_OR_CAMEL
from pipeline.gateway.coordination_status import CoordinationStatus
from pipeline.gateway.projection import publish_visible
from pipeline.gateway.remediation_view import RemediationView, workflow_view
from pipeline.gateway.responses import (
    ClusterStatus,
    EngineStatus,
    Queued,
    Triggered,
    WorkflowList,
    WorkflowListQuery,
    WorkflowView,
)

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


class ManualRemediation:
    """Manual remediation commands: each becomes a proposal under the rules, published to `remediation`,
    and an identical request (same Idempotency-Key, or same body within REPEAT_WINDOW) finds its workflow."""

    def __init__(self, settings: Settings, view: RemediationView, producer: EventProducer, rules: Rules) -> None:
        self.settings, self.view, self.producer, self.rules = settings, view, producer, rules
        self.topic = settings.topic("remediation")

    def earlier(self, key: str, digest: str) -> str | None:
        """The workflow of an earlier request with the same key (and, for body keys, within the window)."""
        found = self.view.by_request(key)
        if found is None:
            return None
        if found.proposal.parameters.get("request_hash") != digest:
            raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key was used with a different request",
                           field="Idempotency-Key", workflow_id=found.proposal.workflow_id)
        if key.startswith("body:") and datetime.now(UTC) - found.submitted_at > REPEAT_WINDOW:
            return None
        return found.proposal.workflow_id

    async def submit(self, proposal: Proposal) -> None:
        """Publish the command; answer once the broker has it and this gateway shows it (read your writes)."""
        event = Event.of(RemediationProposed(namespace=proposal.namespace, proposal=proposal),
                         source="pipeline/gateway", subject=proposal.target, incidentid=proposal.incident_id or None,
                         workflowid=proposal.workflow_id)
        await publish_visible(self.producer, self.topic, event, self.view.applied,
                              self.settings.gateway_write_timeout_s, "command", workflow_id=proposal.workflow_id)

    def propose(self, key: str, digest: str, namespace: str, ref: ResourceRef, action: str,
                rule_id: str | None, **kw: Any) -> Proposal:
        """The proposal of a request; `kw` holds incident_id, severity, parameters and propose_manual's own."""
        # A body key names this request at this moment, so a repeat after the window is a new workflow.
        request_id = key if key.startswith("key:") else f"{key}@{time.time_ns()}"
        workflow_id = _workflow_id(request_id)
        params = {**kw.pop("parameters", {}), "request_key": key, "request_hash": digest}
        target = Target(key=f"{namespace}/{ref.kind}/{ref.name}", namespace=namespace, kind=ref.kind,
                        incident_id=kw.pop("incident_id") or workflow_id, severity=kw.pop("severity"))
        return propose_manual(self.rules, target, action, request_id=request_id, rule_id=rule_id,
                              workflow_id=workflow_id, parameters=params, **kw)

    async def propose_and_submit(self, key: str, digest: str, namespace: str, ref: ResourceRef, action: str,
                                 rule_id: str | None, **kw: Any) -> Proposal:
        proposal = self.propose(key, digest, namespace, ref, action, rule_id, **kw)
        await self.submit(proposal)
        return proposal

    async def submit_manual(self, *, namespace: str, kind: str, name: str, action: str, incident_id: str,
                            dry_run: bool, requested_by: str, reason: str, body: Any,
                            parameters: dict[str, Any]) -> Proposal:
        """Propose and publish a manual action (used by the coordination routes); one per identical body."""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
        key = f"body:{digest}"
        found = self.view.by_request(key)
        if found is not None and datetime.now(UTC) - found.submitted_at <= REPEAT_WINDOW:
            return found.proposal
        return await self.propose_and_submit(
            key, digest, namespace, ResourceRef.model_construct(kind=kind, name=name), action, None,
            incident_id=incident_id, severity=Severity.MEDIUM, priority=None, dry_run=dry_run,
            requested_by=requested_by, reason=reason, parameters=parameters)

    async def trigger(self, req: TriggerRequest, key: str, digest: str) -> str:
        """`POST /api/v1/remediation/trigger`: the workflow of this request, proposed now or earlier."""
        workflow_id = self.earlier(key, digest)
        if workflow_id is not None:
            return workflow_id
        try:
            action, rule_id = manual_action(self.rules, req.issue.type, req.resource.kind, req.action)
        except UnknownAction as exc:
            raise ApiError(400, "VALIDATION_FAILED", str(exc), field="action") from None
        described = f" ({req.issue.description})" if req.issue.description else ""
        proposal = await self.propose_and_submit(
            key, digest, req.namespace, req.resource, action, rule_id,
            incident_id=req.incident_id, severity=req.issue.severity, priority=req.priority, dry_run=req.dry_run,
            requested_by="remediation/trigger", reason=f"manual trigger: {req.issue.type}{described}",
            parameters={"issue_type": req.issue.type})
        assert proposal.workflow_id is not None
        return proposal.workflow_id

    def require_known(self, action: str) -> None:
        """A 400 naming the known actions when `action` is not one of the rules'."""
        if action not in self.rules.actions:
            raise ApiError(400, "VALIDATION_FAILED",
                           f"unknown action {action!r}; known: {', '.join(sorted(self.rules.actions))}",
                           field="action")

    async def remediate(self, req: RemediateRequest, key: str, digest: str) -> dict[str, Any]:
        """`POST /api/v1/remediate`: queue the action (or find the earlier one) and say where it stands."""
        workflow_id = self.earlier(key, digest)
        proposal: Proposal | None = None
        if workflow_id is None:
            proposal = await self.propose_and_submit(
                key, digest, req.namespace, req.resource(), req.action, None,
                incident_id=req.incident_id, severity=req.severity, priority=req.priority, dry_run=req.dry_run,
                requested_by="remediate", parameters=req.parameters)
            workflow_id = proposal.workflow_id
            assert workflow_id is not None
        action_id, status, position = self._queue_position(workflow_id, proposal)
        return {"status": status, "action_id": action_id, "workflow_id": workflow_id, "queued": position > 0,
                "position_in_queue": position, "dry_run": req.dry_run}

    def _queue_position(self, workflow_id: str, proposal: Proposal | None) -> tuple[str | None, str, int]:
        """(action id, status, 1-based position in the queue or 0 once decided)."""
        entry = self.view.workflow(workflow_id)
        queue = [e.proposal.id for e in self.view.pending()]
        if entry is None:  # not projected yet: it is behind everything the gateway has seen
            return (proposal.id if proposal else None), "queued", len(queue) + 1
        if entry.decision is None:
            return entry.proposal.id, "queued", queue.index(entry.proposal.id) + 1
        return entry.proposal.id, entry.status, 0


async def _deployment_method(detector: Any, namespace: str, kind: str, name: str) -> str:
    if detector is None:
        return "unknown"
    try:
        info = await asyncio.wait_for(detector.detect(namespace, kind, name), 3.0)
    except Exception:  # noqa: BLE001 - not found, forbidden, slow: the remediator detects again anyway
        return "unknown"
    return str(info.method)


def router(settings: Settings, view: RemediationView, producer: EventProducer, started: float,
           control: ControlState | None = None, detector: Any = None,
           workers: Callable[[], Awaitable[int]] | None = None) -> APIRouter:
    """`control` is the followed control topic (kill switch, pause, approvals); `detector` (adapters.detection)
    tells a trigger's deployment method when this gateway can read the cluster; `workers` counts the remediate
    stage's consumers (the processes that execute approved actions) -- without it `/api/v1/cluster/status`
    answers 503, as it cannot tell."""
    api = APIRouter(tags=["remediation"])
    control = control if control is not None else ControlState()
    manual = ManualRemediation(settings, view, producer, load_rules(settings.remediation_rules_path))
    coordination = CoordinationStatus(settings, view, control, policy_from_settings(settings), started)

    from pipeline.gateway.workflows import router as workflows_router

    api.include_router(workflows_router(settings, view, control, producer, manual.submit_manual))

    @api.post("/api/v1/remediation/trigger", summary="Propose a remediation (manual command)",
              **op(Triggered, status=202, body=TriggerRequest, token=True, errors=(422, *PUBLISH_ERRORS)))
    async def trigger(request: Request) -> JSONResponse:
        require_token(request, settings.bearer_token)
        req, body = await read_model(request, TriggerRequest, MAX_WRITE_BODY)
        workflow_id = await manual.trigger(req, *_request_key(request, body))
        entry = view.workflow(workflow_id)
        method = (entry.workflow.deployment_method if entry is not None and entry.workflow
                  else await _deployment_method(detector, req.namespace, req.resource.kind, req.resource.name))
        return JSONResponse({"workflow_id": workflow_id, "status": "pending" if entry is None else entry.status,
                             "deployment_method": method, "estimated_duration": "5m", "dry_run": req.dry_run,
                             "incident_id": req.incident_id}, status_code=202)

    @api.post("/api/v1/remediate", summary="Queue a remediation action (Python engine API)",
              **op(Queued, status=202, body=RemediateRequest, token=True, errors=(422, *PUBLISH_ERRORS)))
    async def remediate(request: Request) -> JSONResponse:
        require_token(request, settings.bearer_token)
        req, body = await read_model(request, RemediateRequest, MAX_WRITE_BODY)
        manual.require_known(req.action)
        return JSONResponse(await manual.remediate(req, *_request_key(request, body)), status_code=202)

    @api.get("/api/v1/workflows", summary="Workflows, newest first (filters: namespace, status, limit, offset)",
             **op(WorkflowList, query=WorkflowListQuery, errors=(400,)))
    async def list_workflows(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            query = WorkflowQuery.parse(q.get("namespace"), q.get("status"), q.get("limit"), q.get("offset"))
        except InvalidQuery as exc:
            raise ApiError(400, "INVALID_QUERY", str(exc), field=exc.field) from None
        total, page = query.select((wid, entry) for wid in list(view.workflows)
                                   if (entry := view.workflow(wid)) is not None)
        return JSONResponse({"workflows": [workflow_view(wid, entry) for wid, entry in page], "total": total,
                             "count": len(page), "limit": query.limit, "offset": query.offset})

    @api.get("/api/v1/workflows/{workflow_id}", summary="A remediation workflow and its decision record",
             **op(WorkflowView, errors=(404,)))
    async def get_workflow(workflow_id: str) -> JSONResponse:
        entry = view.workflow(workflow_id)
        if entry is None:
            raise ApiError(404, "NOT_FOUND", "Workflow not found", field="workflow_id")
        return JSONResponse(workflow_view(workflow_id, entry))

    @api.get("/api/v1/status", summary="Coordination status: engine, queue, actions, conflicts, layers",
             **op(EngineStatus))
    async def status() -> JSONResponse:
        return JSONResponse(coordination.engine(datetime.now(UTC)))

    @api.get("/api/v1/cluster/status", summary="The cluster status the MCP server reads",
             **op(ClusterStatus, errors=(503,)))
    async def cluster_status() -> JSONResponse:
        try:
            if workers is None:
                raise RuntimeError("this gateway has no Kafka admin client")
            workers_count = await workers()
        except Exception as exc:  # noqa: BLE001 - any failure: the count is unknown, and we say so
            raise ApiError(503, "KAFKA_UNAVAILABLE",
                           f"cannot count the remediate workers: {type(exc).__name__}: {exc}",
                           headers={"Retry-After": "5"}) from None
        return JSONResponse(coordination.cluster(datetime.now(UTC), workers_count))

    return api
