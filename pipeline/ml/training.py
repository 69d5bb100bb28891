"""The reference model's training set: 45-feature vectors of *normal* behaviour, from the project's own
generated cluster history served by a real Prometheus.

What is normal (the choice, since nothing is labelled):

* ``shop/cart`` (both pods): healthy for the whole history — every evaluation time is kept;
* ``payments/crashy``: healthy until its first restart — kept while the vector's whole look-back
  (t-10m..t, rates over 5m) lies before ``History.crashy_restart_times[0]``;
* ``shop/leaky``: leaks from the first sample to the last, so it has no normal window — left out;
* ``payments/throttled``: pinned at its CPU limit for the whole history — left out.

Vectors are per pod (``Scope(namespace, pod)``), evaluated every ``EVALUATION_EVERY_S`` back from the end
of a history with a fixed end, seed and length, so the set, and the model trained on it, is the same on
every run. Missing values stay NaN here; the model imputes them (``pipeline.ml.model``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.adapters.features import FeatureCollector
from pipeline.adapters.prometheus import PrometheusClient
from pipeline.config import Settings
from pipeline.domain.features import LOOKBACK_S, Scope
from pipeline.embedded.history import (
    CART_DEPLOYMENT,
    CRASHY_DEPLOYMENT,
    DEFAULT_SEED,
    DEFAULT_STEP_S,
    PODS,
    History,
    generate_history,
)
from pipeline.embedded.prometheus import PrometheusServer

HISTORY_END = 1_704_067_200.0  # 2024-01-01T00:00:00Z: fixed, so the history (and the model) never changes
HISTORY_DURATION_S = 6 * 3600
EVALUATION_EVERY_S = 120
# The first evaluation needs the 10-minute grid and a full rate window before its first point.
WARMUP_S = LOOKBACK_S + 300  # RATE_RANGE is 5m
COLLECT_CONCURRENCY = 16


@dataclass(frozen=True)
class Window:
    """Evaluation times [start, end) of one pod that count as normal behaviour."""

    namespace: str
    pod: str
    start: float
    end: float


@dataclass(frozen=True)
class TrainingSet:
    """Rows of 45 features (NaN = missing), where each row came from, and how long collecting took."""

    vectors: np.ndarray  # shape (n, 45), float64
    rows: tuple[tuple[str, float], ...]  # ("namespace/pod", evaluated_at) per row
    history: dict[str, float]  # end, duration_s, step_s, seed
    seconds: float
    timings: dict[str, float]  # collect_s, and from the Prometheus: generate_s, import_s, start_s

    def __len__(self) -> int:
        return len(self.rows)


def normal_windows(history: History) -> list[Window]:
    """Where each pod behaves normally in ``history`` (see the module docstring for the choice)."""
    first = history.start + WARMUP_S
    after_end = history.end + 1  # windows are half-open; the last evaluation is at history.end
    windows = []
    for spec in PODS:
        if spec.deployment == CART_DEPLOYMENT:
            windows.append(Window(spec.namespace, spec.pod, first, after_end))
        elif spec.deployment == CRASHY_DEPLOYMENT and history.crashy_restart_times:
            windows.append(Window(spec.namespace, spec.pod, first, history.crashy_restart_times[0]))
    return windows


def evaluation_times(history: History, window: Window, every_s: int = EVALUATION_EVERY_S) -> list[float]:
    """Times in ``window``, every ``every_s`` back from the history's end (oldest first)."""
    times = []
    at = history.end
    while at >= window.start:
        if at < window.end:
            times.append(at)
        at -= every_s
    return times[::-1]


def evaluations(history: History, every_s: int = EVALUATION_EVERY_S) -> Iterator[tuple[Scope, float]]:
    """Every (pod scope, time) the training set holds, in a stable order."""
    for window in normal_windows(history):
        scope = Scope(namespace=window.namespace, pod=window.pod)
        for at in evaluation_times(history, window, every_s):
            yield scope, at


async def collect(prometheus_url: str, history: History, every_s: int = EVALUATION_EVERY_S) -> TrainingSet:
    """Collect the training vectors from a Prometheus that serves ``history``."""
    started = time.perf_counter()
    client = PrometheusClient(
        Settings(prometheus_url=prometheus_url, prometheus_max_concurrency=COLLECT_CONCURRENCY)
    )
    collector = FeatureCollector(client)
    limit = asyncio.Semaphore(COLLECT_CONCURRENCY)

    async def one(scope: Scope, at: float) -> list[float]:
        async with limit:
            collected = await collector.collect(scope, at)
        return [np.nan if v is None else v for v in collected.vector.values]

    plan = list(evaluations(history, every_s))
    try:
        values = await asyncio.gather(*(one(scope, at) for scope, at in plan))
    finally:
        await client.aclose()
    return TrainingSet(
        vectors=np.asarray(values, dtype=np.float64).reshape(len(plan), -1),
        rows=tuple((f"{scope.namespace}/{scope.pod}", at) for scope, at in plan),
        history={
            "end": history.end,
            "duration_s": history.duration_s,
            "step_s": history.step_s,
            "seed": history.seed,
        },
        seconds=time.perf_counter() - started,
        timings={"collect_s": time.perf_counter() - started},
    )


def build_training_set(workdir: Path | None = None) -> TrainingSet:
    """Generate the fixed history, serve it with a real Prometheus, collect the normal vectors.

    Needs the ``prometheus`` and ``promtool`` binaries (scripts/install-components.sh). Runs its own event
    loop: call it from synchronous code (or ``asyncio.to_thread``).
    """
    started = time.perf_counter()
    history = generate_history(
        end=HISTORY_END, duration_s=HISTORY_DURATION_S, step_s=DEFAULT_STEP_S, seed=DEFAULT_SEED
    )
    with tempfile.TemporaryDirectory(prefix="ml-training-", dir=workdir) as tmp:
        with PrometheusServer(Path(tmp), history) as prometheus:
            training = asyncio.run(collect(prometheus.url, history))
            timings = {**prometheus.timings, **training.timings}
    return TrainingSet(
        training.vectors, training.rows, training.history, time.perf_counter() - started, timings
    )
