"""Hot routes (pipeline/web/hot.py), served before FastAPI's stack: they answer as the app would -- the handler's
response, an `ApiError` as its JSON, anything unexpected as the app's JSON 500 -- and every other request,
the hot path under another method or prefix included, reaches the app. In process, no server."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.api import errors
from pipeline.api.errors import ApiError
from pipeline.web.hot import HotRoutes


async def _hot(request: Request) -> Response:
    body = await request.json()
    if body.get("refuse"):
        raise ApiError(413, "LIMIT_EXCEEDED", "alerts: too many", field="alerts")
    if body.get("crash"):
        raise KeyError("boom")
    return JSONResponse({"served": "hot", "echo": body})


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.post("/api/v1/alerts")
    async def declared() -> dict[str, str]:
        return {"served": "app"}

    @app.get("/api/v1/alerts")
    async def listed() -> dict[str, str]:
        return {"served": "app"}

    return app


async def test_hot_routes_answer_as_the_app_would_and_leave_the_rest_to_it() -> None:
    app = HotRoutes(_app(), {("POST", "/api/v1/alerts"): _hot})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        ok = await client.post("/api/v1/alerts", json={"a": 1})
        refused = await client.post("/api/v1/alerts", json={"refuse": True})
        crashed = await client.post("/api/v1/alerts", json={"crash": True})
        other_method = await client.get("/api/v1/alerts")
        unknown = await client.post("/api/v1/nothing", json={})
    assert ok.status_code == 200 and ok.json() == {"served": "hot", "echo": {"a": 1}}
    assert refused.status_code == 413
    assert refused.json() == {"status": "error", "error": "alerts: too many", "code": "LIMIT_EXCEEDED",
                              "field": "alerts"}
    assert crashed.status_code == 500 and crashed.json()["code"] == "INTERNAL"
    assert "boom" not in crashed.text  # nothing of the error leaks to the client
    assert other_method.json() == {"served": "app"}
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
