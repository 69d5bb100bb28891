"""The Open Inference Protocol (KServe v2) of the reference service, pure: request tensors to rows, answers
to output tensors, and the model's metadata. Errors are ``V2Error``, answered as ``{"error": message}``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.domain.features import FEATURE_NAMES
from pipeline.ml.model import InvalidVector, Prediction, ReferenceModel, as_vector

MAX_INSTANCES = 10_000
SERVED_ALIASES = ("model",)  # a KServe model server's default model name, which the MCP server asks for
V2_DATATYPES = ("FP32", "FP64")
V2_INPUT = "input-0"
V2_OUTPUTS = {"predictions": "INT64", "scores": "FP64", "confidences": "FP64"}


class V2Error(Exception):
    """An Open Inference Protocol error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class V2Request:
    rows: list[list[float | None]]
    outputs: tuple[str, ...]  # the outputs to answer, in the protocol's order of the request
    id: str | None


def v2_metadata(model: ReferenceModel) -> dict[str, Any]:
    width = len(FEATURE_NAMES)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [{"name": V2_INPUT, "datatype": "FP64", "shape": [-1, width]}],
        "outputs": [{"name": name, "datatype": kind, "shape": [-1]} for name, kind in V2_OUTPUTS.items()],
    }


def v2_request(body: Any) -> V2Request:
    """The rows of an inference request: one FP32/FP64 tensor of shape [n, 45], data flat or nested."""
    if not isinstance(body, dict):
        raise V2Error(400, "the request body must be a JSON object with 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = f"{len(inputs)} tensors" if isinstance(inputs, list) else repr(inputs)
        raise V2Error(
            400, f"'inputs' must hold exactly one tensor of shape [n, {len(FEATURE_NAMES)}], got {got}"
        )
    rows = _v2_rows(inputs[0])
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(400, "'id' must be a string")
    return V2Request(rows, _v2_outputs(body.get("outputs")), request_id)


def _v2_rows(tensor: Any) -> list[list[float | None]]:
    width = len(FEATURE_NAMES)
    if not isinstance(tensor, dict):
        raise V2Error(400, "inputs[0] must be a tensor object with name, shape, datatype and data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise V2Error(400, "inputs[0].name is required")
    where = f"input {name!r}"
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if datatype not in V2_DATATYPES:
        raise V2Error(400, f"{where}: datatype must be FP32 or FP64, got {datatype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1] != width
        or not 1 <= shape[0] <= MAX_INSTANCES
    ):
        raise V2Error(
            400, f"{where}: shape must be [n, {width}] with 1 <= n <= {MAX_INSTANCES}, got {shape!r}"
        )
    count = shape[0]
    if not isinstance(data, list):
        raise V2Error(400, f"{where}: data must be a list of numbers, flat or nested as the shape")
    if data and all(isinstance(row, list) for row in data):
        if len(data) != count or any(len(row) != width for row in data):
            sizes = sorted({len(row) for row in data})
            raise V2Error(
                400,
                f"{where}: nested data has {len(data)} rows of {sizes} values; the shape says {count} x {width}",
            )
        rows = data
    elif any(isinstance(v, list) for v in data):
        raise V2Error(400, f"{where}: data mixes numbers and lists; send it flat or nested as [n][{width}]")
    elif len(data) != count * width:
        raise V2Error(400, f"{where}: data has {len(data)} values; shape {shape} needs {count * width}")
    else:
        rows = [data[i * width : (i + 1) * width] for i in range(count)]
    vectors = []
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is None:
                raise V2Error(
                    400,
                    f"{where}: data[{i}][{j}] ({FEATURE_NAMES[j]}) is null; a {datatype} tensor holds numbers "
                    "(the v1 route imputes null)",
                )
        try:
            vectors.append(as_vector(row, f"{where}: data[{i}]"))
        except InvalidVector as exc:
            raise V2Error(400, str(exc)) from None
    return vectors


def _v2_outputs(requested: Any) -> tuple[str, ...]:
    if requested is None:
        return tuple(V2_OUTPUTS)
    if not isinstance(requested, list) or not requested:
        raise V2Error(400, "'outputs' must be a non-empty list of {\"name\": ...} objects")
    names = []
    for i, output in enumerate(requested):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in V2_OUTPUTS:
            raise V2Error(400, f"outputs[{i}].name: unknown output {name!r} (known: {', '.join(V2_OUTPUTS)})")
        names.append(name)
    return tuple(dict.fromkeys(names))


def v2_response(model: ReferenceModel, request: V2Request, answers: Sequence[Prediction]) -> dict[str, Any]:
    columns = {
        "predictions": [a.prediction for a in answers],
        "scores": [a.score for a in answers],
        "confidences": [a.confidence for a in answers],
    }
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = [
        {"name": name, "datatype": V2_OUTPUTS[name], "shape": [len(answers)], "data": columns[name]}
        for name in request.outputs
    ]
    return body
