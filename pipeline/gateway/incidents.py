"""Incident routes: `GET /api/v1/incidents` (MCP filters and summary), `GET /api/v1/incidents/{id}` (one, in the
same shape) and `POST /api/v1/incidents` (201)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from pipeline.api.contract import PUBLISH_ERRORS, op
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_model, require_token
from pipeline.bus.producer import EventProducer
from pipeline.config import Settings
from pipeline.domain.incidents import (
    IncidentQuery,
    InvalidQuery,
    new_manual_incident,
    to_api,
    with_remediation,
)
from pipeline.domain.remediation_view import RemediationView
from pipeline.events import Event, Incident, IncidentOpened, Severity
from pipeline.gateway.bodies import MAX_WRITE_BODY, SNAKE_OR_CAMEL, new_incident_id
from pipeline.gateway.projection import IncidentProjection, publish_visible
from pipeline.gateway.responses import IncidentCreated, IncidentList, IncidentListQuery, IncidentView


def _bytes_at_most(limit: int) -> Any:
    def check(value: str | None) -> str | None:
        if value is not None and len(value.encode()) > limit:
            raise ValueError(f"must be at most {limit} bytes")
        return value

    return check


class CreateIncident(BaseModel):
    """`POST /api/v1/incidents`: the engine's fields and the MCP server's camelCase ones."""

    model_config = SNAKE_OR_CAMEL
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    severity: Severity
    target: str | None = None
    source: str | None = Field(None, max_length=64)
    labels: dict[str, str] | None = None
    affected_resources: list[str] | None = None
    correlation_id: str | None = Field(None, max_length=256)
    external_id: str | None = Field(None, max_length=256)
    created_by: str | None = Field(None, max_length=256)
    confidence: float | None = Field(None, ge=0, le=1)
    parameters: dict[str, Any] | None = None

    _title = field_validator("title")(_bytes_at_most(200))
    _description = field_validator("description")(_bytes_at_most(2000))
    _target = field_validator("target")(_bytes_at_most(100))

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def known(projection: IncidentProjection, incident_id: str) -> Incident:
    """The read model's incident, or 404 naming `id`."""
    incident = projection.get(incident_id)
    if incident is None:
        raise ApiError(404, "NOT_FOUND", f"incident {incident_id} not found", field="id",
                       incident_id=incident_id)
    return incident


def router(
    settings: Settings, projection: IncidentProjection, producer: EventProducer,
    remediation: RemediationView | None = None,
) -> APIRouter:
    """`remediation` tells what is being done about an incident: its action, workflow and state."""
    view = remediation or RemediationView()
    api = APIRouter(tags=["incidents"])
    topic = settings.topic("incidents")

    @api.get("/api/v1/incidents", summary="List incidents (filters: namespace, severity, status, limit, offset)",
             **op(IncidentList, query=IncidentListQuery, errors=(400,)))
    async def list_incidents(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            query = IncidentQuery.parse(
                q.get("namespace"), q.get("severity"), q.get("status"), q.get("limit"), q.get("offset")
            )
        except InvalidQuery as exc:
            raise ApiError(400, "INVALID_QUERY", str(exc), field=exc.field) from None
        total, page, counts = projection.query(query)
        shown: list[dict[str, Any]] = []
        for row in page:  # only the page's incidents are decoded
            found = view.remediation(row.id)
            shown.append(to_api(with_remediation(known(projection, row.id), found), found))
        return JSONResponse(
            {
                "incidents": shown,
                "total": total,
                "count": len(page),
                "limit": query.limit,
                "offset": query.offset,
                "summary": counts,
            }
        )

    @api.get("/api/v1/incidents/{incident_id}", summary="One incident, in the list's shape",
             **op(IncidentView, errors=(404,)))
    async def get_incident(incident_id: str) -> JSONResponse:
        incident = known(projection, incident_id)
        found = view.remediation(incident_id)
        return JSONResponse(to_api(with_remediation(incident, found), found))

    @api.post("/api/v1/incidents", summary="Create an incident",
              **op(IncidentCreated, status=201, body=CreateIncident, token=True, errors=PUBLISH_ERRORS))
    async def create_incident(request: Request) -> JSONResponse:
        require_token(request, settings.bearer_token)
        req, _ = await read_model(request, CreateIncident, MAX_WRITE_BODY)
        incident = new_manual_incident(incident_id=new_incident_id(), now=datetime.now(UTC), **req.model_dump())
        event = Event.of(IncidentOpened(incident=incident), source="pipeline/gateway", incidentid=incident.id)
        await publish_visible(producer, topic, event, projection.applied, settings.gateway_write_timeout_s,
                              "incident", incident_id=incident.id)
        created = to_api(known(projection, incident.id))
        return JSONResponse(
            {
                "status": created["status"],
                "incident_id": incident.id,
                "created_at": created["created_at"],
                "title": created["title"],
                "description": created["description"],
                "severity": created["severity"],
                "priority": created["priority"],
                "incident": created,
                "message": "Incident created successfully",
            },
            status_code=201,
        )

    return api
