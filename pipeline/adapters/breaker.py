"""A circuit breaker for one outbound dependency: closed, open, half-open (ADR-009: 3 failures, 30 s).

Closed: calls go through; `threshold` consecutive failures open the circuit. Open: calls fail fast with
`CircuitOpen` until `reset_timeout_s` has passed. Half-open: exactly one trial call goes through (the
others still fail fast); its success closes the circuit, its failure opens it again for another period.

Only exceptions of the `failures` types count against the dependency; exceptions of the `neutral` types
(the caller's own mistake, e.g. "the model rejected this input") count neither way: they neither add to nor
reset the failures, and a half-open trial that ends in one frees the slot without deciding, so one bad caller
can neither open the circuit for everyone nor close it on a broken model. Any other outcome (a value, or
another exception) shows the dependency answered, and counts as success.
The state is computed from the injected clock, so tests drive time and scrapes always see the truth.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, TypeVar

from pipeline.observability import CIRCUIT_BREAKER_OPENS, CIRCUIT_BREAKER_STATE, get_logger

T = TypeVar("T")
log = get_logger("pipeline.breaker")


class BreakerState(IntEnum):
    """The gauge values of `pipeline_circuit_breaker_state`."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class CircuitOpen(Exception):
    """The dependency failed too often recently: the call was not attempted."""

    def __init__(self, dependency: str, retry_after_s: float, failures: int) -> None:
        self.dependency, self.retry_after_s, self.failures = dependency, retry_after_s, failures
        if retry_after_s > 0:
            reason = f"circuit breaker open after {failures} consecutive failures; next trial in {retry_after_s:.1f}s"
        else:
            reason = "circuit breaker half-open; a trial call is in flight"
        super().__init__(f"{dependency}: {reason}")


class CircuitBreaker:
    """One per dependency; safe for concurrent use within one event loop."""

    def __init__(
        self,
        name: str,
        threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        failures: tuple[type[BaseException], ...] = (Exception,),
        neutral: tuple[type[BaseException], ...] = (),
    ) -> None:
        if threshold < 1 or reset_timeout_s <= 0:
            raise ValueError("threshold must be >= 1 and reset_timeout_s > 0")
        self.name, self.threshold, self.reset_timeout_s = name, threshold, reset_timeout_s
        self._clock, self._failure_types, self._neutral_types = clock, failures, neutral
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.opens = 0
        CIRCUIT_BREAKER_STATE.labels(name).set_function(lambda: float(self.state))

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.reset_timeout_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def retry_after_s(self) -> float:
        """Seconds until the next trial call is allowed (0 when calls go through now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_timeout_s - (self._clock() - self._opened_at))

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` unless the circuit is open (then raise `CircuitOpen` without calling it)."""
        trial = self._admit()
        try:
            result = await fn()
        except self._neutral_types:
            raise  # the caller's mistake: says nothing about the dependency
        except self._failure_types:
            self._record_failure(trial)
            raise
        except Exception:
            self._record_success(trial)
            raise
        finally:
            if trial:
                self._trial_in_flight = False  # also when cancelled: the next caller may try
        self._record_success(trial)
        return result

    def snapshot(self) -> dict[str, Any]:
        """For `/api/v1/health`: the state and what it is based on."""
        state = self.state
        return {
            "name": self.name,
            "state": state.label,
            "consecutive_failures": self._consecutive_failures,
            "threshold": self.threshold,
            "reset_timeout_s": self.reset_timeout_s,
            "retry_after_s": round(self.retry_after_s(), 3),
            "opens": self.opens,
        }

    def _admit(self) -> bool:
        """True when this call is the half-open trial; raises when the call must not go through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN or self._trial_in_flight:
            raise CircuitOpen(self.name, self.retry_after_s(), self._consecutive_failures)
        self._trial_in_flight = True
        return True

    def _record_failure(self, trial: bool) -> None:
        if trial:
            self._consecutive_failures += 1
            self._open()
        elif self._opened_at is None:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.threshold:
                self._open()
        # Otherwise the call was admitted before the circuit opened: its failure is already accounted for.

    def _record_success(self, trial: bool) -> None:
        if trial:
            log.info("circuit breaker closed", dependency=self.name)
            self._opened_at = None
            self._consecutive_failures = 0
        elif self._opened_at is None:
            self._consecutive_failures = 0

    def _open(self) -> None:
        self._opened_at = self._clock()
        self.opens += 1
        CIRCUIT_BREAKER_OPENS.labels(self.name).inc()
        log.warning(
            "circuit breaker opened",
            dependency=self.name,
            consecutive_failures=self._consecutive_failures,
            retry_after_s=self.reset_timeout_s,
        )
