"""The generated cluster: its nodes, pods, deployments, scenario constants and metric families."""

from __future__ import annotations

from dataclasses import dataclass

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
