"""ML dependencies: KServe InferenceServices (discovered from the KSERVE_* settings) and the legacy ML service.

* `errors`: what can go wrong, by what the caller can do next (MLError and its four kinds);
* `registry`: the KServe models this process may call (`ModelRegistry.from_settings`);
* `transport`: one deadline, stamina retries on transient failures, a circuit breaker per dependency;
* `kserve`: the KServe client (protocol v1 or v2);
* `mlservice`: the legacy ML service client, reading both variants of its answers.
"""

from pipeline.adapters.ml.errors import (
    InvalidModelResponse,
    MLError,
    ModelNotFound,
    ModelUnavailable,
    PredictionRejected,
)
from pipeline.adapters.ml.kserve import KServeClient, ModelHealth, Prediction
from pipeline.adapters.ml.mlservice import (
    AnomalyReport,
    DetectedAnomaly,
    ForecastReport,
    MetricSample,
    MLServiceClient,
    PredictedValue,
    ServiceHealth,
)
from pipeline.adapters.ml.registry import PROTOCOLS, KServeProtocol, ModelEndpoint, ModelRegistry
from pipeline.adapters.ml.transport import CALLER_ERRORS, caller_error

__all__ = [
    "CALLER_ERRORS",
    "PROTOCOLS",
    "AnomalyReport",
    "DetectedAnomaly",
    "ForecastReport",
    "InvalidModelResponse",
    "KServeClient",
    "KServeProtocol",
    "MLError",
    "MLServiceClient",
    "MetricSample",
    "ModelEndpoint",
    "ModelHealth",
    "ModelNotFound",
    "ModelRegistry",
    "ModelUnavailable",
    "Prediction",
    "PredictedValue",
    "PredictionRejected",
    "ServiceHealth",
    "caller_error",
]
