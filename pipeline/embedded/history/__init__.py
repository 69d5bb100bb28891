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

Modules: ``cluster`` (the nodes, pods, deployments and metric families), ``scenarios`` (one usage generator
per scenario and the crash schedule), ``generate`` (the series written into a sample sink), ``series``
(:class:`History` and its queries), ``openmetrics`` (the text for promtool).
"""

from __future__ import annotations

from pipeline.embedded.history.cluster import (
    CART_CPU_CORES,
    CART_DEPLOYMENT,
    CART_MEMORY_BYTES,
    CART_NAMESPACE,
    CART_PODS,
    CFS_PERIOD_S,
    CRASHY_DEPLOYMENT,
    CRASHY_DOWN_S,
    CRASHY_NAMESPACE,
    CRASHY_POD,
    CRASHY_RESTART_INTERVAL_S,
    CRASHY_RESTARTS,
    DEFAULT_DURATION_S,
    DEFAULT_SEED,
    DEFAULT_STEP_S,
    DEPLOYMENTS,
    FAMILIES,
    HEALTHY_THROTTLED_CPU_CORES,
    LEAKY_DEPLOYMENT,
    LEAKY_MEMORY_END_BYTES,
    LEAKY_MEMORY_LIMIT_BYTES,
    LEAKY_MEMORY_START_BYTES,
    LEAKY_NAMESPACE,
    LEAKY_POD,
    LOOKBACK_DELTA_S,
    NAMESPACES,
    NODE_ALLOCATABLE_CPU_CORES,
    NODE_ALLOCATABLE_MEMORY_BYTES,
    NODE_CPU_MODES,
    NODE_CPUS,
    NODE_FILESYSTEM_SIZE_BYTES,
    NODE_MEMORY_TOTAL_BYTES,
    NODES,
    PODS,
    SCENARIOS,
    THROTTLED_CPU_LIMIT_CORES,
    THROTTLED_DEPLOYMENT,
    THROTTLED_FRACTION,
    THROTTLED_NAMESPACE,
    THROTTLED_POD,
    GiB,
    MiB,
    PodSpec,
    Sample,
    SeriesKey,
)
from pipeline.embedded.history.generate import generate_history
from pipeline.embedded.history.openmetrics import render_openmetrics
from pipeline.embedded.history.series import History, aligned_now, series_key

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
