"""Hot routes: a few routes served before the framework's middleware, routing and request handling.

FastAPI's stack (its middleware, the router, the route's request handler and dependency resolution) cost the
webhook route ~150 µs of CPU per request, a third of the whole request with the broker's acknowledgement
(`pipeline bench ingest`). A hot route is answered by its handler directly, with the same JSON errors
(`ApiError`'s answer, and a JSON 500 for anything unexpected); it stays declared in the FastAPI app, so the
OpenAPI document lists it. Only exact paths are hot: anything else (the doubled `/api/v1/api/v1/` prefix
included) goes through the app as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.errors import ApiError, crashed

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """ASGI: `routes[(method, path)]` answers those requests; `app` the rest."""

    def __init__(self, app: Any, routes: dict[tuple[str, str], Handler]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except Exception as exc:  # noqa: BLE001 - as the app's own handler: logged, a JSON 500
            response = crashed(request, exc)
        await response(scope, receive, send)
