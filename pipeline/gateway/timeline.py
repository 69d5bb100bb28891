"""`GET /api/v1/incidents/{id}/timeline`: every event of an incident on every topic, in causal order, each with its
position in the log (`bus.timeline`, the same read as `pipeline replay --incident`), and `GET /api/v1/decisions`,
the arbitration decisions of the remediation read model."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pipeline.api.contract import op
from pipeline.api.errors import ApiError
from pipeline.bus.timeline import incident_timeline
from pipeline.config import Settings
from pipeline.domain.decisions import DecisionQuery
from pipeline.domain.incidents import InvalidQuery
from pipeline.domain.timeline import timeline_start
from pipeline.events import Decision, iso_z
from pipeline.gateway.incidents import known
from pipeline.gateway.projection import IncidentProjection
from pipeline.gateway.remediation_view import Entry, RemediationView, decision_view
from pipeline.gateway.responses import DecisionList, DecisionListQuery, Timeline
from pipeline.observability import get_logger

log = get_logger("pipeline.gateway.timeline")


def router(settings: Settings, projection: IncidentProjection, view: RemediationView) -> APIRouter:
    api = APIRouter(tags=["forensics"])
    margin = timedelta(seconds=settings.timeline_margin_s)

    @api.get("/api/v1/incidents/{incident_id}/timeline",
             summary="Every event of an incident across all topics, in causal order, with its position",
             **op(Timeline, errors=(404, 503)))
    async def timeline(incident_id: str) -> JSONResponse:
        start = timeline_start(known(projection, incident_id), margin)
        try:
            records = await incident_timeline(settings, incident_id, start)
        except Exception as exc:  # noqa: BLE001 - the broker or a topic away: the client may retry
            log.warning("timeline read failed", incident_id=incident_id, error=repr(exc))
            raise ApiError(503, "BROKER_UNAVAILABLE", f"the log could not be read: {type(exc).__name__}: {exc}",
                           headers={"Retry-After": "5"}) from None
        return JSONResponse({"incident_id": incident_id,
                             "window": {"from": iso_z(start), "margin_seconds": settings.timeline_margin_s},
                             "count": len(records), "events": [r.as_dict() for r in records]})

    @api.get("/api/v1/decisions", summary="Arbitration decisions (filters: namespace, outcome, since, limit, offset)",
             **op(DecisionList, query=DecisionListQuery, errors=(400,)))
    async def decisions(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            query = DecisionQuery.parse(q.get("namespace"), q.get("outcome"), q.get("since"), q.get("limit"),
                                        q.get("offset"))
        except InvalidQuery as exc:
            raise ApiError(400, "INVALID_QUERY", str(exc), field=exc.field) from None
        decided = [e for e in view.entries.values() if e.decision is not None]
        total, page = query.select(decided, _decision)
        return JSONResponse({"decisions": [_item(e) for e in page], "total": total, "count": len(page),
                             "limit": query.limit, "offset": query.offset})

    return api


def _decision(entry: Entry) -> Decision:
    assert entry.decision is not None
    return entry.decision


def _item(entry: Entry) -> dict[str, object]:
    p, d = entry.proposal, entry.decision
    assert d is not None
    return {**decision_view(d, entry.resolution_seconds), "namespace": p.namespace, "incident_id": p.incident_id,
            "workflow_id": entry.workflow.id if entry.workflow is not None else p.workflow_id,
            "dry_run": p.dry_run, "status": entry.status}
