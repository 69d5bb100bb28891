"""What can go wrong calling an ML dependency, by what the caller can do next.

    MLError
    ├── ModelNotFound          the logical model is not registered: a configuration question
    ├── ModelUnavailable       transport error, timeout, 5xx, or circuit open: try again later
    ├── PredictionRejected     the dependency answered 4xx, or a 500 whose body says the input was wrong:
    │                          this input will not work, retrying cannot help
    └── InvalidModelResponse   a 2xx whose body is not JSON or has the wrong shape

Only ModelUnavailable counts against a breaker; a PredictionRejected is the caller's mistake and counts neither
way (one bad caller must not open the circuit for everyone).
"""

from __future__ import annotations

from typing import ClassVar


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

