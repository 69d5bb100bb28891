"""What each pod does over time: one usage generator per scenario, and the crash loop's schedule.

A generator yields one ``(cores, working-set bytes)`` per timestamp, the CPU usage over ``(t - step, t]``.
All of them draw from the one seeded ``random.Random`` of the history, in timestamp order, one pod after
the other: the draws (and so the samples) are the same as long as the order of pods and draws is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal

from pipeline.embedded.history.cluster import (
    CART_CPU_CORES,
    CART_DEPLOYMENT,
    CART_MEMORY_BYTES,
    CRASHY_DEPLOYMENT,
    CRASHY_DOWN_S,
    CRASHY_RESTART_INTERVAL_S,
    CRASHY_RESTARTS,
    HEALTHY_THROTTLED_CPU_CORES,
    LEAKY_DEPLOYMENT,
    LEAKY_MEMORY_START_BYTES,
    THROTTLED_CPU_LIMIT_CORES,
    THROTTLED_DEPLOYMENT,
    MiB,
    PodSpec,
)

_CRASHY_LAST_RESTART_BEFORE_END_S = 120

Usage = tuple[float, float]  # (cores over the last step, working-set bytes)


def noise(rng: random.Random, sigma: float, limit: float) -> float:
    """Gaussian noise with standard deviation ``sigma``, clipped to ±``limit``."""
    return max(-limit, min(limit, rng.gauss(0.0, sigma)))


@dataclass(frozen=True)
class Timeline:
    """The sample times of a history and the crash loop's restarts (none when ``crashy`` is healthy)."""

    timestamps: list[float]
    step_s: int
    restarts: tuple[float, ...]

    @classmethod
    def of(cls, end: float, duration_s: int, step_s: int, *, crashing: bool) -> Timeline:
        start = end - duration_s
        timestamps = [start + i * step_s for i in range(duration_s // step_s + 1)]
        restarts = tuple(
            end - _CRASHY_LAST_RESTART_BEFORE_END_S - (CRASHY_RESTARTS - 1 - k) * CRASHY_RESTART_INTERVAL_S
            for k in range(CRASHY_RESTARTS)
            if crashing
        )
        return cls(timestamps, step_s, restarts)

    def progress(self, i: int) -> float:
        """How far sample ``i`` is from the first (0) to the last (1)."""
        n = len(self.timestamps)
        return i / (n - 1) if n > 1 else 1.0

    def restarts_at(self, t: float) -> int:
        return sum(1 for r in self.restarts if r <= t)

    def last_restart(self, t: float) -> float | None:
        past = [r for r in self.restarts if r <= t]
        return past[-1] if past else None

    def down(self, t: float) -> bool:
        """The crashed container is down during the step ending at ``t``: the interval (t - step, t]
        overlaps a down period (r, r + CRASHY_DOWN_S]."""
        return any(r < t and t - self.step_s < r + CRASHY_DOWN_S for r in self.restarts)


UsageGenerator = Callable[[random.Random, Timeline], Iterator[Usage]]


def cart(rng: random.Random, timeline: Timeline) -> Iterator[Usage]:
    """Healthy: ~0.2 cores, ~300 MiB."""
    for _ in timeline.timestamps:
        cores = CART_CPU_CORES + noise(rng, 0.01, 0.03)
        yield cores, CART_MEMORY_BYTES + round(noise(rng, 4 * MiB, 12 * MiB))


def leaky_healthy(rng: random.Random, timeline: Timeline) -> Iterator[Usage]:
    """The leaky pod without its leak: flat around the leak's starting point."""
    for _ in timeline.timestamps:
        cores = 0.05 + noise(rng, 0.003, 0.01)
        yield cores, LEAKY_MEMORY_START_BYTES + round(noise(rng, 4 * MiB, 12 * MiB))


def leaking(end_bytes: int) -> UsageGenerator:
    """A working set growing linearly from LEAKY_MEMORY_START_BYTES to ``end_bytes``."""

    def generate(rng: random.Random, timeline: Timeline) -> Iterator[Usage]:
        for i, _ in enumerate(timeline.timestamps):
            cores = 0.05 + noise(rng, 0.003, 0.01)
            linear = LEAKY_MEMORY_START_BYTES + timeline.progress(i) * (end_bytes - LEAKY_MEMORY_START_BYTES)
            yield cores, round(linear + noise(rng, 256 * 1024, 1 * MiB))

    return generate


def crash_loop(rng: random.Random, timeline: Timeline) -> Iterator[Usage]:
    """Before the first restart (and always, without restarts): ~0.3 cores, ~180 MiB. After each restart:
    no CPU while down, and a fresh container's working set growing towards the limit until the next."""
    for t in timeline.timestamps:
        cores = 0.0 if timeline.down(t) else 0.3 + noise(rng, 0.015, 0.05)
        last = timeline.last_restart(t)
        if last is None:
            yield cores, 180 * MiB + round(noise(rng, 3 * MiB, 9 * MiB))
        else:
            yield cores, 40 * MiB + round((t - last) * (400 * MiB / CRASHY_RESTART_INTERVAL_S))


def throttled(rng: random.Random, timeline: Timeline) -> Iterator[Usage]:
    """CPU pinned at its limit."""
    for _ in timeline.timestamps:
        cores = THROTTLED_CPU_LIMIT_CORES - abs(noise(rng, 0.002, 0.006))
        yield cores, 150 * MiB + round(noise(rng, 2 * MiB, 6 * MiB))


def throttled_healthy(rng: random.Random, timeline: Timeline) -> Iterator[Usage]:
    """The throttled pod at half its limit."""
    for _ in timeline.timestamps:
        cores = HEALTHY_THROTTLED_CPU_CORES + noise(rng, 0.01, 0.03)
        yield cores, 150 * MiB + round(noise(rng, 2 * MiB, 6 * MiB))


Throttling = Literal["pinned", "rare", "none"]


@dataclass(frozen=True)
class Behaviour:
    """How one pod behaves: its usage, the share of CFS periods it runs in, and how often it is throttled
    (``pinned``: THROTTLED_FRACTION of its periods; ``rare``: one period in 5 % of the steps)."""

    usage: UsageGenerator
    active: float
    throttling: Throttling


def behaviour(spec: PodSpec, healthy: Collection[str], leak_end_bytes: int) -> Behaviour:
    """The scenario a pod plays, or its healthy stand-in when ``healthy`` names its deployment."""
    well = spec.deployment in healthy
    if spec.deployment == CART_DEPLOYMENT:
        return Behaviour(cart, 0.6, "rare")
    if spec.deployment == LEAKY_DEPLOYMENT:
        return Behaviour(leaky_healthy if well else leaking(leak_end_bytes), 0.3, "none")
    if spec.deployment == CRASHY_DEPLOYMENT:
        return Behaviour(crash_loop, 0.5, "none")  # healthy: the timeline has no restarts
    if spec.deployment == THROTTLED_DEPLOYMENT:
        return Behaviour(throttled_healthy, 1.0, "rare") if well else Behaviour(throttled, 1.0, "pinned")
    raise ValueError(f"no behaviour for deployment {spec.deployment!r}")
