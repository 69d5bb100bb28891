"""ML dependencies: KServe InferenceServices (discovered from the environment) and the legacy ML service.

KServe models are called with protocol v1 (`POST /v1/models/<m>:predict` `{"instances"}`, the engine's) or
v2, the Open Inference Protocol (`POST /v2/models/<m>/infer` with one FP64 tensor `[n, width]`), per
`KSERVE_PROTOCOL` or `KSERVE_<NAME>_PROTOCOL`; readiness is `GET /v1/models/<m>` or `/v2/models/<m>/ready`.

Every call has one deadline (retries included), is retried with jitter on transient failures only (the
connection was never established, or 502/503/504), and goes through its dependency's circuit breaker
(one per KServe model, one for the ML service). Errors, by what the caller can do next:

    MLError
    ├── ModelNotFound          the logical model is not registered: a configuration question
    ├── ModelUnavailable       transport error, timeout, 5xx, or circuit open: try again later
    ├── PredictionRejected     the dependency answered 4xx, or a 500 whose body says the input was wrong:
    │                          this input will not work, retrying cannot help
    └── InvalidModelResponse   a 2xx whose body is not JSON or has the wrong shape

Only ModelUnavailable counts against a breaker; a PredictionRejected is the caller's mistake and counts neither
way (one bad caller must not open the circuit for everyone). KServe's Python runtimes answer a wrong input with
500 `{"error": "<the library's message>"}` (their InferenceError handler), e.g. scikit-learn's "X has 3
features, but StandardScaler is expecting 45 features as input.": `CALLER_ERRORS` are the messages of input
validation we recognise in such a body. Under v2 the expected width is read from the model's metadata
(`GET /v2/models/<m>`, `inputs[0].shape`), and a request of another width is refused before sending.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast
from urllib.parse import urlsplit

import httpx
import stamina
from pydantic import (
    AliasChoices,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.adapters.breaker import BreakerState, CircuitBreaker, CircuitOpen
from pipeline.adapters.http import async_client
from pipeline.config import Settings
from pipeline.observability import ML_REQUEST_SECONDS, ML_REQUESTS

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Number = Annotated[float, Strict(), AllowInfNan(False)]

_TRANSIENT_STATUS = {502, 503, 504}
_CONFIG_PREFIXES = ("KSERVE_NAMESPACE", "KSERVE_TIMEOUT", "KSERVE_PREDICTOR_PORT")
_SNIPPET = 300
PROBE_TIMEOUT_S = 5.0  # the engine's health-check client timeout
METADATA_TTL_S = 300.0  # a v2 model's metadata (its input width) is read again after this
METADATA_RETRY_S = 30.0  # ... or after this when it could not be read


class MLError(Exception):
    """Base of every failure talking to an ML dependency."""

    outcome: ClassVar[str] = "error"


class ModelNotFound(MLError):
    """The logical model is not registered (no KSERVE_<NAME>_SERVICE or _URL)."""

    outcome = "not_found"

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"model not found: {model}")


class ModelUnavailable(MLError):
    """Not reachable, timing out, answering 5xx, or its circuit is open: the model exists, we can't use it."""

    outcome = "unavailable"

    def __init__(self, model: str, cause: str, retry_after_s: float | None = None) -> None:
        self.model, self.cause, self.retry_after_s = model, cause, retry_after_s
        super().__init__(f"model unavailable: {model}: {cause}")


class PredictionRejected(MLError):
    """The dependency refused this input (wrong feature count, bad values...): a 4xx, or a 500 whose body names
    an input error (`CALLER_ERRORS`). Not held against the model's circuit breaker."""

    outcome = "rejected"

    def __init__(self, model: str, status: int, detail: str) -> None:
        self.model, self.status, self.detail = model, status, detail
        super().__init__(f"model {model} rejected the request (HTTP {status}): {detail}")


class InvalidModelResponse(MLError):
    """A 2xx answer we cannot read: not JSON, or not the shape of any known variant."""

    outcome = "invalid_response"

    def __init__(self, model: str, detail: str) -> None:
        self.model, self.detail = model, detail
        super().__init__(f"model {model} answered an invalid response: {detail}")


# ------------------------------------------------------------------------------------------ registry
KServeProtocol = Literal["v1", "v2"]
PROTOCOLS: tuple[KServeProtocol, ...] = ("v1", "v2")


@dataclass(frozen=True, slots=True)
class ModelEndpoint:
    """One KServe model: its logical name (API), service, namespace, name in KServe paths, base URL, and
    the protocol it is called with."""

    name: str
    service: str
    namespace: str
    model: str
    url: str
    protocol: KServeProtocol = "v1"


class ModelRegistry:
    """The logical models this process may call, in name order."""

    def __init__(self, endpoints: Iterable[ModelEndpoint] = ()) -> None:
        self._by_name = {e.name: e for e in sorted(endpoints, key=lambda e: e.name)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> ModelRegistry:
        """The engine's discovery rules, with the predictor port honoured and a URL override.

        Every non-empty `KSERVE_<NAME>_SERVICE` (or `KSERVE_<NAME>_URL`) registers the logical model
        `<name>` lower-cased with `_` -> `-`; variables starting with KSERVE_NAMESPACE, KSERVE_TIMEOUT or
        KSERVE_PREDICTOR_PORT are configuration, not models. `KSERVE_<NAME>_MODEL` names the model in KServe
        paths (default: the logical name). The base URL is `http://<service>.<KSERVE_NAMESPACE>.svc.cluster.local
        :<KSERVE_PREDICTOR_PORT>` (a service containing a dot is used as the host as it is), unless
        `KSERVE_<NAME>_URL` gives it outright. `KSERVE_<NAME>_PROTOCOL` (v1 or v2) overrides `KSERVE_PROTOCOL`.
        """
        prefixes = set()
        for key, value in environ.items():
            if not key.startswith("KSERVE_") or key.startswith(_CONFIG_PREFIXES) or not value.strip():
                continue
            for suffix in ("_SERVICE", "_URL"):
                if key.endswith(suffix) and len(key) > len("KSERVE_") + len(suffix):
                    prefixes.add(key.removesuffix(suffix))
        return cls(_endpoint(prefix, environ, settings) for prefix in prefixes)

    def get(self, name: str) -> ModelEndpoint:
        try:
            return self._by_name[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[ModelEndpoint]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


def _endpoint(prefix: str, environ: Mapping[str, str], settings: Settings) -> ModelEndpoint:
    name = prefix.removeprefix("KSERVE_").lower().replace("_", "-")
    service = environ.get(f"{prefix}_SERVICE", "").strip()
    model = environ.get(f"{prefix}_MODEL", "").strip() or name
    url = environ.get(f"{prefix}_URL", "").strip().rstrip("/")
    protocol = environ.get(f"{prefix}_PROTOCOL", "").strip().lower() or settings.kserve_protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"{prefix}_PROTOCOL must be v1 or v2, got {protocol!r}")
    namespace = settings.kserve_namespace
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{prefix}_URL must be an http(s) URL, got {url!r}")
        service = service or parts.hostname
    else:
        host = service if "." in service or not namespace else f"{service}.{namespace}.svc.cluster.local"
        url = f"http://{host}:{settings.kserve_predictor_port}"
    return ModelEndpoint(
        name=name,
        service=service,
        namespace=namespace,
        model=model,
        url=url,
        protocol=cast(KServeProtocol, protocol),
    )


# ------------------------------------------------------------------------------------------ transport
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


class _Transient(Exception):
    """A 502/503/504: worth another attempt."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status_code}")


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "") if text else "(empty body)"


class _Dependency:
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
        except _Transient as exc:
            raise ModelUnavailable(
                self.name, f"HTTP {exc.response.status_code}: {_snippet(exc.response)}"
            ) from None
        except httpx.TransportError as exc:
            raise ModelUnavailable(
                self.name, f"{type(exc).__name__}: {str(exc) or 'connection failed'}"
            ) from None
        if response.status_code >= 500 and caller_error(response) is None:
            raise ModelUnavailable(self.name, f"HTTP {response.status_code}: {_snippet(response)}")
        return response  # a 500 naming an input error goes on to `_parse`: PredictionRejected, not the model's fault

    async def _post_with_retries(self, url: str, body: Any) -> httpx.Response:
        # Only failures where the request certainly did no work are retried; a read timeout is not (the
        # model is slow: asking again multiplies the wait), nor is any 4xx or a 500.
        async for attempt in stamina.retry_context(
            on=(httpx.ConnectError, httpx.ConnectTimeout, _Transient),
            attempts=self.attempts,
            timeout=self.timeout_s,
            wait_initial=0.05,
            wait_max=1.0,
            wait_jitter=0.05,
        ):
            with attempt:
                response = await self.http.post(url, json=body)
                if response.status_code in _TRANSIENT_STATUS:
                    raise _Transient(response)
        return response


def _http(timeout_s: float, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    return async_client(
        timeout=timeout_s,
        transport=transport,
        headers={"Accept": "application/json"},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=10),
    )


def _parse(model: str, response: httpx.Response, shape: type[M]) -> M:
    """404 -> ModelUnavailable (nothing serves that path: a deployment or naming problem, not this input);
    other 4xx, and a 500 naming an input error -> PredictionRejected; a body that is not `shape` -> InvalidModelResponse naming the field."""
    if response.status_code == 404:
        cause = f"{response.request.url} answered 404 ({_snippet(response)}): is the model deployed under that name?"
        raise ModelUnavailable(model, cause)
    if response.status_code >= 400:
        raise PredictionRejected(model, response.status_code, _snippet(response))
    try:
        return shape.model_validate_json(response.content)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidModelResponse(model, f"{where}: {error['msg']}") from None


# ------------------------------------------------------------------------------------------ KServe
@dataclass(frozen=True, slots=True)
class Prediction:
    """A KServe answer (v1 or v2): one prediction per instance (-1 anomaly, 1 normal for the anomaly-detector).

    Integral values are ints whatever the server sent (`-1.0` -> `-1`); other values stay floats.
    `scores`/`confidences` are the extras our reference service returns (v1 fields, v2 outputs), when present.
    """

    model: str
    predictions: list[int | float]
    model_version: str | None = None
    scores: list[float] | None = None
    confidences: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"predictions": self.predictions, "model_name": self.model}
        if self.model_version:
            body["model_version"] = self.model_version
        if self.scores is not None:
            body["scores"] = self.scores
        if self.confidences is not None:
            body["confidences"] = self.confidences
        return body


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """The `/api/v1/models/{model}/health` answer: `ready` iff the model would be called and answers."""

    model: str
    status: Literal["ready", "unavailable"]
    service: str
    namespace: str
    message: str = ""
    circuit_breaker: str = "closed"

    def as_dict(self) -> dict[str, Any]:
        body = {
            "model": self.model,
            "status": self.status,
            "service": self.service,
            "namespace": self.namespace,
        }
        if self.message:
            body["message"] = self.message
        body["circuit_breaker"] = self.circuit_breaker
        return body


class _V1Response(BaseModel):
    model_config = ConfigDict(extra="ignore")
    predictions: list[Number]
    model_version: str | None = None
    scores: list[Number] | None = None
    confidences: list[Number] | None = None

    @field_validator("model_version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


def _integral(value: float) -> int | float:
    return int(value) if value.is_integer() else value


class _V2Output(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class _V2Response(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model_version: str | None = None
    outputs: list[_V2Output]

    @field_validator("model_version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class _Numbers(BaseModel):
    values: list[Number]


def _flat(data: list[Any]) -> list[Any]:
    """A v2 tensor's data in row-major order, whether the server sent it flat or nested."""
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def _v2_prediction(model: str, body: _V2Response, rows: int) -> tuple[list[float], dict[str, list[float]]]:
    """The predictions (the output named `predictions`, or the only output, as KServe's `output-0`) and
    the `scores`/`confidences` outputs when present, each with one value per instance."""
    by_name = {o.name: o for o in body.outputs}
    if "predictions" in by_name:
        main = by_name["predictions"]
    elif len(body.outputs) == 1:
        main = body.outputs[0]
    else:
        names = ", ".join(by_name) or "none"
        raise InvalidModelResponse(model, f"outputs: no 'predictions' output among {names}")
    columns: dict[str, list[float]] = {}
    for name, output in (
        ("predictions", main),
        *((n, by_name[n]) for n in ("scores", "confidences") if n in by_name),
    ):
        try:
            values = _Numbers(values=_flat(output.data)).values
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in error["loc"][1:])
            raise InvalidModelResponse(
                model, f"outputs[{output.name}].data.{where}: {error['msg']}"
            ) from None
        if len(values) != rows:
            raise InvalidModelResponse(
                model, f"outputs[{output.name}]: {len(values)} values for {rows} instances"
            )
        columns[name] = values
    return columns.pop("predictions"), columns


class KServeClient:
    """Calls the registered KServe models (v1 or v2 each); one per process; `aclose()` when done."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self._widths: dict[str, tuple[int | None, float]] = {}  # model -> (v2 input width or unknown, until)
        self._http = _http(settings.kserve_timeout_s, transport)
        self._deps = {
            endpoint.name: _Dependency(
                endpoint.name,
                f"kserve/{endpoint.name}",
                self._http,
                settings.kserve_timeout_s,
                settings.ml_retry_attempts,
                CircuitBreaker(
                    f"kserve/{endpoint.name}",
                    settings.ml_circuit_breaker_threshold,
                    settings.ml_circuit_breaker_timeout_s,
                    clock,
                    failures=(ModelUnavailable,),
                    neutral=(PredictionRejected,),
                ),
            )
            for endpoint in registry
        }

    def breaker(self, model: str) -> CircuitBreaker:
        self.registry.get(model)
        return self._deps[model].breaker

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every model's breaker, for `/api/v1/health`."""
        return {name: dep.breaker.snapshot() for name, dep in self._deps.items()}

    async def predict(self, model: str, instances: Sequence[Sequence[float]]) -> Prediction:
        """v1: `POST {url}/v1/models/{kserve model}:predict` with `{"instances": [[...], ...]}`; v2:
        `POST {url}/v2/models/{kserve model}/infer` with one FP64 tensor of shape [n, width].

        ValueError (nothing sent) for values that are not finite, and under v2 for rows of different lengths;
        PredictionRejected (nothing sent) under v2 for rows of another width than the model's metadata declares.
        """
        endpoint = self.registry.get(model)
        rows = [[float(v) for v in row] for row in instances]
        if not all(math.isfinite(v) for row in rows for v in row):
            raise ValueError("instances must be finite numbers")
        if endpoint.protocol == "v2":
            return await self._infer(endpoint, rows)

        def parse(response: httpx.Response) -> Prediction:
            body = _parse(model, response, _V1Response)
            for name in ("predictions", "scores", "confidences"):
                values = getattr(body, name)
                if values is not None and len(values) != len(rows):
                    raise InvalidModelResponse(
                        model, f"{name}: {len(values)} values for {len(rows)} instances"
                    )
            return Prediction(
                model=model,
                predictions=[_integral(v) for v in body.predictions],
                model_version=body.model_version,
                scores=body.scores,
                confidences=body.confidences,
            )

        url = f"{endpoint.url}/v1/models/{endpoint.model}:predict"
        return await self._deps[model].call("predict", url, {"instances": rows}, parse)

    async def _infer(self, endpoint: ModelEndpoint, rows: list[list[float]]) -> Prediction:
        width = len(rows[0]) if rows else 0
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(
                    f"a v2 tensor needs rows of one length: instances[{i}] has {len(row)} values, "
                    f"instances[0] {width}"
                )
        expected = await self._expected_width(endpoint)
        if expected is not None and rows and width != expected:
            # What the model would answer (400 from a v2 server, 500 from KServe's sklearn runtime), without
            # the round trip; like any rejection, not held against its breaker.
            name = endpoint.name
            detail = f"refused before sending: instances[0] has {width} values, {name}'s v2 metadata declares {expected}"
            raise PredictionRejected(name, 400, detail)
        tensor = {
            "name": "input-0",
            "shape": [len(rows), width],
            "datatype": "FP64",
            "data": [v for r in rows for v in r],
        }
        model = endpoint.name

        def parse(response: httpx.Response) -> Prediction:
            body = _parse(model, response, _V2Response)
            predictions, extras = _v2_prediction(model, body, len(rows))
            return Prediction(
                model=model,
                predictions=[_integral(v) for v in predictions],
                model_version=body.model_version,
                scores=extras.get("scores"),
                confidences=extras.get("confidences"),
            )

        url = f"{endpoint.url}/v2/models/{endpoint.model}/infer"
        return await self._deps[model].call("predict", url, {"inputs": [tensor]}, parse)

    async def _expected_width(self, endpoint: ModelEndpoint) -> int | None:
        """The input width a v2 model declares (`GET /v2/models/<m>`: `inputs[0].shape` [-1, width]), cached;
        None when it declares none or cannot be asked now (then the model itself judges the request)."""
        now = self._clock()
        cached = self._widths.get(endpoint.name)
        if cached is not None and now < cached[1]:
            return cached[0]
        dep = self._deps[endpoint.name]
        if dep.breaker.state is not BreakerState.CLOSED:
            return cached[0] if cached is not None else None  # do not knock on a failing model
        width, until = None, now + METADATA_RETRY_S
        try:
            response = await dep.http.get(
                f"{endpoint.url}/v2/models/{endpoint.model}", timeout=min(dep.timeout_s, PROBE_TIMEOUT_S)
            )
            if response.status_code < 500:
                until = now + METADATA_TTL_S  # an answer, with or without a width: ask again later
            if response.status_code == 200:
                shape = response.json()["inputs"][0]["shape"]
                if len(shape) == 2 and type(shape[1]) is int and shape[1] > 0:
                    width = shape[1]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            pass  # unreadable metadata: the model judges each request itself
        self._widths[endpoint.name] = (width, until)
        return width

    async def model_health(self, model: str) -> ModelHealth:
        """`GET {url}/v1/models/{kserve model}` (v2: `/v2/models/{kserve model}/ready`); an open circuit is
        `unavailable` without asking."""
        endpoint = self.registry.get(model)
        dep = self._deps[model]
        state = dep.breaker.state.label
        health = ModelHealth(
            model, "unavailable", endpoint.service, endpoint.namespace, circuit_breaker=state
        )
        if state == "open":
            message = f"circuit breaker open; next trial in {dep.breaker.retry_after_s():.1f}s"
            return replace(health, message=message)
        path = (
            f"/v2/models/{endpoint.model}/ready"
            if endpoint.protocol == "v2"
            else f"/v1/models/{endpoint.model}"
        )
        ok, message = await dep.probe(endpoint.url + path)
        return replace(health, status="ready" if ok else "unavailable", message=message)

    async def aclose(self) -> None:
        await self._http.aclose()


# ------------------------------------------------------------------------------------------ ML service
def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One metric value sent to the ML service (real values with names and timestamps)."""

    name: str
    value: float
    timestamp: datetime
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        # Both field names: the engine's structs say `name`, the engine's API contract `metric_name`.
        body: dict[str, Any] = {
            "name": self.name,
            "metric_name": self.name,
            "value": self.value,
            "timestamp": _iso(self.timestamp),
        }
        if self.labels:
            body["labels"] = dict(self.labels)
        return body


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _summary_into(data: Any, mapping: Mapping[str, str], listed: str) -> Any:
    """Flatten the Go variant's `summary` object into top-level fields; a JSON null list is empty."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if listed in data and data[listed] is None:
        data[listed] = []
    summary = data.get("summary")
    if isinstance(summary, dict):
        for source, target in mapping.items():
            if target not in data and source in summary:
                data[target] = summary[source]
    return data


class DetectedAnomaly(_Lenient):
    """An anomaly item of either variant: the engine structs' (value/expected/deviation/reason) or the
    contract's (score/is_anomaly)."""

    metric_name: str = Field(validation_alias=AliasChoices("metric_name", "name", "metric"))
    timestamp: str | None = None
    severity: str | None = None
    confidence: float | None = None
    score: float | None = None
    is_anomaly: bool = True
    value: float | None = None
    expected: float | None = None
    deviation: float | None = None
    reason: str | None = None


class AnomalyReport(_Lenient):
    """`POST /api/v1/anomaly/detect`: `{anomalies, summary{total,anomalies_found,high_severity,confidence}}`
    or `{anomalies, overall_score, confidence}`."""

    anomalies: list[DetectedAnomaly]
    confidence: float | None = None
    overall_score: float | None = None
    total: int | None = None
    high_severity: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        return _summary_into(
            data,
            {"confidence": "confidence", "total": "total", "high_severity": "high_severity"},
            "anomalies",
        )

    @property
    def found(self) -> list[DetectedAnomaly]:
        return [a for a in self.anomalies if a.is_anomaly]


class PredictedValue(_Lenient):
    """A prediction of either variant: a metric forecast (metric_name, predicted_value, trend) or a
    predicted issue (issue_type, probability, expected_time, recommended_actions)."""

    metric_name: str | None = None
    predicted_value: float | None = None
    issue_type: str | None = None
    probability: float | None = None
    confidence: float | None = None
    timestamp: str | None = None
    expected_time: str | None = None
    trend: str | None = None
    severity: str | None = Field(None, validation_alias=AliasChoices("severity", "risk"))
    recommended_actions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_something(self) -> PredictedValue:
        if self.metric_name is None and self.issue_type is None:
            raise ValueError("a prediction needs metric_name or issue_type")
        return self


class ForecastReport(_Lenient):
    """`POST /api/v1/prediction/predict`: `{predictions, summary{time_range,metrics_count,overall_confidence}}`
    or `{predictions, confidence}`."""

    predictions: list[PredictedValue]
    confidence: float | None = None
    time_range: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        return _summary_into(
            data, {"overall_confidence": "confidence", "time_range": "time_range"}, "predictions"
        )


class DetectedPattern(_Lenient):
    """A pattern of either variant: `type/description/metrics/start_time/end_time` or
    `pattern_type/frequency/affected_resources/root_cause_hints`."""

    type: str = Field(validation_alias=AliasChoices("type", "pattern_type"))
    description: str | None = None
    confidence: float | None = None
    metrics: list[str] = Field(default_factory=list)
    affected_resources: list[str] = Field(default_factory=list)
    frequency: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    root_cause_hints: list[str] = Field(default_factory=list)


class PatternReport(_Lenient):
    """`POST /api/v1/pattern/analyze`: `{patterns, insights, summary{patterns_found,confidence}}` or `{patterns}`."""

    patterns: list[DetectedPattern]
    insights: list[str] = Field(default_factory=list)
    confidence: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        return _summary_into(data, {"confidence": "confidence"}, "patterns")


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """`GET {ML_SERVICE_URL}/health`: ok iff it answered 200 (an open circuit is not ok, without asking)."""

    ok: bool
    message: str
    circuit_breaker: str


class MLServiceClient:
    """The legacy Python ML service (`ML_SERVICE_URL`); accepts both response variants of each route."""

    NAME = "ml-service"

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not settings.ml_service_url:
            raise ValueError("ML_SERVICE_URL is not set")
        self.url = settings.ml_service_url.rstrip("/")
        self._http = _http(settings.ml_timeout_s, transport)
        self.breaker = CircuitBreaker(
            self.NAME,
            settings.ml_circuit_breaker_threshold,
            settings.ml_circuit_breaker_timeout_s,
            clock,
            failures=(ModelUnavailable,),
            neutral=(PredictionRejected,),
        )
        self._dep = _Dependency(
            self.NAME, self.NAME, self._http, settings.ml_timeout_s, settings.ml_retry_attempts, self.breaker
        )

    async def detect(
        self, metrics: Sequence[MetricSample], threshold: float | None = None, model: str | None = None
    ) -> AnomalyReport:
        body: dict[str, Any] = {"metrics": [m.as_json() for m in metrics]}
        if threshold is not None:
            body["threshold"] = threshold
        if model is not None:
            body["model"] = model
        return await self._post("detect", "/api/v1/anomaly/detect", body, AnomalyReport)

    async def predict(
        self,
        metrics: Sequence[MetricSample],
        predict_ahead: str = "1h",
        *,
        namespace: str | None = None,
        resource: str | None = None,
    ) -> ForecastReport:
        latest: dict[str, MetricSample] = {}
        for sample in metrics:
            if sample.name not in latest or sample.timestamp >= latest[sample.name].timestamp:
                latest[sample.name] = sample
        body: dict[str, Any] = {
            "historical_metrics": [m.as_json() for m in metrics],
            "predict_ahead": predict_ahead,
            "prediction_horizon": predict_ahead,
            "include_confidence": True,
            "current_state": {name: s.value for name, s in latest.items()},
        }
        body.update({k: v for k, v in (("namespace", namespace), ("resource", resource)) if v})
        return await self._post("predict", "/api/v1/prediction/predict", body, ForecastReport)

    async def analyze_patterns(
        self,
        metrics: Sequence[MetricSample],
        start: datetime,
        end: datetime,
        *,
        analysis_type: str | None = None,
        namespace: str | None = None,
        resource_types: Sequence[str] | None = None,
    ) -> PatternReport:
        body: dict[str, Any] = {
            "metrics": [m.as_json() for m in metrics],
            "time_range": {"start": _iso(start), "end": _iso(end)},
        }
        optional = (
            ("analysis_type", analysis_type),
            ("namespace", namespace),
            ("resource_types", resource_types),
        )
        body.update({k: list(v) if k == "resource_types" else v for k, v in optional if v})
        return await self._post("patterns", "/api/v1/pattern/analyze", body, PatternReport)

    async def health(self) -> ServiceHealth:
        state = self.breaker.state.label
        if state == "open":
            message = f"circuit breaker open; next trial in {self.breaker.retry_after_s():.1f}s"
            return ServiceHealth(False, message, state)
        ok, message = await self._dep.probe(f"{self.url}/health")
        return ServiceHealth(ok, message or "ok", state)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _post(self, operation: str, path: str, body: dict[str, Any], shape: type[M]) -> Awaitable[M]:
        def parse(response: httpx.Response) -> M:
            return _parse(self.NAME, response, shape)

        return self._dep.call(operation, f"{self.url}{path}", body, parse)
