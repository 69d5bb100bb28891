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
from typing import Any

from fastapi import APIRouter

from pipeline.adapters.detection import Detector, Forbidden, NotFound
from pipeline.api.errors import ApiError
from pipeline.domain.detection import to_api
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
        async def detect(namespace: str, name: str) -> dict[str, Any]:
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
            return {"success": True, "data": to_api(info), "message": f"{kind} method detected successfully"}

        api.add_api_route(
            f"/api/v1/detect/{path_kind}/{{namespace}}/{{name}}", detect, methods=["GET"],
            summary=f"How a {kind} is deployed: argocd, helm, operator or manual",
            name=f"detect_{path_kind}",
        )

    for path_kind, kind in ROUTE_KINDS.items():
        add_detect_route(path_kind, kind)

    @api.post("/api/v1/detect/cache/clear", summary="Forget every cached detection")
    async def clear_cache() -> dict[str, Any]:
        (await detector()).clear()
        return {"success": True, "message": "Cache cleared successfully"}

    @api.get("/api/v1/detect/cache/stats", summary="Entries in the detection cache")
    async def cache_stats() -> dict[str, Any]:
        return {"success": True, "data": (await detector()).stats()}

    return api
