"""The circuit breaker's transitions, driven by an injected clock: no sleeping, no timing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from pipeline.adapters.breaker import BreakerState, CircuitBreaker, CircuitOpen
from tests.support import Clock


class Down(Exception):
    """The dependency failed."""


class Refused(Exception):
    """The dependency answered, but refused this input."""


def breaker(clock: Clock, threshold: int = 3, reset: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(f"test-{uuid.uuid4().hex[:8]}", threshold, reset, clock, failures=(Down,))


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise Down("no route to host")


async def refused() -> str:
    raise Refused("bad input")


async def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            await b.call(down)


def gauge(b: CircuitBreaker) -> float | None:
    return REGISTRY.get_sample_value("pipeline_circuit_breaker_state", {"dependency": b.name})


def opens(b: CircuitBreaker) -> float | None:
    return REGISTRY.get_sample_value("pipeline_circuit_breaker_opens_total", {"dependency": b.name})


async def test_opens_after_threshold_consecutive_failures_then_fails_fast() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 2)
    assert b.state is BreakerState.CLOSED and gauge(b) == 0
    await fail(b, 1)
    assert b.state is BreakerState.OPEN and gauge(b) == 2 and opens(b) == 1

    called = []

    async def tracked() -> str:
        called.append(1)
        return "ok"

    with pytest.raises(CircuitOpen, match="open after 3 consecutive failures; next trial in 30.0s") as info:
        await b.call(tracked)
    assert called == [] and info.value.retry_after_s == 30.0
    clock.advance(29.9)
    with pytest.raises(CircuitOpen):
        await b.call(tracked)
    assert called == []


async def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    b = breaker(Clock())
    await fail(b, 2)
    assert await b.call(ok) == "ok"
    await fail(b, 2)
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 2


async def test_exceptions_that_are_not_failures_count_as_answers() -> None:
    b = breaker(Clock())
    await fail(b, 2)
    for _ in range(5):
        with pytest.raises(Refused):
            await b.call(refused)
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 0


def caller_breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        f"test-{uuid.uuid4().hex[:8]}", 3, 30.0, clock, failures=(Down,), neutral=(Refused,)
    )


async def test_neutral_exceptions_neither_count_as_failures_nor_reset_them() -> None:
    b = caller_breaker(Clock())
    for _ in range(10):  # one bad caller, many times: the circuit stays closed for everyone
        with pytest.raises(Refused):
            await b.call(refused)
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 0
    await fail(b, 2)
    with pytest.raises(Refused):
        await b.call(refused)  # ... and it does not hide the model's own failures either
    assert b.consecutive_failures == 2
    await fail(b, 1)
    assert b.state is BreakerState.OPEN


async def test_a_neutral_trial_frees_the_slot_without_deciding() -> None:
    clock = Clock()
    b = caller_breaker(clock)
    await fail(b, 3)
    clock.advance(30)
    with pytest.raises(Refused):
        await b.call(refused)  # the half-open trial was a bad request: the model is not judged by it
    assert b.state is BreakerState.HALF_OPEN and b.consecutive_failures == 3
    assert await b.call(ok) == "ok"  # the next caller is the trial
    assert b.state is BreakerState.CLOSED


async def test_half_open_after_the_reset_timeout_and_a_successful_trial_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    clock.advance(30)
    assert b.state is BreakerState.HALF_OPEN and gauge(b) == 1
    assert await b.call(ok) == "ok"
    assert b.state is BreakerState.CLOSED and gauge(b) == 0 and b.consecutive_failures == 0
    await fail(b, 2)  # a fresh count: two failures do not reopen it
    assert b.state is BreakerState.CLOSED


async def test_a_failed_trial_reopens_for_a_whole_period() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    clock.advance(31)
    await fail(b, 1)
    assert b.state is BreakerState.OPEN and opens(b) == 2
    clock.advance(29)
    assert b.state is BreakerState.OPEN
    clock.advance(1)
    assert b.state is BreakerState.HALF_OPEN


async def test_half_open_lets_exactly_one_trial_through() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    clock.advance(30)
    release = asyncio.Event()
    trials = []

    async def slow_trial() -> str:
        trials.append(1)
        await release.wait()
        return "recovered"

    trial = asyncio.create_task(b.call(slow_trial))
    await asyncio.sleep(0)
    assert trials == [1]
    for _ in range(3):
        with pytest.raises(CircuitOpen, match="half-open; a trial call is in flight"):
            await b.call(slow_trial)
    assert trials == [1]
    release.set()
    assert await trial == "recovered"
    assert b.state is BreakerState.CLOSED
    assert await b.call(ok) == "ok"


async def test_a_cancelled_trial_frees_the_slot_without_deciding() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    clock.advance(30)
    trial = asyncio.create_task(b.call(asyncio.Event().wait))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert b.state is BreakerState.HALF_OPEN
    assert await b.call(ok) == "ok"
    assert b.state is BreakerState.CLOSED


async def test_a_call_admitted_before_opening_does_not_extend_the_open_period() -> None:
    clock = Clock()
    b = breaker(clock)
    release = asyncio.Event()

    async def late_failure() -> str:
        await release.wait()
        raise Down("late")

    late = asyncio.create_task(b.call(late_failure))
    await asyncio.sleep(0)
    await fail(b, 3)
    clock.advance(20)
    release.set()
    with pytest.raises(Down):
        await late
    clock.advance(10)
    assert b.state is BreakerState.HALF_OPEN and opens(b) == 1


async def test_snapshot_reports_state_counts_and_time_to_next_trial() -> None:
    clock = Clock()
    b = breaker(clock, threshold=2, reset=10)
    assert b.snapshot() == {
        "name": b.name,
        "state": "closed",
        "consecutive_failures": 0,
        "threshold": 2,
        "reset_timeout_s": 10,
        "retry_after_s": 0.0,
        "opens": 0,
    }
    await fail(b, 2)
    clock.advance(4)
    snap = b.snapshot()
    assert (snap["state"], snap["consecutive_failures"], snap["retry_after_s"], snap["opens"]) == (
        "open",
        2,
        6.0,
        1,
    )
    clock.advance(6)
    assert b.snapshot()["state"] == "half-open"


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", 0, 30)
    with pytest.raises(ValueError):
        CircuitBreaker("x", 3, 0)
