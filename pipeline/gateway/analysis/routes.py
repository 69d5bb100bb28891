"""The analysis router: each route validates its parameters and hands them to its resource module."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.api.contract import ENGINE_BODY_ERRORS, op
from pipeline.config import Settings
from pipeline.gateway.analysis.capacity import (
    ClusterCapacity,
    NamespaceCapacity,
    cluster_report,
    namespace_report,
)
from pipeline.gateway.analysis.disk import DiskExhaustion, disk_report
from pipeline.gateway.analysis.leaks import MemoryLeaks, leaks_report
from pipeline.gateway.analysis.params import (
    CapacityTrendsQuery,
    DiskExhaustionQuery,
    MemoryLeakQuery,
    NamespaceCapacityQuery,
    RightsizingQuery,
    invalid,
    namespace_path,
    parse_bool,
    parse_mountpoint,
    parse_name,
    parse_namespaces,
    parse_window,
)
from pipeline.gateway.analysis.predict import (
    PredictBody,
    UsagePrediction,
    predict_report,
    read_predict_request,
)
from pipeline.gateway.analysis.rightsizing import RightsizingRecommendations, rightsizing_report
from pipeline.gateway.analysis.trends import CapacityTrends, trends_report
from pipeline.gateway.dependencies import PROMETHEUS_ERRORS, prometheus_not_configured

# The GET routes: a parameter they refuse is a 400 naming it, before Prometheus is asked.
QUERY_ERRORS = {400: "A parameter is invalid (`INVALID_QUERY`); `field` names it", **PROMETHEUS_ERRORS}


# ------------------------------------------------------------------------------------------ the router
def router(settings: Settings, prometheus: PrometheusClient | None) -> APIRouter:
    """The analysis routes. Without a Prometheus client (PROMETHEUS_URL unset) every route answers 503."""
    api = APIRouter(tags=["analysis"])

    def prom() -> PrometheusClient:
        if prometheus is None:
            raise prometheus_not_configured()
        return prometheus

    @api.post(
        "/api/v1/predict", summary="Forecast CPU and memory at an hour of the week (statistical baseline)",
        **op(UsagePrediction, body=PredictBody, body_errors=ENGINE_BODY_ERRORS, token=True, errors={
            404: "No CPU or memory usage history, or no capacity (limits or allocatable), for the target "
                 "(`NO_DATA`)",
            **PROMETHEUS_ERRORS}),
    )
    async def predict(request: Request) -> JSONResponse:
        req = await read_predict_request(request)
        return JSONResponse(await predict_report(prom(), req))

    @api.get(
        "/api/v1/capacity/namespace/{namespace}",
        summary="Quota, usage, availability and trend of a namespace",
        **op(NamespaceCapacity, query=NamespaceCapacityQuery, errors=QUERY_ERRORS),
    )
    async def namespace_capacity(
        namespace: Annotated[str, namespace_path("a namespace (a name, not a glob)")], request: Request,
    ) -> JSONResponse:
        q = request.query_params
        ns = parse_name(namespace, "namespace", subdomain=False)
        if ns is None:
            raise invalid("namespace", "namespace is required")
        trending = parse_bool(q.get("include_trending"), "include_trending", True)
        infrastructure = parse_bool(q.get("include_infrastructure"), "include_infrastructure", False)
        window = parse_window(q.get("window"), "7d")
        return JSONResponse(await namespace_report(prom(), ns, trending, infrastructure, window))

    @api.get("/api/v1/capacity/cluster", summary="Node capacity, cluster usage and per-namespace usage",
             **op(ClusterCapacity, errors=PROMETHEUS_ERRORS))
    async def cluster_capacity() -> JSONResponse:
        return JSONResponse(await cluster_report(prom()))

    @api.get("/api/v1/capacity/trends", summary="Capacity forecast of a namespace (or the cluster)",
             **op(CapacityTrends, query=CapacityTrendsQuery, errors=QUERY_ERRORS))
    async def capacity_trends(request: Request) -> JSONResponse:
        q = request.query_params
        namespaces = parse_namespaces(q.get("namespace"))
        window = parse_window(q.get("window"), "7d")
        return JSONResponse(await trends_report(prom(), namespaces, window))

    @api.get("/api/v1/predict/disk-exhaustion", summary="Days until each filesystem is full",
             **op(DiskExhaustion, query=DiskExhaustionQuery, errors=QUERY_ERRORS))
    async def disk_exhaustion(request: Request) -> JSONResponse:
        q = request.query_params
        node = parse_name(q.get("node"), "node", subdomain=True)
        mountpoint = parse_mountpoint(q.get("mountpoint"))
        return JSONResponse(await disk_report(prom(), node, mountpoint))

    @api.get("/api/v1/predict/memory-leak", summary="Containers whose working set grows like a leak",
             **op(MemoryLeaks, query=MemoryLeakQuery, errors=QUERY_ERRORS))
    async def memory_leak(request: Request) -> JSONResponse:
        ns = parse_name(request.query_params.get("namespace"), "namespace", subdomain=False)
        return JSONResponse(await leaks_report(prom(), ns))

    @api.get("/api/v1/recommendations/rightsizing", summary="Requests and limits from P95 usage",
             **op(RightsizingRecommendations, query=RightsizingQuery, errors=QUERY_ERRORS))
    async def rightsizing(request: Request) -> JSONResponse:
        q = request.query_params
        ns = parse_name(q.get("namespace"), "namespace", subdomain=False)
        pod = parse_name(q.get("pod"), "pod", subdomain=True)
        window = parse_window(q.get("window"), "30d")
        return JSONResponse(await rightsizing_report(prom(), ns, pod, window))

    return api
