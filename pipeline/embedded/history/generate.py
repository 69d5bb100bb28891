"""Generating a history: the pods' usage from their scenarios, then the series that cAdvisor,
kube-state-metrics and node-exporter would report, written into one sample sink."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pipeline.embedded.history.cluster import (
    CFS_PERIOD_S,
    CRASHY_DEPLOYMENT,
    DEFAULT_DURATION_S,
    DEFAULT_SEED,
    DEFAULT_STEP_S,
    DEPLOYMENTS,
    FAMILIES,
    LEAKY_MEMORY_END_BYTES,
    LEAKY_MEMORY_LIMIT_BYTES,
    LEAKY_MEMORY_START_BYTES,
    NODE_ALLOCATABLE_CPU_CORES,
    NODE_ALLOCATABLE_MEMORY_BYTES,
    NODE_CPU_MODES,
    NODE_CPUS,
    NODE_FILESYSTEM_SIZE_BYTES,
    NODE_MEMORY_TOTAL_BYTES,
    NODES,
    PODS,
    SCENARIOS,
    THROTTLED_FRACTION,
    GiB,
    MiB,
    PodSpec,
    Sample,
    SeriesKey,
    pod_labels,
)
from pipeline.embedded.history.openmetrics import render_openmetrics
from pipeline.embedded.history.scenarios import Behaviour, Timeline, behaviour, noise
from pipeline.embedded.history.series import History, aligned_now


@dataclass
class _Sink:
    """Where every generated sample goes: series in the order they first appear, samples ascending."""

    samples: dict[SeriesKey, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        assert name in FAMILIES, name
        key = (name, frozenset((k, str(v)) for k, v in labels.items()))
        self.samples.setdefault(key, []).append((ts, float(value)))


@dataclass(frozen=True)
class _PodUsage:
    cores: list[float]  # usage over (t - step, t]
    memory: list[float]


def generate_history(
    end: float | None = None,
    *,
    duration_s: int = DEFAULT_DURATION_S,
    step_s: int = DEFAULT_STEP_S,
    seed: int = DEFAULT_SEED,
    healthy: Collection[str] = (),
    leak_end_bytes: int = LEAKY_MEMORY_END_BYTES,
) -> History:
    """Generate the cluster's history from ``end - duration_s`` to ``end`` inclusive, one sample per
    series every ``step_s`` seconds. Same arguments ⇒ identical samples and text.

    ``end`` defaults to :func:`aligned_now`; it is rounded down to whole seconds. ``duration_s`` must be a
    multiple of ``step_s``; both are whole seconds. Keep ``duration_s`` ≥ 1 h for the crash loop to fit.
    ``healthy`` names scenarios (of :data:`SCENARIOS`) that behave healthily instead; the default keeps all
    three. ``leak_end_bytes`` is where the leak's working set ends (below the 1 GiB limit).
    """
    t0 = time.perf_counter()
    step_s, duration_s, healthy = _checked(step_s, duration_s, healthy, leak_end_bytes)
    end = float(math.floor(aligned_now(step_s) if end is None else end))
    timeline = Timeline.of(end, duration_s, step_s, crashing=CRASHY_DEPLOYMENT not in healthy)
    rng = random.Random(seed)
    sink = _Sink()
    behaviours = {spec.pod: behaviour(spec, healthy, leak_end_bytes) for spec in PODS}
    usage = {spec.pod: _usage(rng, timeline, behaviours[spec.pod]) for spec in PODS}
    for spec in PODS:
        _write_cadvisor(sink, rng, timeline, spec, behaviours[spec.pod], usage[spec.pod])
    for spec in PODS:
        _write_pod_state(sink, timeline, spec)
    _write_deployments(sink, timeline)
    for node_index, node in enumerate(NODES):
        _write_node(sink, rng, timeline, node_index, node, usage)
    return History(
        end=end,
        duration_s=duration_s,
        step_s=step_s,
        seed=seed,
        samples=sink.samples,
        openmetrics=render_openmetrics(sink.samples),
        crashy_restart_times=timeline.restarts,
        generate_s=time.perf_counter() - t0,
        healthy=healthy,
    )


def _checked(
    step_s: int, duration_s: int, healthy: Collection[str], leak_end_bytes: int
) -> tuple[int, int, frozenset[str]]:
    step_s = int(step_s)
    duration_s = int(duration_s)
    if step_s <= 0 or duration_s <= 0 or duration_s % step_s:
        raise ValueError(f"duration_s ({duration_s}) must be a positive multiple of step_s ({step_s})")
    names = frozenset(healthy)
    unknown = sorted(names - set(SCENARIOS))
    if unknown:
        raise ValueError(f"healthy names unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if not LEAKY_MEMORY_START_BYTES <= leak_end_bytes < LEAKY_MEMORY_LIMIT_BYTES:
        raise ValueError(
            f"leak_end_bytes must be in [{LEAKY_MEMORY_START_BYTES}, {LEAKY_MEMORY_LIMIT_BYTES})"
        )
    return step_s, duration_s, names


def _usage(rng: random.Random, timeline: Timeline, pod: Behaviour) -> _PodUsage:
    cores: list[float] = []
    memory: list[float] = []
    for c, ws in pod.usage(rng, timeline):
        cores.append(max(0.0, c))
        memory.append(float(ws))
    return _PodUsage(cores, memory)


def _write_cadvisor(
    sink: _Sink, rng: random.Random, timeline: Timeline, spec: PodSpec, pod: Behaviour, usage: _PodUsage
) -> None:
    """The container's CPU counter, working set and CFS counters (periods, throttled periods and seconds)."""
    labels = spec.labels
    pinned = pod.throttling == "pinned"
    crashes = spec.deployment == CRASHY_DEPLOYMENT
    periods_per_step = timeline.step_s / CFS_PERIOD_S
    cpu_total = round(rng.uniform(500, 5000), 3)
    periods = float(rng.randrange(10_000, 200_000))
    throttled = float(rng.randrange(0, 50)) if not pinned else round(periods * THROTTLED_FRACTION)
    throttled_s = round(throttled * 0.05, 3)
    for i, t in enumerate(timeline.timestamps):
        if i:
            cpu_total += usage.cores[i] * timeline.step_s
            if crashes and timeline.down(t):
                new_periods = 0
            else:
                new_periods = round(periods_per_step * pod.active * (1 + noise(rng, 0.03, 0.08)))
            new_throttled, new_throttled_s = _throttled_step(rng, pod, new_periods)
            periods += new_periods
            throttled += new_throttled
            throttled_s += new_throttled_s
        sink.add("container_cpu_usage_seconds_total", labels, t, cpu_total)
        sink.add("container_memory_working_set_bytes", labels, t, usage.memory[i])
        sink.add("container_cpu_cfs_periods_total", labels, t, periods)
        sink.add("container_cpu_cfs_throttled_periods_total", labels, t, throttled)
        sink.add("container_cpu_cfs_throttled_seconds_total", labels, t, throttled_s)


def _throttled_step(rng: random.Random, pod: Behaviour, new_periods: int) -> tuple[int, float]:
    """The periods throttled in one step, and the seconds lost to them."""
    if pod.throttling == "pinned":
        new_throttled = round(new_periods * (THROTTLED_FRACTION + noise(rng, 0.02, 0.05)))
        return new_throttled, new_throttled * (0.05 + noise(rng, 0.003, 0.01))
    if pod.throttling == "rare":
        new_throttled = 1 if rng.random() < 0.05 else 0
        return new_throttled, new_throttled * 0.004
    return 0, 0.0


def _write_pod_state(sink: _Sink, timeline: Timeline, spec: PodSpec) -> None:
    """kube-state-metrics per pod: limits, requests, restarts, info and labels."""
    labels = spec.labels
    limits = (("cpu", "core", spec.cpu_limit_cores), ("memory", "byte", spec.memory_limit_bytes))
    requests = (("cpu", "core", spec.cpu_request_cores), ("memory", "byte", spec.memory_request_bytes))
    info = {
        "namespace": spec.namespace,
        "pod": spec.pod,
        "node": spec.node,
        "created_by_kind": "ReplicaSet",
        "created_by_name": spec.replicaset,
    }
    for t in timeline.timestamps:
        for resource, unit, value in limits:
            sink.add(
                "kube_pod_container_resource_limits", {**labels, "resource": resource, "unit": unit}, t, value
            )
        for resource, unit, value in requests:
            sink.add(
                "kube_pod_container_resource_requests",
                {**labels, "resource": resource, "unit": unit},
                t,
                value,
            )
        count = timeline.restarts_at(t) if spec.deployment == CRASHY_DEPLOYMENT else 0
        sink.add("kube_pod_container_status_restarts_total", labels, t, count)
        sink.add("kube_pod_info", info, t, 1)
        sink.add("kube_pod_labels", pod_labels(spec), t, 1)


def _write_deployments(sink: _Sink, timeline: Timeline) -> None:
    """kube-state-metrics per deployment: desired replicas, and none available while crashy is down."""
    for namespace, deployment, replicas in DEPLOYMENTS:
        labels = {"namespace": namespace, "deployment": deployment}
        for t in timeline.timestamps:
            down = deployment == CRASHY_DEPLOYMENT and timeline.down(t)
            sink.add("kube_deployment_spec_replicas", labels, t, replicas)
            sink.add("kube_deployment_status_replicas_available", labels, t, 0 if down else replicas)


def _write_node(
    sink: _Sink,
    rng: random.Random,
    timeline: Timeline,
    node_index: int,
    node: str,
    usage: Mapping[str, _PodUsage],
) -> None:
    """node-exporter (CPU counters from its pods' usage, memory, a filesystem that fills on node-a) and the
    node's allocatable."""
    node_labels = {"instance": f"{node}:9100", "node": node}
    on_node = [usage[p.pod] for p in PODS if p.node == node]
    counters = {
        (cpu, mode): round(rng.uniform(1e5, 1e6) if mode == "idle" else rng.uniform(1e4, 1e5), 2)
        for cpu in range(NODE_CPUS)
        for mode in NODE_CPU_MODES
    }
    fs_avail_start = (40 if node_index == 0 else 70) * GiB
    fs_drop = (2 if node_index == 0 else 0) * GiB
    fs_labels = {"mountpoint": "/", **node_labels}
    step_s = timeline.step_s
    for i, t in enumerate(timeline.timestamps):
        if i:
            busy = 0.15 + sum(p.cores[i] for p in on_node) + noise(rng, 0.01, 0.03)
            for core, share in ((0, 0.55), (1, 0.45)):
                cpu_busy_s = min(1.0, busy * share) * step_s
                user_s = cpu_busy_s * 0.7
                counters[(core, "user")] += user_s
                counters[(core, "system")] += cpu_busy_s - user_s
                counters[(core, "idle")] += step_s - cpu_busy_s
        for (core, mode), value in counters.items():
            sink.add("node_cpu_seconds_total", {"cpu": str(core), "mode": mode, **node_labels}, t, value)
        used = 1536 * MiB + sum(p.memory[i] for p in on_node) + round(noise(rng, 16 * MiB, 48 * MiB))
        sink.add("node_memory_MemTotal_bytes", node_labels, t, NODE_MEMORY_TOTAL_BYTES)
        sink.add("node_memory_MemAvailable_bytes", node_labels, t, NODE_MEMORY_TOTAL_BYTES - used)
        avail = fs_avail_start - round(timeline.progress(i) * fs_drop) + round(noise(rng, 8 * MiB, 24 * MiB))
        sink.add("node_filesystem_size_bytes", fs_labels, t, NODE_FILESYSTEM_SIZE_BYTES)
        sink.add("node_filesystem_avail_bytes", fs_labels, t, avail)
    for resource, unit, value in (
        ("cpu", "core", NODE_ALLOCATABLE_CPU_CORES),
        ("memory", "byte", NODE_ALLOCATABLE_MEMORY_BYTES),
    ):
        for t in timeline.timestamps:
            sink.add(
                "kube_node_status_allocatable", {"node": node, "resource": resource, "unit": unit}, t, value
            )
