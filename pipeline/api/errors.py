"""Every error is JSON with an `error` string (the notebook client reads it) and a stable `code`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.observability import get_logger

log = get_logger("pipeline.web")


class ApiError(Exception):
    """An error answered to the client as `{"status":"error","error":message,"code":code,...}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.headers, self.extra = field, headers, extra

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"status": "error", "error": self.message, "code": self.code}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "alerts", 0, "startsAt")` -> `alerts[0].startsAt`."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_error(errors: list[dict[str, Any]], status: int = 422) -> ApiError:
    details = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors[:50]]
    first = details[0] if details else {"field": "body", "message": "invalid"}
    return ApiError(
        status,
        "VALIDATION_FAILED",
        f"validation failed: {first['field']}: {first['message']}",
        field=first["field"],
        details=details,
    )


def from_pydantic(exc: ValidationError, status: int = 422) -> ApiError:
    return validation_error([dict(e) for e in exc.errors(include_url=False)], status)


def install(app: FastAPI) -> None:
    """JSON for our errors, FastAPI's validation errors, unknown routes, wrong methods and crashes."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # every method of the path: each method is a route of its own here
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request.scope))}
        return ApiError(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), str(exc.detail),
                        headers=headers).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return crashed(request, exc)


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """The methods of the path's routes (Starlette's 405 names only the first route's): of the templates that match
    it, the most concrete ones, as OpenAPI matches paths (`/api/v1/anomalies/analyze` is the analysis route, not
    `/api/v1/anomalies/{anomaly_id}`). FastAPI keeps an included router's routes as one entry;
    `iter_route_contexts` reaches each of them."""
    path = scope.get("path", "")
    by_params: dict[int, set[str]] = {}
    for route in iter_route_contexts(app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            params = len(getattr(route, "param_convertors", None) or ())
            by_params.setdefault(params, set()).update(getattr(route, "methods", None) or ())
    return sorted(by_params[min(by_params)]) if by_params else []


def crashed(request: Request, exc: Exception) -> JSONResponse:
    """The answer to an error no handler expected: logged, a JSON 500 that says nothing more."""
    log.error("unhandled error", path=request.url.path, error=repr(exc))
    return ApiError(500, "INTERNAL", "Internal server error").response()
