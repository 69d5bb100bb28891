"""`POST /api/v1/alerts` and `POST /api/v1/anomalies`: Alertmanager webhook v4 receivers.

`/api/v1/anomalies` is also the Python engine's anomaly-report route: a body without `alerts` is handed to
`anomaly_report` (the gateway's, when it runs in this process), else answered 422 naming `alerts`.

Both take JSON only: a Content-Type other than `application/json` (UTF-8) is 415; a request without one is
read as JSON. An alert past a size limit refuses the whole webhook with 413 naming the field (nothing stored,
no retry advice); 503 + Retry-After is only for what a retry can fix (broker down or slow, in-flight limit)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from pipeline.api.errors import ApiError, from_pydantic
from pipeline.api.requests import read_json, require_json_content_type, require_token
from pipeline.domain.alertmanager import AlertmanagerWebhook
from pipeline.ingest.alerts import AlertIngest, BrokerRejected, BrokerUnavailable, IngestRefused
from pipeline.observability import INGEST_REQUESTS, INGEST_SECONDS

RETRY_AFTER_S = "5"

# The gateway's anomaly-report handler: the request (token checked) and its parsed body -> the answer.
AnomalyReport = Callable[[Request, Any], Awaitable[JSONResponse]]


def router(ingest: AlertIngest, anomaly_report: AnomalyReport | None = None) -> APIRouter:
    api = APIRouter()
    settings = ingest.settings

    async def receive(request: Request, route: str) -> JSONResponse:
        started = time.perf_counter()
        code = 500
        try:
            require_token(request, settings.bearer_token)
            require_json_content_type(request)
            body = await read_json(request, settings.ingest_max_body_bytes)
            if not isinstance(body, dict):
                raise ApiError(422, "VALIDATION_FAILED", "body must be a JSON object", field="body")
            alerts = body.get("alerts")
            if isinstance(alerts, list) and len(alerts) > settings.ingest_max_alerts:
                raise ApiError(413, "LIMIT_EXCEEDED", f"alerts: {len(alerts)} in one webhook; at most "
                               f"{settings.ingest_max_alerts}", field="alerts",
                               limit=settings.ingest_max_alerts, size=len(alerts))
            if route == "anomalies" and "alerts" not in body:  # not a webhook: an anomaly report
                if anomaly_report is None:
                    raise ApiError(422, "VALIDATION_FAILED", "not an Alertmanager webhook (`alerts` is "
                                   "missing); anomaly reports need the gateway in this process",
                                   field="alerts")
                response = await anomaly_report(request, body)
                code = response.status_code
                return response
            try:
                webhook = AlertmanagerWebhook.model_validate(body)
            except ValidationError as exc:
                raise from_pydantic(exc) from None
            try:
                result = await ingest.accept(webhook, traceparent=request.headers.get("traceparent"))
            except IngestRefused as exc:
                raise ApiError(413, "LIMIT_EXCEEDED", str(exc), field=exc.field, limit=exc.limit,
                               size=exc.size) from None
            except BrokerRejected as exc:
                raise ApiError(500, "BROKER_REJECTED", str(exc)) from None
            except BrokerUnavailable as exc:
                raise ApiError(
                    503, "BROKER_UNAVAILABLE", str(exc), headers={"Retry-After": RETRY_AFTER_S}
                ) from None
            code = 200
            return JSONResponse(
                {
                    "status": "accepted",
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "signal_ids": result.signal_ids,
                }
            )
        except ApiError as exc:
            code = exc.status
            raise
        finally:
            INGEST_REQUESTS.labels(route, str(code)).inc()
            INGEST_SECONDS.observe(time.perf_counter() - started)

    @api.post("/api/v1/alerts", tags=["ingest"], summary="Alertmanager webhook receiver")
    async def alerts(request: Request) -> JSONResponse:
        return await receive(request, "alerts")

    @api.post("/api/v1/anomalies", tags=["ingest"],
              summary="Alertmanager webhook receiver, or an anomaly report (Python engine API)")
    async def anomalies(request: Request) -> JSONResponse:
        return await receive(request, "anomalies")

    return api
