"""How every ML call is made: one deadline (retries included), stamina retries with jitter on transient
failures only (the connection was never established, or 502/503/504), and the dependency's circuit breaker
(one per KServe model, one for the ML service), with the request metrics.

KServe's Python runtimes answer a wrong input with 500 `{"error": "<the library's message>"}` (their
InferenceError handler), e.g. scikit-learn's "X has 3 features, but StandardScaler is expecting 45 features as
input.": `CALLER_ERRORS` are the messages of input validation we recognise in such a body, a
PredictionRejected rather than the model's failure.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import stamina
from pydantic import BaseModel, ValidationError

from pipeline.adapters.breaker import CircuitBreaker, CircuitOpen
from pipeline.adapters.http import async_client
from pipeline.adapters.ml.errors import InvalidModelResponse, MLError, ModelUnavailable, PredictionRejected
from pipeline.adapters.transient import TransientStatus, raise_if_transient
from pipeline.config import Settings
from pipeline.observability import ML_REQUEST_SECONDS, ML_REQUESTS

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_SNIPPET = 300
PROBE_TIMEOUT_S = 5.0  # the engine's health-check client timeout

# Input-validation messages of the libraries KServe's runtimes wrap into a 500 {"error": ...}: the request was
# wrong, the model is fine. Anything else on a 5xx is the model's failure.
CALLER_ERRORS = re.compile(
    "|".join(
        (
            r"\bhas \d+ features?, but \w+ is expecting \d+ features?",  # scikit-learn, wrong width
            r"\bexpected 2d array, got",  # scikit-learn, wrong rank
            r"\binput (?:x )?contains (?:nan|infinity)",  # scikit-learn, bad values
            r"\bcould not convert string to float",  # numpy / scikit-learn
            r"\bcannot reshape array of size \d+ into shape",  # numpy, v2 tensor decoding
            r"\bfeature shape mismatch, expected: \d+, got \d+",  # XGBoost
            r"\bnumber of features in data \(\d+\) is not the same as it was in training data",  # LightGBM
            r"\bunexpected shape for input\b",  # Triton / v2 servers
        )
    ),
    re.IGNORECASE,
)


def caller_error(response: httpx.Response) -> str | None:
    """The message of a 500 that says the request was wrong (see CALLER_ERRORS), else None."""
    if response.status_code != 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    message = body.get("error", body.get("detail")) if isinstance(body, dict) else None
    if isinstance(message, str) and CALLER_ERRORS.search(message):
        return message
    return None


def snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "") if text else "(empty body)"


class Dependency:
    """One remote dependency: its breaker, deadline, retry policy and metrics."""

    def __init__(
        self,
        name: str,
        label: str,
        http: httpx.AsyncClient,
        timeout_s: float,
        attempts: int,
        breaker: CircuitBreaker,
    ) -> None:
        self.name, self.label, self.http = name, label, http
        self.timeout_s, self.attempts, self.breaker = timeout_s, attempts, breaker

    async def call(self, operation: str, url: str, body: Any, parse: Callable[[httpx.Response], T]) -> T:
        """POST `body`, then `parse` the answer; every ModelUnavailable (transport, timeout, 5xx, 404) counts
        against the breaker, a rejected input or an unreadable body does not."""
        started, outcome = time.perf_counter(), "ok"

        async def attempt() -> T:
            return parse(await self._post(url, body))

        try:
            return await self.breaker.call(attempt)
        except CircuitOpen as exc:
            outcome = "circuit_open"
            cause = str(exc).removeprefix(f"{self.label}: ")
            raise ModelUnavailable(self.name, cause, retry_after_s=exc.retry_after_s) from None
        except MLError as exc:
            outcome = exc.outcome
            raise
        finally:
            ML_REQUESTS.labels(self.label, operation, outcome).inc()
            ML_REQUEST_SECONDS.labels(self.label, operation).observe(time.perf_counter() - started)

    async def probe(self, url: str) -> tuple[bool, str]:
        """GET `url` once (no retries, no breaker accounting): (answered 200, why not)."""
        timeout = min(self.timeout_s, PROBE_TIMEOUT_S)
        try:
            response = await self.http.get(url, timeout=timeout)
        except httpx.TimeoutException:
            return False, f"Connection failed: timed out after {timeout:g}s"
        except httpx.TransportError as exc:
            return False, f"Connection failed: {type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return False, f"Health check returned status {response.status_code}"
        return True, ""

    async def _post(self, url: str, body: Any) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._post_with_retries(url, body)
        except (TimeoutError, httpx.TimeoutException):
            raise ModelUnavailable(self.name, f"timed out after {self.timeout_s:g}s") from None
        except TransientStatus as exc:
            raise ModelUnavailable(
                self.name, f"HTTP {exc.response.status_code}: {snippet(exc.response)}"
            ) from None
        except httpx.TransportError as exc:
            raise ModelUnavailable(
                self.name, f"{type(exc).__name__}: {str(exc) or 'connection failed'}"
            ) from None
        if response.status_code >= 500 and caller_error(response) is None:
            raise ModelUnavailable(self.name, f"HTTP {response.status_code}: {snippet(response)}")
        return response  # a 500 naming an input error goes on to `parse_response`: PredictionRejected, not the model's fault

    async def _post_with_retries(self, url: str, body: Any) -> httpx.Response:
        # Only failures where the request certainly did no work are retried; a read timeout is not (the
        # model is slow: asking again multiplies the wait), nor is any 4xx or a 500.
        async for attempt in stamina.retry_context(
            on=(httpx.ConnectError, httpx.ConnectTimeout, TransientStatus),
            attempts=self.attempts,
            timeout=self.timeout_s,
            wait_initial=0.05,
            wait_max=1.0,
            wait_jitter=0.05,
        ):
            with attempt:
                response = raise_if_transient(await self.http.post(url, json=body))
        return response


def http_client(settings: Settings, timeout_s: float, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """The client one dependency kind (KServe, the ML service) shares between its calls."""
    return async_client(
        settings,
        timeout=timeout_s,
        ca_file=settings.ml_ca_file,
        tls_verify=settings.ml_tls_verify,
        transport=transport,
        headers={"Accept": "application/json"},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=10),
    )


def parse_response(model: str, response: httpx.Response, shape: type[M]) -> M:
    """404 -> ModelUnavailable (nothing serves that path: a deployment or naming problem, not this input);
    other 4xx, and a 500 naming an input error -> PredictionRejected; a body that is not `shape` -> InvalidModelResponse naming the field."""
    if response.status_code == 404:
        cause = f"{response.request.url} answered 404 ({snippet(response)}): is the model deployed under that name?"
        raise ModelUnavailable(model, cause)
    if response.status_code >= 400:
        raise PredictionRejected(model, response.status_code, snippet(response))
    try:
        return shape.model_validate_json(response.content)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidModelResponse(model, f"{where}: {error['msg']}") from None
