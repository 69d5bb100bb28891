"""KServe InferenceServices: protocol v1 (`POST /v1/models/<m>:predict` `{"instances"}`, the engine's) or v2,
the Open Inference Protocol (`POST /v2/models/<m>/infer` with one FP64 tensor `[n, width]`), per
`KSERVE_PROTOCOL` or `KSERVE_<NAME>_PROTOCOL`; readiness is `GET /v1/models/<m>` or `/v2/models/<m>/ready`.

Under v2 the expected width is read from the model's metadata (`GET /v2/models/<m>`, `inputs[0].shape`), and
a request of another width is refused before sending.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import httpx
from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict, ValidationError, field_validator

from pipeline.adapters.breaker import BreakerState, CircuitBreaker
from pipeline.adapters.ml.errors import InvalidModelResponse, ModelUnavailable, PredictionRejected
from pipeline.adapters.ml.registry import ModelEndpoint, ModelRegistry
from pipeline.adapters.ml.transport import PROBE_TIMEOUT_S, Dependency, http_client, parse_response
from pipeline.config import Settings

Number = Annotated[float, Strict(), AllowInfNan(False)]
METADATA_TTL_S = 300.0  # a v2 model's metadata (its input width) is read again after this
METADATA_RETRY_S = 30.0  # ... or after this when it could not be read

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
        self._http = http_client(settings, settings.kserve_timeout_s, transport)
        self._deps = {
            endpoint.name: Dependency(
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
            body = parse_response(model, response, _V1Response)
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
            body = parse_response(model, response, _V2Response)
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
