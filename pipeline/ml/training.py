"""The reference model's training set: 45-feature vectors of *normal* behaviour at every scope the pipeline
scores, from the project's own generated cluster histories served by a real Prometheus.

The gateway and the enrich stage score pods, deployments, namespaces, nodes and the whole cluster
(``Scope(namespace, pod)``, ``Scope(namespace, deployment)``, ``Scope(namespace)``, ``Scope(node)``,
``Scope()``), and a multi-pod vector is an aggregate (CPU summed over the pods, memory the most pressured
pod, restarts summed, node metrics over the nodes that run them). A model that only saw pods calls a
healthy two-replica deployment anomalous, so the training set holds every kind of scope.

What is normal (the choice, since nothing is labelled): a scope at a time is normal when none of its pods
is in an abnormal state then (:func:`abnormal_since`): ``leaky`` leaks from its first sample, ``throttled``
is pinned at its CPU limit from its first sample, ``crashy`` is abnormal from its first restart (its
vector's whole look-back, t-10m..t with 5-minute rates, lies before it until then). A healthy scope next to
a sick one (``shop/cart`` beside the leak on node-a) is normal: its node metrics carry the neighbour.

The scenario cluster alone has no healthy namespace (``shop`` always holds the leak, ``payments`` the
throttled pod) and so no healthy cluster, so the set comes from several histories
(:data:`TRAINING_HISTORIES`): the scenario cluster as it is, one where ``shop/leaky`` is healthy, and one
where every scenario is healthy (``generate_history(healthy=...)``). Each has a fixed end, seed and length,
so the set, and the model trained on it, is the same on every run; :func:`recipe` identifies it, and a
cached model trained from another recipe is retrained (``pipeline.ml.model.train_or_load``). Held-out
histories with other seeds are in ``pipeline.ml.evaluate``.

Missing values stay NaN here; the model imputes them (``pipeline.ml.model``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.adapters.features import FeatureCollector
from pipeline.adapters.prometheus import PrometheusClient
from pipeline.config import Settings
from pipeline.domain.features import LOOKBACK_S, Scope
from pipeline.embedded.history import (
    CRASHY_DEPLOYMENT,
    DEFAULT_SEED,
    DEFAULT_STEP_S,
    DEPLOYMENTS,
    LEAKY_DEPLOYMENT,
    LEAKY_MEMORY_END_BYTES,
    NAMESPACES,
    NODES,
    PODS,
    SCENARIOS,
    THROTTLED_DEPLOYMENT,
    History,
    MiB,
    PodSpec,
    generate_history,
)
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.progress import Progress

# Bump when what counts as normal, or how a row is made, changes without the plan below changing.
TRAINING_REVISION = 3
SCOPE_KINDS: tuple[str, ...] = ("pod", "deployment", "namespace", "node", "cluster")
HISTORY_END = 1_704_067_200.0  # 2024-01-01T00:00:00Z: fixed, so the histories (and the model) never change
HISTORY_DURATION_S = 3 * 3600  # the default history's length: the leak's slope is the one users see
EVALUATION_EVERY_S = 120
# The first evaluation needs the 10-minute grid and a full rate window before its first point.
WARMUP_S = LOOKBACK_S + 300  # RATE_RANGE is 5m
COLLECT_CONCURRENCY = 16
SIGNIFICANT_DIGITS = 9


@dataclass(frozen=True)
class HistorySpec:
    """One generated history: which scenarios are healthy in it, its seed, end and length, and how often
    each kind of scope is evaluated in it (``every``: (kind, seconds) pairs; other kinds every
    ``EVALUATION_EVERY_S``). Every interval is a multiple of ``EVALUATION_EVERY_S`` or divides it."""

    healthy: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    end: float = HISTORY_END
    duration_s: int = HISTORY_DURATION_S
    step_s: int = DEFAULT_STEP_S
    every: tuple[tuple[str, int], ...] = ()
    leak_end_bytes: int = LEAKY_MEMORY_END_BYTES

    def every_s(self, kind: str) -> int:
        return dict(self.every).get(kind, EVALUATION_EVERY_S)

    def generate(self) -> History:
        return generate_history(
            end=self.end,
            duration_s=self.duration_s,
            step_s=self.step_s,
            seed=self.seed,
            healthy=self.healthy,
            leak_end_bytes=self.leak_end_bytes,
        )

    @property
    def label(self) -> str:
        healthy = "all healthy" if set(self.healthy) == set(SCENARIOS) else "+".join(self.healthy) or "none"
        return f"seed {self.seed}, healthy: {healthy}"


# Where most scopes are healthy, how often each kind is evaluated: the isolation forest calls a small group
# of similar rows anomalous, so a kind with few scopes (one cluster, two namespaces) gets more times and a
# kind with many (pods) fewer, which keeps the kinds' weights in the set comparable.
_SPREAD: tuple[tuple[str, int], ...] = (
    ("pod", 360),
    ("deployment", 360),
    ("namespace", 240),
    ("node", 240),
    ("cluster", 60),
)
# The scenario cluster is evaluated every minute: its healthy scopes (cart, crashy before its crash loop)
# sit next to the sick ones, and their node metrics carry the neighbours' leak and restarts.
_DENSE: tuple[tuple[str, int], ...] = tuple((kind, 60) for kind in SCOPE_KINDS)
# In the training's scenario cluster the leak ends a little higher than the default history's (950 MiB), so
# the pods next to it have seen their node at and beyond the default history's worst: otherwise its last
# minutes (the gateway's "now" over a fresh default history) are the set's most extreme rows, which the
# forest flags by construction.
TRAINING_LEAK_END_BYTES = 1000 * MiB
# The scenario cluster (healthy cart next to the leak, the throttled pod and the crash loop), shop healthy
# (healthy shop namespace, node-a), payments healthy (healthy payments namespace, node-b) and everything
# healthy (the cluster). Seeds differ from the evaluation's (pipeline.ml.evaluate).
TRAINING_HISTORIES: tuple[HistorySpec, ...] = (
    HistorySpec(healthy=(), seed=DEFAULT_SEED, every=_DENSE, leak_end_bytes=TRAINING_LEAK_END_BYTES),
    HistorySpec(healthy=(LEAKY_DEPLOYMENT,), seed=DEFAULT_SEED + 1, every=_SPREAD),
    HistorySpec(healthy=(CRASHY_DEPLOYMENT, THROTTLED_DEPLOYMENT), seed=DEFAULT_SEED + 2, every=_SPREAD),
    HistorySpec(healthy=SCENARIOS, seed=DEFAULT_SEED + 3, every=_SPREAD),
)


@dataclass(frozen=True)
class Target:
    """A scope the pipeline scores, with the kind and the pods of the generated cluster it holds."""

    kind: str  # one of SCOPE_KINDS
    name: str  # "shop/cart-5c7d9f8b6-x2k8p", "shop/cart", "shop", "node-a", "cluster"
    scope: Scope
    pods: tuple[str, ...]


def targets(pods: Sequence[PodSpec] = PODS) -> tuple[Target, ...]:
    """Every pod, deployment, namespace and node of the generated cluster, and the cluster itself."""
    out = [
        Target("pod", f"{p.namespace}/{p.pod}", Scope(namespace=p.namespace, pod=p.pod), (p.pod,))
        for p in pods
    ]
    for namespace, deployment, _ in DEPLOYMENTS:
        members = tuple(p.pod for p in pods if (p.namespace, p.deployment) == (namespace, deployment))
        out.append(
            Target(
                "deployment",
                f"{namespace}/{deployment}",
                Scope(namespace=namespace, deployment=deployment),
                members,
            )
        )
    for namespace in NAMESPACES:
        out.append(
            Target(
                "namespace",
                namespace,
                Scope(namespace=namespace),
                tuple(p.pod for p in pods if p.namespace == namespace),
            )
        )
    for node in NODES:
        out.append(Target("node", node, Scope(node=node), tuple(p.pod for p in pods if p.node == node)))
    out.append(Target("cluster", "cluster", Scope(), tuple(p.pod for p in pods)))
    return tuple(out)


def abnormal_since(history: History, spec: PodSpec) -> float | None:
    """When ``spec``'s pod starts behaving abnormally in ``history`` (it never recovers), or None."""
    if spec.deployment in history.healthy:
        return None
    if spec.deployment in (LEAKY_DEPLOYMENT, THROTTLED_DEPLOYMENT):
        return history.start
    if spec.deployment == CRASHY_DEPLOYMENT and history.crashy_restart_times:
        return history.crashy_restart_times[0]
    return None


def is_anomalous(history: History, target: Target, at: float) -> bool:
    """A scope is anomalous at ``at`` when one of its pods is abnormal then (its label in evaluation)."""
    for spec in PODS:
        if spec.pod in target.pods:
            since = abnormal_since(history, spec)
            if since is not None and at >= since:
                return True
    return False


def evaluation_times(history: History, every_s: int = EVALUATION_EVERY_S) -> list[float]:
    """Every ``every_s`` back from the history's end, after the warm-up (oldest first)."""
    times = []
    at = history.end
    while at >= history.start + WARMUP_S:
        times.append(at)
        at -= every_s
    return times[::-1]


@dataclass(frozen=True)
class Row:
    """One (scope, time) of one history, with its label."""

    history: int  # index into the histories collected
    target: Target
    at: float
    anomalous: bool


def plan_rows(history: History, spec: HistorySpec, index: int = 0, *, normal_only: bool = False) -> list[Row]:
    """Every (scope, time) of ``history`` at ``spec``'s intervals, or only the normal ones (the training
    set), in a stable order."""
    rows = []
    for target in targets():
        for at in evaluation_times(history, spec.every_s(target.kind)):
            anomalous = is_anomalous(history, target, at)
            if not (normal_only and anomalous):
                rows.append(Row(index, target, at, anomalous))
    return rows


@dataclass(frozen=True)
class TrainingSet:
    """Rows of 45 features (NaN = missing), where each row came from, and how long collecting took."""

    vectors: np.ndarray  # shape (n, 45), float64
    rows: tuple[tuple[str, str, float], ...]  # (kind, scope name, evaluated_at) per row
    histories: tuple[dict[str, Any], ...]  # healthy, seed, end, duration_s, step_s
    seconds: float
    timings: dict[str, float]  # generate_s, import_s, start_s (summed over histories), collect_s
    recipe: str = ""  # recipe_id() of the histories it came from

    def __len__(self) -> int:
        return len(self.rows)

    def report(self) -> dict[str, Any]:
        """What the model's metadata keeps about its training set."""
        kinds = Counter(kind for kind, _, _ in self.rows)
        scopes = Counter(f"{kind} {name}" for kind, name, _ in self.rows)
        return {
            "source": "generated",
            "recipe": self.recipe,
            "histories": list(self.histories),
            "rows_per_kind": {k: kinds[k] for k in SCOPE_KINDS if kinds[k]},
            "rows_per_scope": dict(sorted(scopes.items())),
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def recipe(histories: Sequence[HistorySpec] = TRAINING_HISTORIES) -> dict[str, Any]:
    """Everything that decides the generated training set (not its values: those are the model version)."""
    return {
        "revision": TRAINING_REVISION,
        "histories": [asdict(h) for h in histories],
        "every_s": EVALUATION_EVERY_S,
        "model": "pipeline.ml.model",  # PARAMS are checked on load; this names where they live
        "warmup_s": WARMUP_S,
        "scopes": list(SCOPE_KINDS),
    }


def recipe_id(histories: Sequence[HistorySpec] = TRAINING_HISTORIES) -> str:
    return hashlib.sha256(json.dumps(recipe(histories), sort_keys=True).encode()).hexdigest()[:16]


async def collect_vectors(
    prometheus_url: str, plan: Sequence[tuple[Scope, float]], progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """The vector of every (scope, time) in ``plan`` through the project's FeatureCollector (NaN = missing)."""
    client = PrometheusClient(
        Settings(prometheus_url=prometheus_url, prometheus_max_concurrency=COLLECT_CONCURRENCY)
    )
    collector = FeatureCollector(client)
    limit = asyncio.Semaphore(COLLECT_CONCURRENCY)

    async def one(scope: Scope, at: float) -> list[float]:
        async with limit:
            collected = await collector.collect(scope, at)
        if progress is not None:
            progress(1)
        return [np.nan if v is None else v for v in collected.vector.values]

    try:
        values = await asyncio.gather(*(one(scope, at) for scope, at in plan))
    finally:
        await client.aclose()
    return np.asarray(values, dtype=np.float64).reshape(len(plan), -1)


def collect_histories(
    specs: Sequence[HistorySpec],
    *,
    normal_only: bool,
    workdir: Path | None = None,
    on_history: Callable[[int, History, int], None] | None = None,
    progress: Progress | None = None,
) -> tuple[list[History], list[Row], np.ndarray, dict[str, float]]:
    """Generate each history, serve it with a real Prometheus, and collect its rows' vectors; `progress`
    advances by one per history, a fraction of it per vector collected.

    Needs the ``prometheus`` and ``promtool`` binaries (scripts/install-components.sh). Runs its own event
    loop: call it from synchronous code (or ``asyncio.to_thread``).
    """
    histories: list[History] = []
    rows: list[Row] = []
    blocks: list[np.ndarray] = []
    timings: dict[str, float] = dict.fromkeys(("collect_s", "generate_s", "import_s", "start_s"), 0.0)

    def prepare(spec: HistorySpec, tmp: str) -> PrometheusServer:
        """Generate a history and start a Prometheus serving it (runs while the previous one is collected)."""
        server = PrometheusServer(Path(tmp), spec.generate())
        try:
            return server.start()
        except BaseException:
            server.stop()
            raise

    with (
        tempfile.TemporaryDirectory(prefix="ml-history-", dir=workdir) as tmp,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-history") as pool,
    ):
        upcoming = pool.submit(prepare, specs[0], tmp) if specs else None
        try:
            for index, spec in enumerate(specs):
                assert upcoming is not None
                prometheus = upcoming.result()
                upcoming = pool.submit(prepare, specs[index + 1], tmp) if index + 1 < len(specs) else None
                try:
                    history = prometheus.history
                    planned = plan_rows(history, spec, index, normal_only=normal_only)
                    if on_history is not None:
                        on_history(index, history, len(planned))
                    started = time.perf_counter()
                    plan = [(r.target.scope, r.at) for r in planned]
                    step = None
                    if progress is not None:
                        progress.note(f"history {index + 1}/{len(specs)}: {len(plan)} vectors")
                        step = _fraction_of(progress, len(plan))
                    blocks.append(asyncio.run(collect_vectors(prometheus.url, plan, step)))
                    timings["collect_s"] += time.perf_counter() - started
                    for key in ("generate_s", "import_s", "start_s"):
                        timings[key] += prometheus.timings.get(key, 0.0)
                finally:
                    prometheus.stop()
                histories.append(history)
                rows.extend(planned)
        finally:
            if upcoming is not None:  # a failure: stop the server started for the next history
                with contextlib.suppress(Exception):
                    upcoming.result().stop()
    vectors = np.concatenate(blocks) if blocks else np.empty((0, 45))
    return histories, rows, vectors, dict(timings)


def _fraction_of(progress: Progress, parts: int) -> Callable[[int], None]:
    """Advance `progress` by one unit split into `parts` (one unit at once when there are none)."""
    if not parts:
        progress.advance(1)
    return lambda n: progress.advance(n / parts)


def significant(vectors: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Each value to ``digits`` significant digits (NaN kept).

    Prometheus sums the series of an aggregation (``avg`` over a deployment's nodes) in no fixed order, so
    a multi-node scope's value can differ in its last bit from one run to the next; rounded, the training
    set — and the model version, a hash of it — is the same on every run.
    """
    return np.array([float(f"{v:.{digits}g}") for v in vectors.ravel()], dtype=np.float64).reshape(
        vectors.shape
    )


def build_training_set(
    workdir: Path | None = None, histories: Iterable[HistorySpec] = TRAINING_HISTORIES,
    progress: Progress | None = None,
) -> TrainingSet:
    """Generate the training histories, serve each with a real Prometheus, collect the normal vectors
    (`progress`: one unit per history)."""
    started = time.perf_counter()
    specs = list(histories)
    generated, rows, vectors, timings = collect_histories(specs, normal_only=True, workdir=workdir,
                                                          progress=progress)
    return TrainingSet(
        vectors=significant(vectors),
        rows=tuple((r.target.kind, r.target.name, r.at) for r in rows),
        histories=tuple(
            {
                "healthy": sorted(h.healthy),
                "seed": h.seed,
                "end": h.end,
                "duration_s": h.duration_s,
                "step_s": h.step_s,
            }
            for h in generated
        ),
        seconds=time.perf_counter() - started,
        timings=timings,
        recipe=recipe_id(specs),
    )
