"""`POST /api/v1/detect` while the model is down, called the way the platform's notebooks call it.

The client is set up exactly like the notebook client's session (openshift-aiops-platform
notebooks/utils/coordination_engine_client.py): `requests.Session` with an `HTTPAdapter` whose urllib3
`Retry(total=3, backoff_factor=0.5, status_forcelist=[429, 500, 502, 503, 504], allowed_methods=["GET",
"POST"])`, timeout 30 s. The gateway's model routes run under uvicorn on a loopback port in front of the
project's reference model service, which answers once and is then stopped (its port closed), as when its
pod goes away. The breaker runs on a test clock: it stays open until the test moves time.

What the notebook user gets: a call ends after urllib3's own backoff (0 + 1 + 2 s over 4 attempts), as it
did with the Go engine, never after sleeping on a `Retry-After` (the breaker's remaining open time, up to
30 s per retry, which made each call block 30-60 s). `ObservedRetry` records each sleep the client takes
and what decided it, without changing it; the gateway's middleware counts the requests it received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import requests
from fastapi import FastAPI, Request, Response
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline.adapters.ml import KServeClient, ModelEndpoint, ModelRegistry
from pipeline.api import errors
from pipeline.config import Settings
from pipeline.gateway.model_routes import router
from pipeline.ml.api import create_app
from pipeline.ml.model import train_or_load
from tests.support import Clock
from tests.unit.ml_fakes import MODEL, Served, ml_settings

pytestmark = pytest.mark.timeout(300)


class ObservedRetry(Retry):
    """urllib3's Retry, unchanged, noting each sleep: ("retry-after", s) when a header decided it, else
    ("backoff", s). Retry.new() copies the class, so every retry of one call notes into `sleeps`."""

    sleeps: ClassVar[list[tuple[str, float]]] = []

    def sleep(self, response: Any = None) -> None:
        after = self.get_retry_after(response) if response is not None else None
        self.sleeps.append(("retry-after", after) if after else ("backoff", self.get_backoff_time()))
        super().sleep(response)


def notebook_session() -> requests.Session:
    """The notebook client's session, with its retry policy observed."""
    session = requests.Session()
    retry = ObservedRetry(
        total=3,
        backoff_factor=0.5,
        status_forcelist=[429, 500, 502, 503, 504],
        allowed_methods=["GET", "POST"],
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass
class Received:
    """What the gateway answered on /api/v1/detect: (status, Retry-After header or None) per request."""

    answers: list[tuple[int, str | None]] = field(default_factory=list)


@dataclass
class Stack:
    gateway: Served
    model: Served
    received: Received
    clock: Clock
    instances: list[list[float]]

    def detect(self) -> tuple[requests.Response | None, Exception | None]:
        """One notebook `detect_anomaly` call (blocking: run it in a thread)."""
        ObservedRetry.sleeps.clear()
        try:
            response = notebook_session().post(
                f"{self.gateway.url}/api/v1/detect",
                json={"model": MODEL, "instances": self.instances},
                timeout=30,
            )
        except requests.exceptions.RequestException as exc:
            return None, exc
        return response, None


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    model = await asyncio.to_thread(train_or_load)
    served_model = await Served(create_app(model)).start()
    registry = ModelRegistry([ModelEndpoint(MODEL, f"{MODEL}-predictor", "models", MODEL, served_model.url)])
    clock = Clock()
    kserve = KServeClient(ml_settings(), registry, clock=clock)
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), registry, kserve))
    received = Received()

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path == "/api/v1/detect":
            received.answers.append((response.status_code, response.headers.get("retry-after")))
        return response

    gateway = await Served(app).start()
    yield Stack(gateway, served_model, received, clock, [[float(v) for v in model.medians]])
    await gateway.stop()
    await served_model.stop()
    await kserve.aclose()


async def test_a_notebook_call_fails_after_urllib3s_backoff_not_the_breakers_open_time(stack: Stack) -> None:
    response, error = await asyncio.to_thread(stack.detect)
    assert error is None and response is not None and response.status_code == 200
    assert response.json()["predictions"] == [1] and stack.received.answers == [(200, None)]

    await stack.model.stop()  # the model's pod goes away
    for call in ("the breaker still closed: 3 failures open it", "the breaker open: all fail fast"):
        stack.received.answers.clear()
        response, error = await asyncio.to_thread(stack.detect)
        # urllib3 gives up after total=3 retries; the notebook client turns this into CoordinationEngineError.
        assert response is None and isinstance(error, requests.exceptions.RetryError), call
        assert "too many 503 error responses" in str(error)
        assert stack.received.answers == [(503, None)] * 4, call  # 1 + 3 retries, none with Retry-After
        assert ObservedRetry.sleeps == [("backoff", 0.0), ("backoff", 1.0), ("backoff", 2.0)], call

    # What the notebook would read if it looked at one answer: the reason, and when the next trial is.
    with requests.Session() as plain:
        answer = await asyncio.to_thread(
            plain.post,
            f"{stack.gateway.url}/api/v1/detect",
            json={"model": MODEL, "instances": stack.instances},
        )
    assert answer.status_code == 503 and "retry-after" not in answer.headers
    body = answer.json()
    assert body["error"].startswith("model unavailable: anomaly-detector: circuit breaker open")
    assert body["retry_after_s"] == 30.0 and body["success"] is False

    await stack.model.start()  # the model is back on its port; after the open period one trial closes it
    stack.clock.advance(30)
    stack.received.answers.clear()
    response, error = await asyncio.to_thread(stack.detect)
    assert error is None and response is not None and response.json()["predictions"] == [1]
    assert stack.received.answers == [(200, None)] and ObservedRetry.sleeps == []
