"""`POST /api/v1/alerts` and `POST /api/v1/anomalies`: Alertmanager webhook v4 receivers.

`/api/v1/anomalies` is also the Python engine's anomaly-report route: a body without `alerts` is handed to
`anomaly_report` (the gateway's, when it runs in this process), else answered 422 naming `alerts`.

Both take JSON only: a Content-Type other than `application/json` (UTF-8) is 415; a request without one is
read as JSON. An alert past a size limit refuses the whole webhook with 413 naming the field (nothing stored,
no retry advice); 503 + Retry-After is only for what a retry can fix (broker down or slow, in-flight limit)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.api.contract import Body, op
from pipeline.api.errors import ApiError, from_pydantic
from pipeline.api.requests import parse_json, read_body, require_json_content_type, require_token
from pipeline.domain.alertmanager import AlertmanagerWebhook
from pipeline.ingest.alerts import AlertIngest, BrokerRejected, BrokerUnavailable, IngestRefused
from pipeline.observability import INGEST_REQUESTS, INGEST_SECONDS
from pipeline.web.hot import Handler

RETRY_AFTER_S = "5"

# The gateway's anomaly-report handler: the request (token checked) and its parsed body -> the answer.
AnomalyReport = Callable[[Request, Any], Awaitable[JSONResponse]]


class Accepted(Body):
    """Every alert is on the signals topic (or was already: a duplicate of a recent delivery)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "accepted", "accepted": 2, "duplicates": 0, "signal_ids": ["sig-9f2c…", "sig-41ab…"]}]})
    status: Literal["accepted"]
    accepted: int = Field(description="alerts stored on the signals topic by this request")
    duplicates: int = Field(description="alerts already stored by a recent delivery of the same webhook")
    signal_ids: list[str] = Field(description="the signal id of every alert, in the webhook's order")


# 422: valid JSON that is not a webhook; 413: over a size limit (nothing stored, do not retry);
# 503 + Retry-After: the broker is down or slow (retry).
WEBHOOK: dict[str, Any] = {"body": AlertmanagerWebhook, "token": True, "errors": (422, 503)}


def router(ingest: AlertIngest, anomaly_report: AnomalyReport | None = None,
           report_contract: tuple[type[BaseModel], type[BaseModel]] | None = None,
           ) -> tuple[APIRouter, dict[tuple[str, str], Handler]]:
    """The webhook routes, declared for the app (and its OpenAPI document), and the same handlers by method and
    path, served as hot routes (pipeline/web/hot.py: before the framework's stack, a third of a request's CPU).
    `report_contract`: the anomaly report's request and 201 models, with `anomaly_report`."""
    api = APIRouter()
    settings = ingest.settings
    counted: dict[tuple[str, int], Any] = {}  # (route, status) -> its counter child: `labels` is ~1 µs a call

    async def receive(request: Request, route: str) -> JSONResponse:
        started = time.perf_counter()
        code = 500
        try:
            require_token(request, settings.bearer_token)
            require_json_content_type(request)
            raw = await read_body(request, settings.ingest_max_body_bytes)
            webhook = _webhook(raw)
            if webhook is not None and len(webhook.alerts) <= settings.ingest_max_alerts:
                response = await accept(webhook, request)
                code = response.status_code
                return response
            body = parse_json(raw)  # not a valid webhook: the answer names what is wrong
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
            response = await accept(webhook, request)
            code = response.status_code
            return response
        except ApiError as exc:
            code = exc.status
            raise
        finally:
            if (counter := counted.get((route, code))) is None:
                counter = counted[route, code] = INGEST_REQUESTS.labels(route, str(code))
            counter.inc()
            INGEST_SECONDS.observe(time.perf_counter() - started)

    async def accept(webhook: AlertmanagerWebhook, request: Request) -> JSONResponse:
        try:
            result = await ingest.accept(webhook, traceparent=request.headers.get("traceparent"))
        except IngestRefused as exc:
            raise ApiError(413, "LIMIT_EXCEEDED", str(exc), field=exc.field, limit=exc.limit,
                           size=exc.size) from None
        except BrokerRejected as exc:
            raise ApiError(500, "BROKER_REJECTED", str(exc)) from None
        except BrokerUnavailable as exc:
            raise ApiError(503, "BROKER_UNAVAILABLE", str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None
        return JSONResponse({"status": "accepted", "accepted": result.accepted, "duplicates": result.duplicates,
                             "signal_ids": result.signal_ids})

    @api.post("/api/v1/alerts", tags=["ingest"], summary="Alertmanager webhook receiver", **op(Accepted, **WEBHOOK))
    async def alerts(request: Request) -> JSONResponse:
        return await receive(request, "alerts")

    @api.post("/api/v1/anomalies", tags=["ingest"],
              summary="Alertmanager webhook receiver, or an anomaly report (Python engine API)",
              **_anomalies_op(report_contract))
    async def anomalies(request: Request) -> JSONResponse:
        return await receive(request, "anomalies")

    return api, {("POST", "/api/v1/alerts"): alerts, ("POST", "/api/v1/anomalies"): anomalies}


def _anomalies_op(report: tuple[type[BaseModel], type[BaseModel]] | None) -> dict[str, Any]:
    """A webhook (200), or with the gateway in this process an anomaly report too (201)."""
    if report is None:
        return op(Accepted, **WEBHOOK)
    return op(Accepted, **{**WEBHOOK, "body": (AlertmanagerWebhook, report[0])}, extra={201: report[1]})


def _webhook(body: bytes) -> AlertmanagerWebhook | None:
    """The body as a webhook when it is one (parsed and validated in one pass, ~12 µs for two alerts: a third of
    `json.loads`, the depth check and validating the dict); None when it is not, and the caller finds out why."""
    try:
        return AlertmanagerWebhook.model_validate_json(body)
    except ValidationError:
        return None
