"""The FastAPI application: the parts a process runs (ingest, gateway) plus health and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.api import contract, errors
from pipeline.api.contract import Body, op
from pipeline.api.requests import require_token
from pipeline.bus.producer import EventProducer
from pipeline.compose.health import KafkaProbe, prometheus_status
from pipeline.config import COMPUTE_ROUTES, Settings
from pipeline.events import iso_z
from pipeline.gateway.projection import ProjectionRunner
from pipeline.ingest.alerts import AlertIngest
from pipeline.web.hot import Handler, HotRoutes
from pipeline.web.prefix import DoubledPrefix


class Liveness(Body):
    """The process answers."""

    status: Literal["ok"]
    version: str


class DeepHealth(Body):
    """The health of this process's parts and dependencies (503 when the broker cannot be reached)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "healthy", "timestamp": "2026-12-06T17:47:26.465272Z", "version": "0.1.0", "uptime_seconds": 81,
        "dependencies": {"kafka": {"name": "kafka", "status": "ok", "message": "1 broker(s) reachable",
                                   "latency_ms": 8.2, "checked_at": "2026-12-06T17:47:26.465150Z"}},
        "components": {"projection": {"ready": True, "incidents": 0}, "ingest": {"in_flight": 0}},
        "details": {"namespace": "default", "topic_prefix": "pipeline."}}]})
    status: Literal["healthy", "degraded", "unhealthy"] = Field(
        description="unhealthy: the broker cannot be reached; degraded: a dependency or part is down, a stage is "
                    "stuck, or the read model is still loading")
    timestamp: str
    version: str
    uptime_seconds: int
    dependencies: dict[str, dict[str, Any]] = Field(description="kafka, and prometheus, ml_service and kserve "
                                                                "when configured: each with a `status`")
    components: dict[str, Any] = Field(description="stages, projection, remediation, ingest, watch: those this "
                                                   "process runs")
    details: dict[str, Any]


@dataclass
class Parts:
    """What this process serves over HTTP; absent parts' routes are not mounted."""

    settings: Settings
    probe: KafkaProbe
    producer: EventProducer | None = None
    ingest: AlertIngest | None = None
    projection: ProjectionRunner | None = None
    prometheus: PrometheusClient | None = None
    kserve: Any = None  # KServeClient, with its registry
    ml_service: Any = None  # MLServiceClient
    watch: Any = None  # WatchService, when this process runs the Kubernetes watcher
    detector: Any = None  # adapters.detection.Detector, when a cluster is configured
    started_monotonic: float = field(default_factory=time.monotonic)


def build_app(parts: Parts) -> Any:
    """The ASGI app a process serves: the FastAPI app (`api_app`) behind its hot routes (pipeline/web/hot.py)."""
    app, hot = api_app(parts)
    return HotRoutes(app, hot) if hot else app


def api_app(parts: Parts) -> tuple[FastAPI, dict[tuple[str, str], Handler]]:
    """Every route of the process's parts, and the hot ones among them by method and path."""
    settings = parts.settings
    hot: dict[tuple[str, str], Handler] = {}
    app = FastAPI(title="pipeline", version=settings.version, docs_url="/docs", redoc_url=None,
                  dependencies=[Depends(_compute_token_guard(settings))])
    errors.install(app)
    contract.install(app)
    app.add_middleware(DoubledPrefix)  # the MCP chart's base URL ends in /api/v1: /api/v1/api/v1/... (prefix.py)

    @app.get("/health", tags=["health"], summary="Liveness: no dependency calls", **op(Liveness))
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": settings.version})

    @app.get("/api/v1/health", tags=["health"], summary="Deep health: Kafka and this process's parts",
             **op(DeepHealth, extra={503: DeepHealth}))
    async def deep_health() -> JSONResponse:
        return await _deep_health(parts)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if parts.projection is not None:
        from pipeline.gateway.analysis import router as analysis_router
        from pipeline.gateway.anomalies import router as anomalies_router

        # Before `GET /api/v1/anomalies/{anomaly_id}`: a wrong method on /api/v1/anomalies/analyze is answered by
        # the first route whose path matches, and its 405 must allow POST (the analysis), not GET.
        app.include_router(anomalies_router(settings, parts.prometheus, _scorer(parts)))
        app.include_router(analysis_router(settings, parts.prometheus))
        if parts.kserve is not None:
            app.include_router(_models_router(parts))
    reports = None  # the Python engine's anomaly reports: the gateway's, handed non-webhook bodies by ingest
    if parts.projection is not None and parts.producer is not None:
        from pipeline.gateway.anomaly_reports import AnomalyReports

        reports = AnomalyReports(settings, parts.projection.projection, parts.projection.remediation,
                                 parts.producer)
    if parts.ingest is not None:
        from pipeline.ingest.routes import router as ingest_router

        webhooks, hot_webhooks = ingest_router(parts.ingest, anomaly_report=reports.accept if reports else None,
                                               report_contract=reports.contract if reports else None)
        app.include_router(webhooks)
        hot.update(hot_webhooks)
    if reports is not None:
        app.include_router(reports.router(post=parts.ingest is None))
    if parts.projection is not None and parts.producer is not None:
        from pipeline.gateway.incidents import router as incident_router

        remediation = parts.projection.remediation
        app.include_router(incident_router(settings, parts.projection.projection, parts.producer,
                                           remediation=remediation))
        from pipeline.gateway.timeline import router as timeline_router

        app.include_router(timeline_router(settings, parts.projection.projection, remediation))
        from pipeline.gateway.remediation import router as remediation_router

        app.include_router(remediation_router(
            settings, remediation, parts.producer, parts.started_monotonic, control=parts.projection.control,
            detector=parts.detector,
            # the remediate stage's consumer group (pipeline/bus/stage.py): its members execute approved actions
            workers=lambda: parts.probe.group_members(f"{settings.topic_prefix}remediate")))
        from pipeline.gateway.detection import router as detection_router

        app.include_router(detection_router(lambda: parts.detector))
    return app, hot


def _compute_token_guard(settings: Settings) -> Any:
    """With API_TOKEN set, the compute routes (POST, COMPUTE_ROUTES) need the token too, unless API_OPEN_ROUTES
    names them. A dependency of every route, so it runs after routing (the doubled prefix is already undone)
    and before the body is read; its 401 is the usual JSON error."""
    guarded = frozenset(COMPUTE_ROUTES) - frozenset(settings.api_open_routes)

    async def compute_token(request: Request) -> None:
        if request.method == "POST" and request.scope["path"] in guarded:
            require_token(request, settings.bearer_token)

    return compute_token


def _scorer(parts: Parts) -> Any:
    """The analysis route scores through the same path as the score stage: KServe, else the ML service."""
    from pipeline.adapters.scorer import ANOMALY_MODEL, KServeScorer, MLServiceScorer

    if parts.kserve is not None and ANOMALY_MODEL in parts.kserve.registry:
        return KServeScorer(parts.kserve)
    if parts.ml_service is not None:
        return MLServiceScorer(parts.ml_service)
    return None


def _models_router(parts: Parts) -> Any:
    from pipeline.adapters.features import FeatureCollector
    from pipeline.domain.features import FeatureVector, Scope
    from pipeline.gateway.model_routes import router as models_router

    collector = FeatureCollector(parts.prometheus)
    projection = parts.projection

    async def features(namespace: str | None) -> FeatureVector:
        return (await collector.collect(Scope(namespace=namespace), time.time())).vector

    findings = None
    if parts.prometheus is not None:  # the per-pod rules that type an ML recommendation
        from pipeline.adapters.findings import NamespaceFindings

        findings = NamespaceFindings(parts.prometheus).collect
    return models_router(
        parts.settings,
        parts.kserve.registry,
        parts.kserve,
        incidents_provider=(lambda: projection.projection.rows.values()) if projection is not None else None,
        features_provider=features,
        findings_provider=findings,
    )


async def _deep_health(parts: Parts) -> JSONResponse:
    kafka = await parts.probe.check()
    dependencies: dict[str, Any] = {"kafka": kafka.as_dict()}
    components: dict[str, Any] = {}
    status = "healthy" if kafka.status == "ok" else "unhealthy"
    stages = dependencies["kafka"].get("stages") or {}
    if stages:
        components["stages"] = stages
        if stages.get("status") == "stuck" and status == "healthy":
            status = "degraded"  # a partition held on one offset: its later records wait (STAGE_STUCK_AFTER_S)
    if parts.prometheus is not None:
        prometheus = await prometheus_status(parts.prometheus)
        dependencies["prometheus"] = prometheus.as_dict()
        if prometheus.status != "ok" and status == "healthy":
            status = "degraded"  # enrichment goes on with features marked missing
    if parts.ml_service is not None:
        ml = await parts.ml_service.health()
        dependencies["ml_service"] = {"name": "ml_service", "status": "ok" if ml.ok else "down",
                                      "message": ml.message, "circuit_breaker": ml.circuit_breaker}
        if not ml.ok and status == "healthy":
            status = "degraded"  # scoring falls back to rules
    if parts.kserve is not None and len(parts.kserve.registry):
        breakers = parts.kserve.snapshot()
        dependencies["kserve"] = {"name": "kserve", "models": breakers,
                                  "status": "ok" if all(b["state"] == "closed" for b in breakers.values()) else "degraded"}
        if dependencies["kserve"]["status"] != "ok" and status == "healthy":
            status = "degraded"
    if parts.projection is not None:
        ready = parts.projection.ready.is_set()
        components["projection"] = {"ready": ready, "incidents": len(parts.projection.projection)}
        if not ready and status == "healthy":
            status = "degraded"
    if parts.projection is not None:
        control = parts.projection.control
        components["remediation"] = {
            **control.view(),
            "remediators": {c.by or key: {**c.details, "announced_at": c.at.isoformat()}
                            for key, c in control.remediators.items()},
        }
    if parts.ingest is not None:
        components["ingest"] = {"in_flight": parts.ingest.in_flight}
    if parts.watch is not None:
        components["watch"] = parts.watch.status()  # a standby is healthy: it is waiting for the Lease
    body = {
        "status": status,
        "timestamp": iso_z(datetime.now(UTC)),
        "version": parts.settings.version,
        "uptime_seconds": int(time.monotonic() - parts.started_monotonic),
        "dependencies": dependencies,
        "components": components,
        "details": {"namespace": parts.settings.namespace, "topic_prefix": parts.settings.topic_prefix},
    }
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)
