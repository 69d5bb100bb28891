"""The one mapping from a dependency's failure to the answer a client gets (docs/api.md, "Errors").

The rule, the same on every route:
* the dependency cannot be reached, times out, answers 5xx, or is not configured: **503**, with
  `Retry-After` (Prometheus: `PROMETHEUS_UNAVAILABLE`);
* the dependency refused a request the gateway built (bad PromQL: `PROMETHEUS_QUERY_FAILED`) or answered
  nonsense (a model's malformed answer: `PREDICTION_FAILED`): **502** -- the client's input was valid, and
  retrying cannot help;
* the dependency refused what the client sent as is (the instances of `POST /api/v1/detect`): **400**; a
  model the client named that does not exist: **404**.

One exception, kept on purpose: an unavailable ML model is 503 `MODEL_UNAVAILABLE` *without* the header,
with the breaker's next trial as `retry_after_s` in the body (see pipeline.gateway.model_routes: the
notebook client's urllib3 `Retry` would block for the whole open time on each retry).

`details`, when an error has them, is always a list of `{"field", "message"}` (pipeline.api.errors).
"""

from __future__ import annotations

from typing import Any

from pipeline.adapters.ml import (
    InvalidModelResponse,
    MLError,
    ModelNotFound,
    ModelUnavailable,
    PredictionRejected,
)
from pipeline.adapters.prometheus import NotConfigured, PrometheusError, QueryError
from pipeline.api.errors import ApiError

RETRY_AFTER_S = "10"

# The same rule, as the API contract declares it (pipeline.api.contract.op `errors`).
PROMETHEUS_ERRORS = {
    502: "Prometheus rejected the query the gateway built (`PROMETHEUS_QUERY_FAILED`); retrying cannot help",
    503: f"Prometheus is unreachable, failing or not configured (`PROMETHEUS_UNAVAILABLE`); `Retry-After: "
         f"{RETRY_AFTER_S}`",
}
MODEL_ERRORS = {
    400: "The request is invalid (`INVALID_REQUEST`), or the model refused these instances (`PREDICTION_REJECTED`, "
         "with its message)",
    404: "The model is not registered (`MODEL_NOT_FOUND`)",
    502: "The model answered something unreadable (`PREDICTION_FAILED`)",
    503: "The model is unreachable, failing, or its circuit is open (`MODEL_UNAVAILABLE`): no `Retry-After` "
         "header (the notebook client would sleep it on every retry) but `retry_after_s` in the body when the "
         "circuit is open",
}


def details(field: str, message: str) -> list[dict[str, str]]:
    """The `details` of an error body: what went wrong, and where (a request field or a dependency)."""
    return [{"field": field, "message": message}]


def prometheus_error(exc: PrometheusError) -> ApiError:
    """A Prometheus failure as the client sees it: 502 for a refused query, else 503 with Retry-After."""
    if isinstance(exc, QueryError):
        return ApiError(502, "PROMETHEUS_QUERY_FAILED", "Prometheus rejected the query",
                        details=details("prometheus", str(exc)))
    return ApiError(503, "PROMETHEUS_UNAVAILABLE", "Prometheus not available",
                    details=details("prometheus", str(exc)), headers={"Retry-After": RETRY_AFTER_S})


def prometheus_not_configured() -> ApiError:
    """No Prometheus client (PROMETHEUS_URL unset): the same 503 as an outage."""
    return prometheus_error(NotConfigured("PROMETHEUS_URL is not set"))


def model_error(exc: MLError | ValueError, **extra: Any) -> ApiError:
    """A KServe failure on a proxy route; `extra` joins the body (the proxy routes add `success: false`)."""
    if isinstance(exc, ModelNotFound):
        return ApiError(404, "MODEL_NOT_FOUND", str(exc), **extra)
    if isinstance(exc, ModelUnavailable):
        if exc.retry_after_s:
            extra["retry_after_s"] = round(exc.retry_after_s, 1)
        return ApiError(503, "MODEL_UNAVAILABLE", str(exc), **extra)
    if isinstance(exc, PredictionRejected):
        return ApiError(400, "PREDICTION_REJECTED", f"Prediction failed: {exc}", **extra)
    if isinstance(exc, InvalidModelResponse):
        return ApiError(502, "PREDICTION_FAILED", f"Prediction failed: {exc}", **extra)
    if isinstance(exc, ValueError):  # nothing was sent: rows a v2 tensor cannot hold
        return ApiError(400, "INVALID_REQUEST", f"Invalid request format: {exc}", **extra)
    return ApiError(503, "MODEL_UNAVAILABLE", str(exc), **extra)
