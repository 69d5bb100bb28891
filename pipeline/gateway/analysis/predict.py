"""R8 `POST /api/v1/predict`: CPU and memory at an hour of the week, from four weeks of history."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient, Series
from pipeline.api.contract import Body, dns_subdomain, fullmatch, maybe_absent
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.domain import capacity as cap
from pipeline.domain.names import (
    DNS_LABEL_MAX,
    promql_string,
)
from pipeline.gateway.analysis.formatting import iso, rounded
from pipeline.gateway.analysis.params import (
    NAMESPACE_OR_GLOB,
    Namespaces,
    ns_selector,
    parse_name,
    parse_namespaces,
)
from pipeline.gateway.analysis.queries import (
    MAX_PREDICT_BODY,
    PREDICT_LOOKBACK_S,
    PREDICT_POINTS,
    fetch_grid,
    gather,
    label_eq,
    scalar_of,
    tagged,
    usage_expr,
    usage_history,
)
from pipeline.gateway.dependencies import details as dependency_details

# ------------------------------------------------------------------------------------------ R8 predict
SCOPES = ("pod", "deployment", "namespace", "cluster")
Scope = Literal["pod", "deployment", "namespace", "cluster"]
MODEL_MAX = 253
_GIVEN: dict[str, Any] = {"type": "string", "minLength": 1}


def _needs(*fields: str) -> dict[str, Any]:
    """The fields a scope needs: given, and not empty."""
    return {"required": list(fields), "properties": dict.fromkeys(fields, _GIVEN)}


def _scope_is(scope: str) -> dict[str, Any]:
    return {"required": ["scope"], "properties": {"scope": {"const": scope}}}


# A pod or deployment scope, given or inferred, needs its name and namespace (`read_predict_request`).
_SCOPE_NEEDS: list[Any] = [
    {"if": _scope_is("pod"), "then": _needs("pod", "namespace")},
    {"if": _scope_is("deployment"), "then": _needs("deployment", "namespace")},
    {"if": {"properties": {"scope": {"type": "null"}}, "anyOf": [_needs("pod"), _needs("deployment")]},
     "then": _needs("namespace")},
]


class PredictBody(BaseModel):
    """`POST /api/v1/predict` (R8), checked by `read_predict_request` in the engine's order and with its
    messages. Empty strings are absent; other fields (the MCP's `cpu_rolling_mean`, `memory_rolling_mean`) are
    ignored. A pod or deployment scope (given, or inferred: pod > deployment > namespace > cluster) needs the
    name and its namespace."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "allOf": _SCOPE_NEEDS,
        "examples": [{"hour": 15, "day_of_week": 2, "namespace": "shop", "scope": "namespace"}],
    })
    hour: int | None = Field(0, ge=0, le=23, description="UTC; missing or null: 0 (as the engine's Go decoding)")
    day_of_week: int | None = Field(0, ge=0, le=6, description="0 = Monday … 6 = Sunday; missing or null: 0")
    scope: Scope | None = Field(None, description="missing: pod if `pod`, else deployment if `deployment`, else "
                                                  "namespace if `namespace`, else cluster")
    namespace: str | None = Field(None, description="a namespace or a glob of them (`shop*`)",
                                  json_schema_extra=fullmatch(NAMESPACE_OR_GLOB, DNS_LABEL_MAX, empty=True))
    deployment: str | None = Field(None, description="its pods are `<deployment>-<hash>-<suffix>`",
                                   json_schema_extra=dns_subdomain(empty=True))
    pod: str | None = Field(None, json_schema_extra=dns_subdomain(empty=True))
    model: str | None = Field(None, max_length=MODEL_MAX, description="echoed as `model_info.requested_model`; "
                                                                      "default `predictive-analytics`")


class Predictions(Body):
    cpu_percent: float | None = Field(description="of the capacity (`forecast.cpu.capacity_basis`), 0..100; "
                                                  "null without CPU history or capacity")
    memory_percent: float | None = Field(description="likewise for memory")


class CurrentMetrics(Body):
    cpu_rolling_mean: float | None = Field(description="the last 24 h mean, % of the capacity")
    memory_rolling_mean: float | None
    timestamp: datetime
    time_range: Literal["24h"]


class PredictionModel(Body):
    name: Literal["statistical-baseline"]
    version: str
    confidence: float = Field(ge=0, le=1)
    method: str
    requested_model: str
    history_hours: float = Field(description="the longest history the forecast had")


class TargetTime(Body):
    hour: int
    day_of_week: int
    iso_timestamp: datetime = Field(description="the next occurrence of that hour and weekday, UTC")


class ResourceForecast(Body):
    """The forecast of one resource: `predicted_cores`/`capacity_cores` (cpu) or `predicted_bytes`/
    `capacity_bytes` (memory)."""

    capacity_basis: Literal["limits", "allocatable"] | None = Field(
        description="the scope's summed limits, else the nodes' allocatable")
    method: str
    confidence: float = Field(ge=0, le=1)
    trend: cap.TrendWord
    daily_change_percent: float
    samples: int


class CpuForecast(ResourceForecast):
    predicted_cores: float
    capacity_cores: float | None


class MemoryForecast(ResourceForecast):
    predicted_bytes: float
    capacity_bytes: float | None


class Forecasts(Body):
    cpu: CpuForecast | None = Field(description="null without CPU history")
    memory: MemoryForecast | None = Field(description="null without memory history")


class UsagePrediction(Body):
    """CPU and memory at an hour of the week, forecast from four weeks of history (R8).

    What the MCP server's predict-resource-usage shows."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "scope": "namespace", "target": "shop",
        "predictions": {"cpu_percent": 17.91, "memory_percent": 75.04},
        "current_metrics": {"cpu_rolling_mean": 17.91, "memory_rolling_mean": 38.23,
                            "timestamp": "2026-12-06T17:53:23Z", "time_range": "24h"},
        "model_info": {"name": "statistical-baseline", "version": "1", "confidence": 0.04,
                       "method": "additive profile (hour of week, else hour of day) + least-squares trend",
                       "requested_model": "predictive-analytics", "history_hours": 3.0},
        "target_time": {"hour": 15, "day_of_week": 2, "iso_timestamp": "2026-12-09T15:00:00Z"},
        "trend": "upward", "recommendation": "Usage is trending upward: keep monitoring and prepare to scale.",
        "forecast": {"cpu": {"predicted_cores": 0.447786, "capacity_cores": 2.5, "capacity_basis": "limits",
                             "method": "mean", "confidence": 0.04, "trend": "stable", "daily_change_percent": -20.73,
                             "samples": 180},
                     "memory": {"predicted_bytes": 2417286956.876343, "capacity_bytes": 3221225472.0,
                                "capacity_basis": "limits", "method": "mean + linear trend", "confidence": 0.04,
                                "trend": "upward", "daily_change_percent": 510.64, "samples": 182}}}]})
    status: Literal["success"]
    scope: Scope
    target: str = Field(description="`<namespace>/<pod>`, `<namespace>/<deployment>`, the namespace (or glob), "
                                    "`all-namespaces` or `cluster`")
    matched_namespaces: list[str] = maybe_absent("for a namespace glob: the namespaces with pods it matched")
    predictions: Predictions
    current_metrics: CurrentMetrics
    model_info: PredictionModel
    target_time: TargetTime
    trend: cap.TrendWord
    recommendation: str
    forecast: Forecasts


@dataclass(frozen=True, slots=True)
class PredictRequest:
    hour: int
    day_of_week: int
    scope: str
    namespace: str | None
    deployment: str | None
    pod: str | None
    model: str

    @property
    def target(self) -> str:
        if self.scope == "pod":
            return f"{self.namespace}/{self.pod}"
        if self.scope == "deployment":
            return f"{self.namespace}/{self.deployment}"
        if self.scope == "namespace":
            return self.namespace or "all-namespaces"
        return "cluster"

    @property
    def namespaces(self) -> Namespaces | None:
        return Namespaces(self.namespace) if self.namespace is not None else None

    @property
    def selector(self) -> str:
        """The PromQL matchers of the scope; a namespace glob becomes a regex matcher."""
        namespace = ns_selector(self.namespaces)
        if self.scope == "pod":
            return namespace + label_eq("pod", self.pod)
        if self.scope == "deployment":
            # A Deployment's pods are named <deployment>-<replicaset hash>-<suffix>.
            assert self.deployment is not None
            pods = re.escape(self.deployment) + "-[a-z0-9]+-[a-z0-9]+"
            return namespace + f",pod=~{promql_string(pods)}"
        if self.scope == "namespace":
            return namespace
        return ""


def _bad_request(message: str, field: str, details: str | None = None) -> ApiError:
    error = ApiError(400, "INVALID_REQUEST", message, field=field)
    if details:
        error.extra["details"] = dependency_details(field, details)
    return error


async def read_predict_request(request: Request) -> PredictRequest:
    """R8's validation, in R8's order and with its messages; then the names (ours)."""
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.lower().startswith("application/json"):
        raise _bad_request("Content-Type must be application/json", "Content-Type")
    try:
        body = await read_json(request, MAX_PREDICT_BODY)
    except ApiError as exc:
        if exc.status != 400:
            raise
        raise _bad_request("Invalid request format", "body", exc.message) from None
    if not isinstance(body, dict):
        raise _bad_request("Invalid request format", "body", "the body must be a JSON object")

    def integer(key: str) -> int:
        # A missing hour or day is 0, as the engine's Go decoding made it (MCP always sends both).
        value = body.get(key, 0)
        if value is None:
            return 0
        if isinstance(value, float) and value.is_integer():
            return int(value)  # `3.0` is the integer 3 in JSON (and in the contract's JSON Schema)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_request("Invalid request format", key, f"{key} must be an integer")
        return value

    def text(key: str) -> str | None:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad_request("Invalid request format", key, f"{key} must be a string")
        return value or None

    hour, day = integer("hour"), integer("day_of_week")
    namespace, deployment, pod = text("namespace"), text("deployment"), text("pod")
    scope, model = text("scope"), text("model") or "predictive-analytics"
    if not 0 <= hour <= 23:
        raise _bad_request("hour must be between 0-23", "hour")
    if not 0 <= day <= 6:
        raise _bad_request("day_of_week must be between 0-6 (0=Monday, 6=Sunday)", "day_of_week")
    if scope is None:
        scope = "pod" if pod else "deployment" if deployment else "namespace" if namespace else "cluster"
    if scope not in SCOPES:
        raise _bad_request("scope must be one of: pod, deployment, namespace, cluster", "scope")
    if scope in ("pod", "deployment"):
        if (pod if scope == "pod" else deployment) is None:
            raise _bad_request(f"{scope} name is required when scope is '{scope}'", scope)
        if namespace is None:
            raise _bad_request(f"namespace is required when scope is '{scope}'", "namespace")
    if len(model) > 253:
        raise _bad_request("model must be at most 253 characters", "model")
    return PredictRequest(
        hour=hour,
        day_of_week=day,
        scope=scope,
        namespace=(ns.value if (ns := parse_namespaces(namespace, code="INVALID_REQUEST")) is not None else None),
        deployment=parse_name(deployment, "deployment", subdomain=True, code="INVALID_REQUEST"),
        pod=parse_name(pod, "pod", subdomain=True, code="INVALID_REQUEST"),
        model=model,
    )


_ALLOCATABLE = 'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"})'


def _capacity_expr(req: PredictRequest) -> str:
    """The capacity the forecast is a percentage of: the scope's limits, else the nodes' allocatable (tagged
    `basis`); for a namespace glob also the namespaces it matched, in the same instant query."""
    if req.scope == "cluster":
        return tagged(_ALLOCATABLE, "basis", "allocatable")
    limits = f'sum by (resource) (kube_pod_container_resource_limits{{resource=~"cpu|memory"{req.selector}}})'
    expr = tagged(limits, "basis", "limits") + " or " + tagged(_ALLOCATABLE, "basis", "allocatable")
    if _globbed(req):
        matched = f"count by (namespace) (kube_pod_info{{{ns_selector(req.namespaces).lstrip(',')}}})"
        expr += " or " + tagged(matched, "basis", "namespace")
    return expr


def _globbed(req: PredictRequest) -> bool:
    return req.scope != "cluster" and req.namespaces is not None and req.namespaces.glob


def _capacity_basis(capacity: list[Series], resource: str) -> tuple[str | None, float | None]:
    """(basis, value): the scope's limits when known, else the allocatable."""
    for kind in ("limits", "allocatable"):
        value = scalar_of(capacity, resource=resource, basis=kind)
        if value:
            return kind, value
    return None, None


def _percent(value: float | None, whole: float | None) -> float | None:
    return rounded(min(100.0, max(0.0, value / whole * 100)), 2) if value is not None and whole else None


def _forecast_json(
    f: cap.UsageForecast | None, kind: str | None, whole: float | None, unit: str
) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        f"predicted_{unit}": rounded(f.value, 6),
        f"capacity_{unit}": rounded(whole, 6),
        "capacity_basis": kind,
        "method": f.method,
        "confidence": f.confidence,
        "trend": f.trend,
        "daily_change_percent": f.daily_change_percent,
        "samples": f.samples,
    }


async def _forecasts(
    prom: PrometheusClient, req: PredictRequest, now: float, target: datetime
) -> tuple[dict[str, cap.UsageForecast | None], list[Series]]:
    """Four weeks of the scope's usage forecast at `target` (by resource), and the capacity series."""
    usage, capacity = await gather(
        fetch_grid(prom, lambda step: usage_expr(req.selector, step), PREDICT_LOOKBACK_S, PREDICT_POINTS, now),
        prom.query(_capacity_expr(req), now),
    )
    series = usage_history(usage)
    forecasts = await asyncio.to_thread(
        lambda: {r: cap.forecast_usage(points, target.timestamp()) for r, points in series.items() if r}
    )
    return forecasts, capacity


async def predict_report(prom: PrometheusClient, req: PredictRequest) -> dict[str, Any]:
    """R8's answer: the forecast as a percentage of capacity, with the model's and the trend's details."""
    now = time.time()
    moment = datetime.fromtimestamp(now, UTC)
    target = cap.next_occurrence(moment, req.day_of_week, req.hour)
    forecasts, capacity = await _forecasts(prom, req, now, target)
    cpu, memory = forecasts.get("cpu"), forecasts.get("memory")
    if cpu is None and memory is None:
        raise ApiError(404, "NO_DATA", f"no CPU or memory usage history for {req.target}", target=req.target)
    (cpu_basis, cpu_cap), (mem_basis, mem_cap) = _capacity_basis(capacity, "cpu"), _capacity_basis(capacity, "memory")
    if not cpu_cap and not mem_cap:
        raise ApiError(
            404, "NO_DATA", f"no capacity (limits or allocatable) known for {req.target}", target=req.target
        )
    cpu_pct = _percent(cpu.value if cpu else None, cpu_cap)
    mem_pct = _percent(memory.value if memory else None, mem_cap)
    known = [f for f in (cpu, memory) if f is not None]
    trend = cap.combined_trend(*((f.trend, f.daily_change_percent) for f in known))
    matched = sorted(s.labels.get("namespace", "") for s in capacity if s.labels.get("basis") == "namespace")
    return {
        "status": "success",
        "scope": req.scope,
        "target": req.target,
        **({"matched_namespaces": matched} if _globbed(req) else {}),
        "predictions": {"cpu_percent": cpu_pct, "memory_percent": mem_pct},
        "current_metrics": {
            "cpu_rolling_mean": _percent(cpu.rolling_mean if cpu else None, cpu_cap),
            "memory_rolling_mean": _percent(memory.rolling_mean if memory else None, mem_cap),
            "timestamp": iso(moment),
            "time_range": "24h",
        },
        "model_info": {
            "name": "statistical-baseline",
            "version": "1",
            "confidence": min(f.confidence for f in known),
            "method": "additive profile (hour of week, else hour of day) + least-squares trend",
            "requested_model": req.model,
            "history_hours": rounded(max(f.span_s for f in known) / 3600, 1),
        },
        "target_time": {"hour": req.hour, "day_of_week": req.day_of_week, "iso_timestamp": iso(target)},
        "trend": trend,
        "recommendation": cap.usage_recommendation(cpu_pct, mem_pct, trend),
        "forecast": {
            "cpu": _forecast_json(cpu, cpu_basis, cpu_cap, "cores"),
            "memory": _forecast_json(memory, mem_basis, mem_cap, "bytes"),
        },
    }
