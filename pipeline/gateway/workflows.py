"""Workflow and control routes: approve or reject a waiting workflow, the runtime kill switch and pause, and
the engine's multi-layer coordination routes.

Commands go to the `control` topic (approvals, kill switch, pause) or, for a coordination trigger, to
`remediation` as one manual `multi_layer` proposal — the same arbitration as everything else. Each write
answers once the broker has it and this gateway shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from pipeline.api.contract import PUBLISH_ERRORS, op
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_model, require_token
from pipeline.bus.control import ControlState
from pipeline.bus.producer import EventProducer
from pipeline.config import Settings
from pipeline.domain.workflows import LAYER_ORDER, layer_of_kind
from pipeline.events import ControlChanged, Event, Proposal
from pipeline.gateway.bodies import MAX_WRITE_BODY
from pipeline.gateway.projection import publish_visible
from pipeline.gateway.remediation_view import Entry, RemediationView
from pipeline.gateway.responses import (
    Answered,
    CoordinationTriggered,
    CoordinationWorkflow,
    CoordinationWorkflows,
    SwitchState,
)

_NS = 1_000_000_000  # the engine serialises durations as integer nanoseconds


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    by: str = Field("", max_length=256, validation_alias=AliasChoices("by", "approver", "user"))
    reason: str = Field("", max_length=2000, validation_alias=AliasChoices("reason", "comment", "message"))


# Approve or reject: the body is optional (`by`, `reason`); 404 unknown, 409 not awaiting approval.
ANSWER: dict[str, Any] = {"body": Answer, "body_required": False, "token": True,
                          "errors": (404, 409, *PUBLISH_ERRORS)}


class Switch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    enabled: bool = Field(validation_alias=AliasChoices("enabled", "paused", "on", "active"))
    by: str = Field("", max_length=256)
    reason: str = Field("", max_length=2000)


class CoordinationResource(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: str = Field(pattern=r"^[A-Z][A-Za-z0-9]{0,62}$")
    name: str = Field(min_length=1, max_length=253)
    namespace: str = Field("", max_length=63)
    issue: str = Field("", max_length=256)


class CoordinationTrigger(BaseModel):
    model_config = ConfigDict(extra="ignore")
    incident_id: str = Field(min_length=1, max_length=256, validation_alias=AliasChoices("incident_id", "incidentId"))
    description: str = Field(min_length=1, max_length=2000)
    resources: list[CoordinationResource] = Field(min_length=1, max_length=50)
    dry_run: bool = Field(False, validation_alias=AliasChoices("dry_run", "dryRun"))

    @field_validator("resources")
    @classmethod
    def _namespaced(cls, value: list[CoordinationResource]) -> list[CoordinationResource]:
        for r in value:
            if r.kind != "Node" and not r.namespace:
                raise ValueError(f"{r.kind} {r.name} needs a namespace")
        return value


def router(settings: Settings, view: RemediationView, control: ControlState, producer: EventProducer,
           submit: Callable[..., Coroutine[Any, Any, Proposal]]) -> APIRouter:
    """`submit(namespace, kind, name, action, ...)` proposes a manual action (gateway.remediation)."""
    api = APIRouter(tags=["workflows"])
    control_topic = settings.topic("control")

    async def publish_control(change: ControlChanged, what: str, incident_id: str | None = None) -> None:
        event = Event.of(change, source="pipeline/gateway", workflowid=change.workflow_id,
                         incidentid=incident_id or None)
        await publish_visible(producer, control_topic, event, view.applied, settings.gateway_write_timeout_s, what)

    def waiting(workflow_id: str) -> Entry:
        entry = view.workflow(workflow_id)
        if entry is None:
            raise ApiError(404, "NOT_FOUND", "Workflow not found", field="workflow_id")
        if entry.status != "awaiting_approval":
            raise ApiError(409, "NOT_AWAITING_APPROVAL",
                           f"workflow {workflow_id} is {entry.status}, not awaiting approval",
                           workflow_status=entry.status)
        return entry

    async def answer(request: Request, workflow_id: str, kind: str) -> JSONResponse:
        require_token(request, settings.bearer_token)
        body, _ = await read_model(request, Answer, MAX_WRITE_BODY, empty_ok=True)
        entry = waiting(workflow_id)
        given = control.decisions.get(workflow_id)
        if given is None:
            await publish_control(ControlChanged(key=f"approval/{workflow_id}", kind=kind,
                                                 workflow_id=workflow_id, namespace=entry.proposal.namespace,
                                                 by=body.by or "api", reason=body.reason, at=datetime.now(UTC)),
                                  kind, entry.proposal.incident_id)
            given = control.decisions.get(workflow_id)
        assert given is not None
        return JSONResponse({"workflow_id": workflow_id, "decision": "approved" if given.kind == "approve"
                             else "rejected", "by": given.by, "reason": given.reason or None,
                             "status": entry.status, "accepted": given.kind == kind}, status_code=202)

    @api.post("/api/v1/workflows/{workflow_id}/approve", summary="Approve a waiting workflow",
              **op(Answered, status=202, **ANSWER))
    async def approve(request: Request, workflow_id: str) -> JSONResponse:
        return await answer(request, workflow_id, "approve")

    @api.post("/api/v1/workflows/{workflow_id}/reject", summary="Reject a waiting workflow",
              **op(Answered, status=202, **ANSWER))
    async def reject(request: Request, workflow_id: str) -> JSONResponse:
        return await answer(request, workflow_id, "reject")

    def switch_route(path: str, kind: str, key: str) -> None:
        async def read() -> JSONResponse:
            return JSONResponse(control.view()[kind])

        async def write(request: Request) -> JSONResponse:
            require_token(request, settings.bearer_token)
            body, _ = await read_model(request, Switch, MAX_WRITE_BODY)
            await publish_control(ControlChanged(key=key, kind=kind, enabled=body.enabled,
                                                 by=body.by or "api", reason=body.reason, at=datetime.now(UTC)), kind)
            return JSONResponse(control.view()[kind])

        api.add_api_route(path, read, methods=["GET"], summary=f"The {kind.replace('_', ' ')}", **op(SwitchState))
        for method in ("POST", "PUT"):  # one route per method: each its own OpenAPI operation id
            api.add_api_route(path, write, methods=[method], operation_id=f"{method.lower()}_{kind}",
                              summary=f"Turn the {kind.replace('_', ' ')} on or off",
                              **op(SwitchState, body=Switch, token=True, errors=PUBLISH_ERRORS))

    switch_route("/api/v1/remediation/kill-switch", "kill_switch", "kill-switch")
    switch_route("/api/v1/remediation/pause", "pause", "pause")

    # --- the engine's multi-layer coordination routes (R14-R16) --------------------------------------------------

    @api.post("/api/v1/coordination/trigger", summary="Multi-layer remediation (engine R14)",
              **op(CoordinationTriggered, status=202, body=CoordinationTrigger, token=True, errors=PUBLISH_ERRORS))
    async def coordination_trigger(request: Request) -> JSONResponse:
        require_token(request, settings.bearer_token)
        req, _ = await read_model(request, CoordinationTrigger, MAX_WRITE_BODY)
        layered = sorted(req.resources, key=lambda r: LAYER_ORDER[layer_of_kind(r.kind, r.namespace)])
        root = layered[0]
        layers = sorted({layer_of_kind(r.kind, r.namespace) for r in req.resources}, key=LAYER_ORDER.__getitem__)
        proposal = await submit(
            namespace=root.namespace, kind=root.kind, name=root.name, action="multi_layer",
            incident_id=req.incident_id, dry_run=req.dry_run, requested_by="coordination/trigger",
            reason=f"multi-layer remediation: {req.description}", body=req.model_dump(mode="json"),
            parameters={"resources": [r.model_dump() for r in req.resources], "description": req.description,
                        "issue_type": "multi_layer"},
        )
        estimated = sum(1 for r in req.resources)
        return JSONResponse({"workflow_id": proposal.workflow_id, "status": "pending", "affected_layers": layers,
                             "root_cause_layer": layers[0], "estimated_steps": estimated}, status_code=202)

    @api.get("/api/v1/coordination/workflows/{workflow_id}", summary="A multi-layer workflow (engine R15)",
             **op(CoordinationWorkflow, errors=(404,)))
    async def coordination_workflow(workflow_id: str) -> JSONResponse:
        entry = view.workflow(workflow_id)
        if entry is None or entry.proposal.action != "multi_layer":
            raise ApiError(404, "NOT_FOUND", "workflow not found", field="workflow_id")
        return JSONResponse(coordination_view(workflow_id, entry))

    @api.get("/api/v1/coordination/workflows", summary="Multi-layer workflows (engine R16)",
             **op(CoordinationWorkflows))
    async def coordination_workflows() -> JSONResponse:
        items = [coordination_view(wid, e) for wid, pid in sorted(view.workflows.items())
                 if (e := view.entries.get(pid)) is not None and e.proposal.action == "multi_layer"]
        return JSONResponse({"workflows": items, "total": len(items)})

    return api


def coordination_view(workflow_id: str, entry: Entry) -> dict[str, Any]:
    """The engine's CoordinationWorkflow (§5.5): layered issue, plan (durations in nanoseconds), result."""
    p, w = entry.proposal, entry.workflow
    resources = p.parameters.get("resources") or []
    layers = sorted({layer_of_kind(r.get("kind", ""), r.get("namespace", "")) for r in resources},
                    key=LAYER_ORDER.__getitem__)
    status = {"pending": "pending", "awaiting_approval": "pending", "running": "executing"}.get(entry.status,
                                                                                                entry.status)
    impacted: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        impacted.setdefault(layer_of_kind(r.get("kind", ""), r.get("namespace", "")), []).append(r)
    steps = w.steps if w else []
    failed = next((i for i, s in enumerate(steps) if s.status == "failed"), None)
    return {
        "id": workflow_id,
        "incident_id": p.incident_id,
        "status": status,
        "layered_issue": {
            "id": p.incident_id, "description": p.parameters.get("description", ""), "affected_layers": layers,
            "root_cause_layer": layers[0] if layers else "application", "impacted_resources": impacted,
            "severity": p.severity.value, "detection_method": "kind",
        },
        "remediation_plan": {
            "id": f"plan-{workflow_id.removeprefix('wf-')}", "issue_id": p.incident_id, "layers": layers,
            "steps": [{"layer": s.layer, "order": s.order, "description": s.description, "action_type": s.action,
                       "target": s.target, "wait_time": int(s.timeout_s * _NS), "required": s.required,
                       "status": s.status, "metadata": {"id": s.id}} for s in steps],
            "checkpoints": [{"layer": c.layer, "after_step": next((s.order for s in steps if s.id == c.after_step), 0),
                             "checks": c.checks, "timeout": int(c.timeout_s * _NS), "required": c.required,
                             "status": c.status, "message": c.message} for c in (w.checkpoints if w else [])],
            "rollback_steps": [{"layer": s.layer, "order": s.order, "action_type": f"rollback_{s.action}",
                                "target": s.target} for s in reversed(steps) if s.rollback],
            "created_at": entry.submitted_at.isoformat(), "status": status,
            "current_step": sum(1 for s in steps if s.status in ("completed", "failed", "skipped")),
        },
        "execution_result": None if w is None or not w.finished else {
            "status": "success" if w.status == "completed" else "failed", "reason": w.reason,
            "executed_steps": sum(1 for s in steps if s.status in ("completed", "failed")),
            "failed_step": failed, "completed_at": w.completed_at.isoformat() if w.completed_at else None,
        },
        "created_at": entry.submitted_at.isoformat(),
        "started_at": w.started_at.isoformat() if w and w.started_at else None,
        "completed_at": w.completed_at.isoformat() if w and w.completed_at else None,
        "error_message": w.error_message if w else None,
        "workflow": f"/api/v1/workflows/{workflow_id}",
        "checked_at": time.time(),
    }
