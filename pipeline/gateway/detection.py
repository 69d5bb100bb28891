"""The engine's deployment-method routes (R9–R13) and ADR-002's Pod route, with the engine's shapes.

* `GET /api/v1/detect/{deployment|statefulset|daemonset|pod}/{namespace}/{name}` →
  `{"success":true,"data":DeploymentInfo,"message":"<Kind> method detected successfully"}`;
* `POST /api/v1/detect/cache/clear` → `{"success":true,"message":"Cache cleared successfully"}`;
* `GET /api/v1/detect/cache/stats` → `{"success":true,"data":{total_entries, valid_entries,
  expired_entries, ttl_seconds}}`.

Errors keep the engine's `{"success":false,"error":...}` and carry the project's `code` (and `status`):
400 `INVALID_REQUEST` (with `field`) for a namespace or name that is not a Kubernetes name, 404 `NOT_FOUND`
(the API server's message), 403 `FORBIDDEN` (its reason: which permission is missing), 503
`KUBE_NOT_CONFIGURED` when no cluster is configured, 500 `INTERNAL` (`internal server error`) otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from pipeline.adapters.detection import Detector, Forbidden, NotFound
from pipeline.api.contract import Body, dns_label, dns_subdomain, op
from pipeline.api.errors import ApiError
from pipeline.domain.detection import DeploymentInfo, to_api
from pipeline.domain.names import is_dns_label, is_dns_subdomain
from pipeline.gateway.dependencies import details
from pipeline.observability import get_logger

log = get_logger("pipeline.gateway.detection")

# `detector_provider()` returns the process's Detector (the cache lives in it), None when no cluster is
# configured, or raises RuntimeError saying why there is none; it may be a coroutine function.
DetectorProvider = Callable[[], Detector | None | Awaitable[Detector | None]]

NOT_CONFIGURED = ("no Kubernetes cluster is configured: set KUBECONFIG (and KUBE_CONTEXT) or run in a pod "
                  "with a service account")
ROUTE_KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet", "pod": "Pod"}


# ------------------------------------------------------------------------------------------ the contract
class Detection(Body):
    """How the workload is deployed, so a remediation goes through the tool that owns it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "success": True, "message": "Deployment method detected successfully",
        "data": {"method": "argocd", "confidence": 0.95, "source": "argocd-application:shop",
                 "details": {"argocd_app": "shop", "app_name": "shop"},
                 "detected_at": "2026-12-06T17:53:18.52Z", "namespace": "shop", "resource_name": "cart",
                 "resource_kind": "Deployment",
                 "workload": {"api_version": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "cart"},
                 "owner": None, "application": {"name": "shop", "namespace": "argocd"}}}]})
    success: Literal[True]
    data: DeploymentInfo
    message: str = Field(description="`<Kind> method detected successfully`")


class CacheCleared(Body):
    """Every cached detection is forgotten: the next one asks the cluster again."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"success": True, "message": "Cache cleared successfully"}]})
    success: Literal[True]
    message: str


class CacheEntries(Body):
    total_entries: int
    valid_entries: int
    expired_entries: int = Field(description="kept until they are looked up or cleared")
    ttl_seconds: float = Field(description="how long a detection is kept (300)")


class CacheStats(Body):
    """The detection cache's entries."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "success": True, "data": {"total_entries": 3, "valid_entries": 2, "expired_entries": 1,
                                  "ttl_seconds": 300}}]})
    success: Literal[True]
    data: CacheEntries


# Errors keep the engine's `success: false` beside `error`.
NO_CLUSTER = {503: "No Kubernetes cluster is configured (`KUBE_NOT_CONFIGURED`)"}
DETECTION_ERRORS = {
    400: "The namespace or the name is not a Kubernetes name (`INVALID_REQUEST`); `field` names it",
    403: "The API server refused the gateway's service account (`FORBIDDEN`): its reason names the permission",
    404: "No such object (`NOT_FOUND`, the API server's message)",
    500: "Reading the cluster failed otherwise (`INTERNAL`, the engine's answer; the cause in `details`)",
    **NO_CLUSTER,
}
NAMESPACE = Path(description="the workload's namespace", examples=["shop"], json_schema_extra=dns_label())
NAME = Path(description="the workload's name", examples=["cart"], json_schema_extra=dns_subdomain())


def _error(status: int, code: str, message: str, **extra: Any) -> ApiError:
    return ApiError(status, code, message, success=False, **extra)


def _validate(namespace: str, name: str) -> None:
    if not is_dns_label(namespace):
        raise _error(400, "INVALID_REQUEST", f"invalid namespace {namespace!r}: must be a DNS-1123 label "
                     "(lower case letters, digits and '-', at most 63 characters)", field="namespace")
    if not is_dns_subdomain(name):
        raise _error(400, "INVALID_REQUEST", f"invalid name {name!r}: must be a DNS-1123 subdomain "
                     "(lower case letters, digits, '-' and '.', at most 253 characters)", field="name")


def router(detector_provider: DetectorProvider) -> APIRouter:
    api = APIRouter(tags=["detection"])

    async def detector() -> Detector:
        try:
            found = detector_provider()
            if inspect.isawaitable(found):
                found = await found
        except RuntimeError as exc:
            raise _error(503, "KUBE_NOT_CONFIGURED", f"{NOT_CONFIGURED} ({exc})") from None
        if found is None:
            raise _error(503, "KUBE_NOT_CONFIGURED", NOT_CONFIGURED)
        return found

    def add_detect_route(path_kind: str, kind: str) -> None:
        async def detect(namespace: Annotated[str, NAMESPACE], name: Annotated[str, NAME]) -> JSONResponse:
            _validate(namespace, name)
            det = await detector()
            try:
                info = await det.detect(namespace, kind, name)
            except NotFound as exc:
                raise _error(404, "NOT_FOUND", exc.message) from None
            except Forbidden as exc:
                raise _error(403, "FORBIDDEN", exc.message) from None
            except Exception as exc:  # noqa: BLE001 - the engine's 500, with the cause in details and the log
                log.error("deployment-method detection failed", kind=kind, namespace=namespace, name=name,
                          error=repr(exc))
                raise _error(500, "INTERNAL", "internal server error",
                             details=details(kind, f"{type(exc).__name__}: {exc}"[:500])) from None
            return JSONResponse(
                {"success": True, "data": to_api(info), "message": f"{kind} method detected successfully"})

        api.add_api_route(
            f"/api/v1/detect/{path_kind}/{{namespace}}/{{name}}", detect, methods=["GET"],
            summary=f"How a {kind} is deployed: argocd, helm, operator or manual",
            name=f"detect_{path_kind}", **op(Detection, errors=DETECTION_ERRORS),
        )

    for path_kind, kind in ROUTE_KINDS.items():
        add_detect_route(path_kind, kind)

    @api.post("/api/v1/detect/cache/clear", summary="Forget every cached detection",
              **op(CacheCleared, errors=NO_CLUSTER))
    async def clear_cache() -> JSONResponse:
        (await detector()).clear()
        return JSONResponse({"success": True, "message": "Cache cleared successfully"})

    @api.get("/api/v1/detect/cache/stats", summary="Entries in the detection cache",
             **op(CacheStats, errors=NO_CLUSTER))
    async def cache_stats() -> JSONResponse:
        return JSONResponse({"success": True, "data": (await detector()).stats()})

    return api
