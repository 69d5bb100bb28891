"""An app served before it is built (pipeline/web/server.py `Deferred`: the embedded reference ML service, whose
model loads once `pipeline run` is ready): a request that comes first starts the build and waits for it, later
ones are answered by the built app, and a build that fails gives every request a JSON 503 saying why. In
process (httpx's ASGI transport), no server."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from pipeline.web.server import Deferred


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, list[str]]:
        return {"models": ["anomaly-detector"]}

    return app


async def test_a_request_before_the_build_waits_for_it_and_builds_once() -> None:
    builds = 0
    release = asyncio.Event()

    async def build() -> FastAPI:
        nonlocal builds
        builds += 1
        await release.wait()
        return _app()

    deferred = Deferred(build, "reference ML model")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=deferred), base_url="http://ml") as client:
        first = asyncio.create_task(client.get("/v1/models"))
        second = asyncio.create_task(client.get("/v1/models"))
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()  # waiting for the model, not refused
        release.set()
        answers = [await first, await second, await client.get("/v1/models")]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert answers[0].json() == {"models": ["anomaly-detector"]}
    assert builds == 1


async def test_a_failed_build_is_a_json_503_naming_why() -> None:
    async def build() -> FastAPI:
        raise FileNotFoundError("no cached model in /cache/models")

    deferred = Deferred(build, "reference ML model")
    deferred.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=deferred), base_url="http://ml") as client:
        answer = await client.post("/v1/models/anomaly-detector:predict", json={"instances": [[0.0]]})
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == "UNAVAILABLE" and "reference ML model unavailable" in body["error"]
    assert "no cached model" in body["error"]
