"""A deterministic, seeded metric history of a small Kubernetes cluster, for a real Prometheus.

:func:`generate_history` returns a :class:`History` holding both the OpenMetrics text that
``promtool tsdb create-blocks-from openmetrics`` imports (see ``pipeline/embedded/prometheus.py``) and the
exact samples as Python data, so tests can compute expected PromQL results independently::

    history = generate_history()                    # ends at "now" rounded down to the step, 3 h at 15 s
    history.samples[("container_memory_working_set_bytes", labels)]   # -> [(ts_seconds, value), ...]
    history.series("container_memory_working_set_bytes", pod=LEAKY_POD)  # the one matching series
    history.instant("kube_pod_container_status_restarts_total", history.end, pod=CRASHY_POD)

The cluster: two nodes (``node-a``, ``node-b``; 2 CPUs, 8 GiB each), namespaces ``shop`` and ``payments``,
four deployments and five pods, with three scenarios in the data:

* ``shop/cart`` — 2 pods, healthy: ~0.2 cores, ~300 MiB of a 1 GiB limit, no restarts;
* ``shop/leaky`` — pod ``leaky-6c9d8-abcde``: working set grows linearly 200 MiB → 950 MiB of 1 GiB;
* ``payments/crashy`` — restarts every 5 min during the last hour (12 restarts), CPU flat (0 cores)
  and the deployment unavailable for 30 s after each restart;
* ``payments/throttled`` — CPU pinned at its 0.5-core limit, ~60 % of CFS periods throttled.

``generate_history(healthy=[...])`` replaces the named scenarios (``leaky``, ``crashy``, ``throttled``) with
healthy behaviour — the same pod, node, limits and labels, so every query sees the same series:

* healthy ``leaky``: working set flat around 200 MiB (its leak's starting point), ~0.05 cores;
* healthy ``crashy``: never restarts (as before its first restart: ~0.3 cores, ~180 MiB, always available);
* healthy ``throttled``: ~0.25 cores of its 0.5-core limit, throttled as rarely as ``cart``.

The reference model (``pipeline.ml``) trains and is evaluated on such histories, where deployments,
namespaces and the cluster are healthy as a whole. The default (``healthy=()``) is the history above,
sample for sample.

Label sets (exactly these labels, values are ``str``):

* node-exporter: ``node_cpu_seconds_total{cpu,mode,instance,node}`` (counter, modes idle/user/system),
  ``node_memory_MemAvailable_bytes``/``node_memory_MemTotal_bytes{instance,node}``,
  ``node_filesystem_avail_bytes``/``node_filesystem_size_bytes{mountpoint="/",instance,node}``;
  ``instance`` is ``"<node>:9100"``.
* kube-state-metrics, nodes: ``kube_node_status_allocatable{node,resource,unit}`` (``cpu``/``core``,
  ``memory``/``byte``).
* cAdvisor, per pod (one container per pod, named like its deployment):
  ``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes``,
  ``container_cpu_cfs_periods_total``, ``container_cpu_cfs_throttled_periods_total``,
  ``container_cpu_cfs_throttled_seconds_total`` — all ``{namespace,pod,container,node}``.
* kube-state-metrics, per pod: ``kube_pod_container_resource_limits`` and
  ``kube_pod_container_resource_requests{namespace,pod,container,node,resource,unit}``,
  ``kube_pod_container_status_restarts_total{namespace,pod,container,node}``,
  ``kube_pod_info{namespace,pod,node,created_by_kind="ReplicaSet",created_by_name="<deployment>-<hash>"}``.
* kube-state-metrics, per deployment: ``kube_deployment_spec_replicas`` and
  ``kube_deployment_status_replicas_available{namespace,deployment}``.

Every series has a sample at every step from ``start`` to ``end`` inclusive. Counters are monotonic (no
resets; a restart does not reset the cAdvisor CPU counter here). Values are written with ``repr()`` and so
round-trip exactly through Prometheus' JSON API (``float(value_string) == generated value``). Timestamps
are whole seconds.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "History",
    "PodSpec",
    "SeriesKey",
    "Sample",
    "generate_history",
    "render_openmetrics",
    "aligned_now",
    "series_key",
    "MiB",
    "GiB",
    "DEFAULT_DURATION_S",
    "DEFAULT_STEP_S",
    "DEFAULT_SEED",
    "LOOKBACK_DELTA_S",
    "NODES",
    "NAMESPACES",
    "NODE_CPUS",
    "NODE_CPU_MODES",
    "NODE_MEMORY_TOTAL_BYTES",
    "NODE_FILESYSTEM_SIZE_BYTES",
    "NODE_ALLOCATABLE_CPU_CORES",
    "NODE_ALLOCATABLE_MEMORY_BYTES",
    "CART_NAMESPACE",
    "CART_DEPLOYMENT",
    "CART_PODS",
    "CART_CPU_CORES",
    "CART_MEMORY_BYTES",
    "LEAKY_NAMESPACE",
    "LEAKY_DEPLOYMENT",
    "LEAKY_POD",
    "LEAKY_MEMORY_START_BYTES",
    "LEAKY_MEMORY_END_BYTES",
    "LEAKY_MEMORY_LIMIT_BYTES",
    "CRASHY_NAMESPACE",
    "CRASHY_DEPLOYMENT",
    "CRASHY_POD",
    "CRASHY_RESTART_INTERVAL_S",
    "CRASHY_RESTARTS",
    "CRASHY_DOWN_S",
    "THROTTLED_NAMESPACE",
    "THROTTLED_DEPLOYMENT",
    "THROTTLED_POD",
    "THROTTLED_CPU_LIMIT_CORES",
    "THROTTLED_FRACTION",
    "CFS_PERIOD_S",
    "HEALTHY_THROTTLED_CPU_CORES",
    "SCENARIOS",
    "PODS",
    "DEPLOYMENTS",
    "FAMILIES",
]

MiB = 1024**2
GiB = 1024**3

Labels = frozenset[tuple[str, str]]
SeriesKey = tuple[str, Labels]  # (metric name as queried, e.g. "..._total"; frozenset of label items)
Sample = tuple[float, float]  # (unix seconds, value)

DEFAULT_DURATION_S = 3 * 3600
DEFAULT_STEP_S = 15
DEFAULT_SEED = 1729
LOOKBACK_DELTA_S = 300  # Prometheus' default --query.lookback-delta

# ----------------------------------------------------------------------------- the cluster
NODES = ("node-a", "node-b")
NAMESPACES = ("shop", "payments")
NODE_CPUS = 2
NODE_CPU_MODES = ("idle", "user", "system")
NODE_MEMORY_TOTAL_BYTES = 8 * GiB
NODE_FILESYSTEM_SIZE_BYTES = 100 * GiB
NODE_ALLOCATABLE_CPU_CORES = 1.9
NODE_ALLOCATABLE_MEMORY_BYTES = 7 * GiB + 512 * MiB
CFS_PERIOD_S = 0.1  # the kernel's default cpu.cfs_period_us = 100 ms


@dataclass(frozen=True)
class PodSpec:
    namespace: str
    deployment: str
    pod: str
    node: str
    cpu_request_cores: float
    cpu_limit_cores: float
    memory_request_bytes: int
    memory_limit_bytes: int

    @property
    def container(self) -> str:
        return self.deployment

    @property
    def replicaset(self) -> str:
        return self.pod.rsplit("-", 1)[0]

    @property
    def labels(self) -> dict[str, str]:
        """The cAdvisor/kube-state-metrics container labels: namespace, pod, container, node."""
        return {"namespace": self.namespace, "pod": self.pod, "container": self.container, "node": self.node}


def pod_labels(spec: PodSpec) -> dict[str, str]:
    """kube_pod_labels: the pod's Kubernetes labels as `label_<name>` (app = its deployment, tier by namespace)."""
    tier = "frontend" if spec.namespace == "shop" else "backend"
    return {"namespace": spec.namespace, "pod": spec.pod, "label_app": spec.deployment, "label_tier": tier}


CART_NAMESPACE = "shop"
CART_DEPLOYMENT = "cart"
CART_PODS = ("cart-5c7d9f8b6-x2k8p", "cart-5c7d9f8b6-q9w4z")
CART_CPU_CORES = 0.2
CART_MEMORY_BYTES = 300 * MiB

LEAKY_NAMESPACE = "shop"
LEAKY_DEPLOYMENT = "leaky"
LEAKY_POD = "leaky-6c9d8-abcde"
LEAKY_MEMORY_START_BYTES = 200 * MiB
LEAKY_MEMORY_END_BYTES = 950 * MiB
LEAKY_MEMORY_LIMIT_BYTES = 1 * GiB

CRASHY_NAMESPACE = "payments"
CRASHY_DEPLOYMENT = "crashy"
CRASHY_POD = "crashy-7f9c6d5b8-m4n7q"
CRASHY_RESTART_INTERVAL_S = 300
CRASHY_RESTARTS = 12  # all within the last hour: at end-3420 s, end-3120 s, ..., end-120 s
CRASHY_DOWN_S = 30  # after each restart: CPU counter flat, deployment 0 available, small working set
_CRASHY_LAST_RESTART_BEFORE_END_S = 120

THROTTLED_NAMESPACE = "payments"
THROTTLED_DEPLOYMENT = "throttled"
THROTTLED_POD = "throttled-84c5d7f96-p2r5s"
THROTTLED_CPU_LIMIT_CORES = 0.5
THROTTLED_FRACTION = 0.6  # throttled periods / periods
HEALTHY_THROTTLED_CPU_CORES = 0.25  # generate_history(healthy=["throttled"]): half its limit

# The deployments whose behaviour is a scenario; generate_history(healthy=...) names some of them.
SCENARIOS: tuple[str, ...] = (LEAKY_DEPLOYMENT, CRASHY_DEPLOYMENT, THROTTLED_DEPLOYMENT)

PODS: tuple[PodSpec, ...] = (
    PodSpec(CART_NAMESPACE, CART_DEPLOYMENT, CART_PODS[0], "node-a", 0.25, 1.0, 256 * MiB, 1 * GiB),
    PodSpec(CART_NAMESPACE, CART_DEPLOYMENT, CART_PODS[1], "node-b", 0.25, 1.0, 256 * MiB, 1 * GiB),
    PodSpec(
        LEAKY_NAMESPACE, LEAKY_DEPLOYMENT, LEAKY_POD, "node-a", 0.1, 0.5, 256 * MiB, LEAKY_MEMORY_LIMIT_BYTES
    ),
    PodSpec(CRASHY_NAMESPACE, CRASHY_DEPLOYMENT, CRASHY_POD, "node-b", 0.25, 0.5, 256 * MiB, 512 * MiB),
    PodSpec(
        THROTTLED_NAMESPACE,
        THROTTLED_DEPLOYMENT,
        THROTTLED_POD,
        "node-b",
        0.25,
        THROTTLED_CPU_LIMIT_CORES,
        128 * MiB,
        256 * MiB,
    ),
)

# (namespace, deployment, spec replicas)
DEPLOYMENTS: tuple[tuple[str, str, int], ...] = (
    (CART_NAMESPACE, CART_DEPLOYMENT, 2),
    (LEAKY_NAMESPACE, LEAKY_DEPLOYMENT, 1),
    (CRASHY_NAMESPACE, CRASHY_DEPLOYMENT, 1),
    (THROTTLED_NAMESPACE, THROTTLED_DEPLOYMENT, 1),
)

# sample name -> (OpenMetrics family name, type, help). Counter families are declared without "_total".
FAMILIES: dict[str, tuple[str, str, str]] = {
    "node_cpu_seconds_total": ("node_cpu_seconds", "counter", "Seconds the CPUs spent in each mode."),
    "node_memory_MemAvailable_bytes": (
        "node_memory_MemAvailable_bytes",
        "gauge",
        "Memory information field MemAvailable_bytes.",
    ),
    "node_memory_MemTotal_bytes": (
        "node_memory_MemTotal_bytes",
        "gauge",
        "Memory information field MemTotal_bytes.",
    ),
    "node_filesystem_avail_bytes": (
        "node_filesystem_avail_bytes",
        "gauge",
        "Filesystem space available to non-root users in bytes.",
    ),
    "node_filesystem_size_bytes": ("node_filesystem_size_bytes", "gauge", "Filesystem size in bytes."),
    "kube_node_status_allocatable": (
        "kube_node_status_allocatable",
        "gauge",
        "The allocatable for different resources of a node that are available for scheduling.",
    ),
    "container_cpu_usage_seconds_total": (
        "container_cpu_usage_seconds",
        "counter",
        "Cumulative cpu time consumed in seconds.",
    ),
    "container_memory_working_set_bytes": (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
    ),
    "container_cpu_cfs_periods_total": (
        "container_cpu_cfs_periods",
        "counter",
        "Number of elapsed enforcement period intervals.",
    ),
    "container_cpu_cfs_throttled_periods_total": (
        "container_cpu_cfs_throttled_periods",
        "counter",
        "Number of throttled period intervals.",
    ),
    "container_cpu_cfs_throttled_seconds_total": (
        "container_cpu_cfs_throttled_seconds",
        "counter",
        "Total time duration the container has been throttled.",
    ),
    "kube_pod_container_resource_limits": (
        "kube_pod_container_resource_limits",
        "gauge",
        "The number of requested limit resource by a container.",
    ),
    "kube_pod_container_resource_requests": (
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
    ),
    "kube_pod_container_status_restarts_total": (
        "kube_pod_container_status_restarts",
        "counter",
        "The number of container restarts per container.",
    ),
    "kube_pod_info": ("kube_pod_info", "gauge", "Information about pod."),
    "kube_pod_labels": ("kube_pod_labels", "gauge", "Kubernetes labels converted to Prometheus labels."),
    "kube_deployment_spec_replicas": (
        "kube_deployment_spec_replicas",
        "gauge",
        "Number of desired pods for a deployment.",
    ),
    "kube_deployment_status_replicas_available": (
        "kube_deployment_status_replicas_available",
        "gauge",
        "The number of available replicas per deployment.",
    ),
}


def aligned_now(step_s: int = DEFAULT_STEP_S) -> float:
    """The current unix time rounded down to a multiple of ``step_s`` (whole seconds)."""
    now = int(time.time())
    return float(now - now % int(step_s))


def series_key(name: str, **labels: str) -> SeriesKey:
    return name, frozenset((k, str(v)) for k, v in labels.items())


def _matches(key: SeriesKey, name: str, labels: Mapping[str, str]) -> bool:
    if key[0] != name:
        return False
    items = dict(key[1])
    return all(items.get(k, "") == str(v) for k, v in labels.items())


@dataclass(frozen=True)
class History:
    """Generated history. ``samples`` maps ``(metric_name, frozenset(labels.items()))`` to
    ``[(ts_seconds, value), ...]`` ascending; ``openmetrics`` is the same data for promtool."""

    end: float
    duration_s: int
    step_s: int
    seed: int
    samples: dict[SeriesKey, list[Sample]]
    openmetrics: str
    crashy_restart_times: tuple[float, ...]  # empty when crashy is healthy
    generate_s: float  # wall time spent generating samples and rendering the text
    healthy: frozenset[str] = frozenset()  # scenarios replaced by healthy behaviour (see the module doc)

    @property
    def start(self) -> float:
        return self.end - self.duration_s

    @property
    def timestamps(self) -> list[float]:
        return [self.start + i * self.step_s for i in range(self.duration_s // self.step_s + 1)]

    @property
    def sample_count(self) -> int:
        return sum(len(v) for v in self.samples.values())

    def metric_names(self) -> list[str]:
        return sorted({name for name, _ in self.samples})

    def select(self, name: str, **labels: str) -> dict[SeriesKey, list[Sample]]:
        """All series of ``name`` whose labels include ``labels`` (equality matchers only)."""
        return {k: v for k, v in self.samples.items() if _matches(k, name, labels)}

    def series(self, name: str, **labels: str) -> list[Sample]:
        """The samples of the single series of ``name`` matching ``labels``; KeyError unless exactly one."""
        found = self.select(name, **labels)
        if len(found) != 1:
            raise KeyError(
                f"{len(found)} series match {name}{labels}: {sorted(dict(k[1]).items() for k in found)}"
            )
        return next(iter(found.values()))

    def instant(self, name: str, at: float, **labels: str) -> float | None:
        """What a Prometheus instant query of the single matching series returns at ``at``: the last
        sample at or before ``at`` and at most 5 minutes older (Prometheus 2.x's lookback window
        ``[at - 5m, at]`` is closed on both ends), else None."""
        value = None
        for ts, v in self.series(name, **labels):
            if ts > at:
                break
            if ts >= at - LOOKBACK_DELTA_S:
                value = v
        return value

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self.samples)


# ----------------------------------------------------------------------------- generation
class _Builder:
    def __init__(self) -> None:
        self.samples: dict[SeriesKey, list[Sample]] = {}

    def add(self, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        assert name in FAMILIES, name
        key = (name, frozenset((k, str(v)) for k, v in labels.items()))
        self.samples.setdefault(key, []).append((ts, float(value)))


def _noise(rng: random.Random, sigma: float, limit: float) -> float:
    return max(-limit, min(limit, rng.gauss(0.0, sigma)))


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
    step_s = int(step_s)
    duration_s = int(duration_s)
    if step_s <= 0 or duration_s <= 0 or duration_s % step_s:
        raise ValueError(f"duration_s ({duration_s}) must be a positive multiple of step_s ({step_s})")
    healthy = frozenset(healthy)
    unknown = sorted(healthy - set(SCENARIOS))
    if unknown:
        raise ValueError(f"healthy names unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if not LEAKY_MEMORY_START_BYTES <= leak_end_bytes < LEAKY_MEMORY_LIMIT_BYTES:
        raise ValueError(
            f"leak_end_bytes must be in [{LEAKY_MEMORY_START_BYTES}, {LEAKY_MEMORY_LIMIT_BYTES})"
        )
    end = float(math.floor(aligned_now(step_s) if end is None else end))
    start = end - duration_s
    n = duration_s // step_s + 1
    timestamps = [start + i * step_s for i in range(n)]
    rng = random.Random(seed)
    b = _Builder()

    restarts = tuple(
        end - _CRASHY_LAST_RESTART_BEFORE_END_S - (CRASHY_RESTARTS - 1 - k) * CRASHY_RESTART_INTERVAL_S
        for k in range(CRASHY_RESTARTS)
        if CRASHY_DEPLOYMENT not in healthy
    )

    def crashy_restarts_at(t: float) -> int:
        return sum(1 for r in restarts if r <= t)

    def crashy_last_restart(t: float) -> float | None:
        past = [r for r in restarts if r <= t]
        return past[-1] if past else None

    def crashy_down(t: float) -> bool:
        # the interval (t - step, t] overlaps a down period (r, r + CRASHY_DOWN_S]
        return any(r < t and t - step_s < r + CRASHY_DOWN_S for r in restarts)

    # ------------------------------------------------------------- per pod: usage, memory, CFS
    pod_cpu_cores: dict[str, list[float]] = {}  # usage over (t - step, t]
    pod_memory: dict[str, list[float]] = {}
    for spec in PODS:
        cpu: list[float] = []
        mem: list[float] = []
        for i, t in enumerate(timestamps):
            frac = i / (n - 1) if n > 1 else 1.0
            if spec.deployment == CART_DEPLOYMENT:
                cores = CART_CPU_CORES + _noise(rng, 0.01, 0.03)
                ws = CART_MEMORY_BYTES + round(_noise(rng, 4 * MiB, 12 * MiB))
            elif spec.deployment == LEAKY_DEPLOYMENT and LEAKY_DEPLOYMENT in healthy:
                cores = 0.05 + _noise(rng, 0.003, 0.01)
                ws = LEAKY_MEMORY_START_BYTES + round(_noise(rng, 4 * MiB, 12 * MiB))
            elif spec.deployment == LEAKY_DEPLOYMENT:
                cores = 0.05 + _noise(rng, 0.003, 0.01)
                linear = LEAKY_MEMORY_START_BYTES + frac * (leak_end_bytes - LEAKY_MEMORY_START_BYTES)
                ws = round(linear + _noise(rng, 256 * 1024, 1 * MiB))
            elif spec.deployment == CRASHY_DEPLOYMENT:
                last = crashy_last_restart(t)
                if crashy_down(t):
                    cores = 0.0
                else:
                    cores = 0.3 + _noise(rng, 0.015, 0.05)
                if last is None:
                    ws = 180 * MiB + round(_noise(rng, 3 * MiB, 9 * MiB))
                else:  # a fresh container: small working set growing towards the limit until the next crash
                    ws = 40 * MiB + round((t - last) * (400 * MiB / CRASHY_RESTART_INTERVAL_S))
            elif THROTTLED_DEPLOYMENT in healthy:  # throttled, healthy: half its limit
                cores = HEALTHY_THROTTLED_CPU_CORES + _noise(rng, 0.01, 0.03)
                ws = 150 * MiB + round(_noise(rng, 2 * MiB, 6 * MiB))
            else:  # throttled: pinned at the limit
                cores = THROTTLED_CPU_LIMIT_CORES - abs(_noise(rng, 0.002, 0.006))
                ws = 150 * MiB + round(_noise(rng, 2 * MiB, 6 * MiB))
            cpu.append(max(0.0, cores))
            mem.append(float(ws))
        pod_cpu_cores[spec.pod] = cpu
        pod_memory[spec.pod] = mem

    for spec in PODS:
        labels = spec.labels
        pinned = spec.deployment == THROTTLED_DEPLOYMENT and THROTTLED_DEPLOYMENT not in healthy
        periods_per_step = step_s / CFS_PERIOD_S
        active = {CART_DEPLOYMENT: 0.6, LEAKY_DEPLOYMENT: 0.3, CRASHY_DEPLOYMENT: 0.5}.get(
            spec.deployment, 1.0
        )
        cpu_total = round(rng.uniform(500, 5000), 3)
        periods = float(rng.randrange(10_000, 200_000))
        throttled = float(rng.randrange(0, 50)) if not pinned else round(periods * THROTTLED_FRACTION)
        throttled_s = round(throttled * 0.05, 3)
        for i, t in enumerate(timestamps):
            if i:
                cpu_total += pod_cpu_cores[spec.pod][i] * step_s
                if spec.deployment == CRASHY_DEPLOYMENT and crashy_down(t):
                    new_periods = 0
                else:
                    new_periods = round(periods_per_step * active * (1 + _noise(rng, 0.03, 0.08)))
                if pinned:
                    new_throttled = round(new_periods * (THROTTLED_FRACTION + _noise(rng, 0.02, 0.05)))
                    new_throttled_s = new_throttled * (0.05 + _noise(rng, 0.003, 0.01))
                elif spec.deployment in (CART_DEPLOYMENT, THROTTLED_DEPLOYMENT):
                    new_throttled = 1 if rng.random() < 0.05 else 0
                    new_throttled_s = new_throttled * 0.004
                else:
                    new_throttled = 0
                    new_throttled_s = 0.0
                periods += new_periods
                throttled += new_throttled
                throttled_s += new_throttled_s
            b.add("container_cpu_usage_seconds_total", labels, t, cpu_total)
            b.add("container_memory_working_set_bytes", labels, t, pod_memory[spec.pod][i])
            b.add("container_cpu_cfs_periods_total", labels, t, periods)
            b.add("container_cpu_cfs_throttled_periods_total", labels, t, throttled)
            b.add("container_cpu_cfs_throttled_seconds_total", labels, t, throttled_s)

    # ------------------------------------------------------------- kube-state-metrics: pods, deployments
    for spec in PODS:
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
        for t in timestamps:
            for resource, unit, value in limits:
                b.add(
                    "kube_pod_container_resource_limits",
                    {**labels, "resource": resource, "unit": unit},
                    t,
                    value,
                )
            for resource, unit, value in requests:
                b.add(
                    "kube_pod_container_resource_requests",
                    {**labels, "resource": resource, "unit": unit},
                    t,
                    value,
                )
            count = crashy_restarts_at(t) if spec.deployment == CRASHY_DEPLOYMENT else 0
            b.add("kube_pod_container_status_restarts_total", labels, t, count)
            b.add("kube_pod_info", info, t, 1)
            b.add("kube_pod_labels", pod_labels(spec), t, 1)

    for namespace, deployment, replicas in DEPLOYMENTS:
        labels = {"namespace": namespace, "deployment": deployment}
        for t in timestamps:
            available = replicas
            if deployment == CRASHY_DEPLOYMENT and crashy_down(t):
                available = 0
            b.add("kube_deployment_spec_replicas", labels, t, replicas)
            b.add("kube_deployment_status_replicas_available", labels, t, available)

    # ------------------------------------------------------------- nodes
    for node_index, node in enumerate(NODES):
        instance = f"{node}:9100"
        node_labels = {"instance": instance, "node": node}
        on_node = [p for p in PODS if p.node == node]
        counters = {
            (cpu, mode): round(rng.uniform(1e5, 1e6) if mode == "idle" else rng.uniform(1e4, 1e5), 2)
            for cpu in range(NODE_CPUS)
            for mode in NODE_CPU_MODES
        }
        fs_avail_start = (40 if node_index == 0 else 70) * GiB
        fs_drop = (2 if node_index == 0 else 0) * GiB
        for i, t in enumerate(timestamps):
            frac = i / (n - 1) if n > 1 else 1.0
            if i:
                busy = 0.15 + sum(pod_cpu_cores[p.pod][i] for p in on_node) + _noise(rng, 0.01, 0.03)
                for core, share in ((0, 0.55), (1, 0.45)):
                    cpu_busy_s = min(1.0, busy * share) * step_s
                    user_s = cpu_busy_s * 0.7
                    system_s = cpu_busy_s - user_s
                    counters[(core, "user")] += user_s
                    counters[(core, "system")] += system_s
                    counters[(core, "idle")] += step_s - cpu_busy_s
            for (core, mode), value in counters.items():
                b.add("node_cpu_seconds_total", {"cpu": str(core), "mode": mode, **node_labels}, t, value)
            used = (
                1536 * MiB
                + sum(pod_memory[p.pod][i] for p in on_node)
                + round(_noise(rng, 16 * MiB, 48 * MiB))
            )
            b.add("node_memory_MemTotal_bytes", node_labels, t, NODE_MEMORY_TOTAL_BYTES)
            b.add("node_memory_MemAvailable_bytes", node_labels, t, NODE_MEMORY_TOTAL_BYTES - used)
            fs_labels = {"mountpoint": "/", **node_labels}
            avail = fs_avail_start - round(frac * fs_drop) + round(_noise(rng, 8 * MiB, 24 * MiB))
            b.add("node_filesystem_size_bytes", fs_labels, t, NODE_FILESYSTEM_SIZE_BYTES)
            b.add("node_filesystem_avail_bytes", fs_labels, t, avail)
        for resource, unit, value in (
            ("cpu", "core", NODE_ALLOCATABLE_CPU_CORES),
            ("memory", "byte", NODE_ALLOCATABLE_MEMORY_BYTES),
        ):
            for t in timestamps:
                b.add(
                    "kube_node_status_allocatable",
                    {"node": node, "resource": resource, "unit": unit},
                    t,
                    value,
                )

    text = render_openmetrics(b.samples)
    return History(
        end=end,
        duration_s=duration_s,
        step_s=step_s,
        seed=seed,
        samples=b.samples,
        openmetrics=text,
        crashy_restart_times=restarts,
        generate_s=time.perf_counter() - t0,
        healthy=healthy,
    )


# ----------------------------------------------------------------------------- OpenMetrics text
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_ts(ts: float) -> str:
    return str(int(ts)) if float(ts).is_integer() else repr(float(ts))


def render_openmetrics(samples: Mapping[SeriesKey, list[Sample]]) -> str:
    """OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``: one block per metric family
    (``# HELP``/``# TYPE``, counters declared without ``_total``), each series' samples contiguous and
    ascending, values via ``repr()`` (exact round trip), timestamps in seconds, ending with ``# EOF``."""
    by_name: dict[str, list[SeriesKey]] = {}
    for key in samples:
        by_name.setdefault(key[0], []).append(key)
    out: list[str] = []
    for name in sorted(by_name):
        family, kind, help_text = FAMILIES[name]
        out.append(f"# HELP {family} {help_text}\n")
        out.append(f"# TYPE {family} {kind}\n")
        for key in sorted(by_name[name], key=lambda k: sorted(k[1])):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(key[1]))
            prefix = f"{name}{{{label_text}}} " if label_text else f"{name} "
            previous = -math.inf
            for ts, value in samples[key]:
                if ts <= previous:
                    raise ValueError(f"samples of {key} not strictly ascending at {ts}")
                previous = ts
                out.append(f"{prefix}{value!r} {_format_ts(ts)}\n")
    out.append("# EOF\n")
    return "".join(out)
