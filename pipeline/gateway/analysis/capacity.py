"""R17 `GET /api/v1/capacity/namespace/{namespace}` and R18 `GET /api/v1/capacity/cluster`."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient, Series
from pipeline.api.contract import Body, maybe_absent
from pipeline.domain import capacity as cap
from pipeline.gateway.analysis.formatting import (
    cpu_amount,
    drop_none,
    iso,
    memory_amount,
    millicores,
    percent_of,
    rounded,
)
from pipeline.gateway.analysis.params import Namespaces
from pipeline.gateway.analysis.queries import (
    CONTAINERS,
    SYSTEM_NAMESPACE_PREFIXES,
    finite_last,
    gather,
    label_eq,
    pod_count_expr,
    tagged,
)
from pipeline.gateway.analysis.trends import (
    CapacityForecast,
    fetch_outlook,
    outlook_json,
    read_state,
    state_expr,
)

# ------------------------------------------------------------------------------------------ the answers
Health = Literal["healthy", "degraded", "unknown"]


class CpuUsed(Body):
    """CPU in use (`formatting.cpu_amount`)."""

    used: str = Field(description="millicores, e.g. `253m`")
    used_numeric: float = Field(description="cores")
    percent: float | None = Field(description="of the quota (a namespace) or the allocatable CPU (the cluster); "
                                              "null without one")


class MemoryUsed(Body):
    """Memory in use: working-set bytes (`formatting.memory_amount`)."""

    used: str = Field(description="e.g. `1.5Gi`")
    used_bytes: int
    percent: float | None = Field(description="of the quota (a namespace) or the allocatable memory (the "
                                              "cluster); null without one")


class CpuAvailable(Body):
    """CPU left under the quota."""

    available: str = Field(description="millicores")
    available_numeric: float = Field(description="cores")
    percent: float = Field(description="of the quota")


class MemoryAvailable(Body):
    """Memory left under the quota."""

    available: str
    available_bytes: int
    percent: float = Field(description="of the quota")


class CpuQuota(Body):
    limit: str = Field(description="millicores")
    limit_numeric: float = Field(description="cores")


class MemoryQuota(Body):
    limit: str
    limit_bytes: int


class NamespaceQuota(Body):
    """The namespace's ResourceQuotas summed (`limits.cpu`, else `cpu`; the same for memory)."""

    cpu: CpuQuota = maybe_absent("absent without a CPU quota")
    memory: MemoryQuota = maybe_absent("absent without a memory quota")
    pod_count_limit: int = Field(description="0 without a pod quota")
    has_quota: bool


class NamespaceUsage(Body):
    cpu: CpuUsed | None = Field(description="null without CPU usage")
    memory: MemoryUsed | None = Field(description="null without memory usage")
    pod_count: int = Field(description="Running and Pending pods")


class NamespaceAvailable(Body):
    cpu: CpuAvailable = maybe_absent("absent without a CPU quota")
    memory: MemoryAvailable = maybe_absent("absent without a memory quota")
    pod_slots: int = maybe_absent("absent without a pod quota")


class InfrastructureImpact(Body):
    """The control plane's load (`include_infrastructure=true`); a figure Prometheus does not have is null."""

    etcd_object_count: int | None
    etcd_capacity_percent: float | None = Field(description="etcd's database size of its backend quota")
    api_server_qps: float | None
    scheduler_queue_length: int | None
    control_plane_health: Health = Field(description="from etcd's leader gauge")


class NamespaceCapacity(Body):
    """A namespace's quota, usage and what is left, with its trend and forecast (R17)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "namespace": "shop", "timestamp": "2026-12-06T17:53:18Z",
        "quota": {"cpu": {"limit": "4000m", "limit_numeric": 4.0},
                  "memory": {"limit": "8.0Gi", "limit_bytes": 8589934592}, "pod_count_limit": 20, "has_quota": True},
        "current_usage": {"cpu": {"used": "253m", "used_numeric": 0.253069, "percent": 6.33},
                          "memory": {"used": "1.5Gi", "used_bytes": 1627420671, "percent": 18.95}, "pod_count": 3},
        "available": {"cpu": {"available": "3746m", "available_numeric": 3.746931, "percent": 93.67},
                      "memory": {"available": "6.5Gi", "available_bytes": 6962513921, "percent": 81.05},
                      "pod_slots": 17},
        "trending": {"cpu": {"daily_change_percent": -0.21, "weekly_change_percent": -1.47, "direction": "stable",
                             "reason": "no significant change (-0.21 %/day is within the noise)", "r_squared": 0.02,
                             "current": 0.185354, "capacity": 4.0, "capacity_basis": "quota",
                             "utilisation_percent": 4.63, "days_until_85_percent": -1, "days_until_full": -1,
                             "confidence": 0.51, "samples": 180},
                     "days_until_85_percent": -1, "confidence": 0.51, "forecasted_exhaustion_days": -1,
                     "recommended_replica_increase": 0,
                     "replica_advice": "no exhaustion forecast: usage does not grow towards its capacity",
                     "workload_issues": [], "window": "7d"}}]})
    status: Literal["success"]
    namespace: str
    timestamp: datetime
    quota: NamespaceQuota
    current_usage: NamespaceUsage
    available: NamespaceAvailable
    trending: CapacityForecast = maybe_absent("absent with `include_trending=false`")
    infrastructure_impact: InfrastructureImpact = maybe_absent("only with `include_infrastructure=true`")


class ClusterFigures(Body):
    """The worker nodes' capacity (control-plane nodes left out); a figure no metric gives is null or empty."""

    total_cpu: str | None = Field(description="millicores")
    total_memory: str = Field(description="e.g. `16.0Gi`; empty when unknown")
    allocatable_cpu: str | None
    allocatable_memory: str = Field(description="empty when unknown")
    total_cpu_cores: float | None
    total_memory_bytes: int | None
    allocatable_cpu_cores: float | None
    allocatable_memory_bytes: int | None
    worker_nodes: int
    control_plane_nodes_excluded: int


class ClusterUsage(Body):
    cpu: CpuUsed
    memory: MemoryUsed
    pod_count: int


class NamespaceShare(Body):
    """A namespace's usage as a share of the allocatable capacity (system namespaces and `default` left out)."""

    name: str
    cpu_percent: float | None
    memory_percent: float | None
    pod_count: int
    cpu_cores: float | None
    memory_bytes: int | None


class NodeCapacity(Body):
    name: str
    control_plane: bool
    cpu_capacity_cores: float | None
    cpu_allocatable_cores: float | None
    memory_capacity_bytes: float | None
    memory_allocatable_bytes: float | None


class ClusterInfrastructure(Body):
    control_plane_cpu_percent: None = Field(description="not measured: usage on control-plane nodes is not "
                                                        "attributed (the engine always sent 0)")
    control_plane_memory_percent: None = Field(description="not measured")
    etcd_health: Health


class ClusterCapacity(Body):
    """Node capacity, the cluster's usage and each namespace's share of it (R18)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "scope": "cluster", "timestamp": "2026-12-06T17:53:18Z",
        "cluster_capacity": {"total_cpu": "4000m", "total_memory": "16.0Gi", "allocatable_cpu": "3800m",
                             "allocatable_memory": "15.0Gi", "total_cpu_cores": 4.0,
                             "total_memory_bytes": 17179869184, "allocatable_cpu_cores": 3.8,
                             "allocatable_memory_bytes": 16106127360, "worker_nodes": 2,
                             "control_plane_nodes_excluded": 0},
        "cluster_usage": {"cpu": {"used": "669m", "used_numeric": 0.669275, "percent": 17.61},
                          "memory": {"used": "1.9Gi", "used_bytes": 1998379735, "percent": 12.41}, "pod_count": 5},
        "namespaces": [{"name": "payments", "cpu_percent": 10.96, "memory_percent": 2.3, "pod_count": 2,
                        "cpu_cores": 0.416343, "memory_bytes": 370959064}],
        "nodes": [{"name": "node-a", "control_plane": False, "cpu_capacity_cores": 2.0,
                   "cpu_allocatable_cores": 1.9, "memory_capacity_bytes": 8589934592.0,
                   "memory_allocatable_bytes": 8053063680.0}],
        "infrastructure": {"control_plane_cpu_percent": None, "control_plane_memory_percent": None,
                           "etcd_health": "unknown"}}]})
    status: Literal["success"]
    scope: Literal["cluster"]
    timestamp: datetime
    cluster_capacity: ClusterFigures
    cluster_usage: ClusterUsage
    namespaces: list[NamespaceShare]
    nodes: list[NodeCapacity]
    infrastructure: ClusterInfrastructure


def _infrastructure_expr() -> str:
    parts = {
        "etcd_objects": "sum(etcd_object_counts) or sum(apiserver_storage_objects)",
        "etcd_db_fraction": "max(etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes)",
        "api_qps": "sum(rate(apiserver_request_total[5m]))",
        "scheduler_pending": "sum(scheduler_pending_pods)",
        "etcd_with_leader": "min(etcd_server_has_leader)",
    }
    return " or ".join(tagged(f"({expr})", "measure", name) for name, expr in parts.items())


def _infrastructure(series: list[Series]) -> dict[str, Any]:
    values = {s.labels.get("measure", ""): finite_last(s) for s in series}
    leader = values.get("etcd_with_leader")
    fraction = values.get("etcd_db_fraction")
    objects = values.get("etcd_objects")
    pending = values.get("scheduler_pending")
    return {
        "etcd_object_count": int(objects) if objects is not None else None,
        # etcd's limit is its backend quota in bytes (not an object count): database size / quota.
        "etcd_capacity_percent": rounded(fraction * 100, 2) if fraction is not None else None,
        "api_server_qps": rounded(values.get("api_qps"), 2),
        "scheduler_queue_length": int(pending) if pending is not None else None,
        "control_plane_health": "unknown" if leader is None else "healthy" if leader >= 1 else "degraded",
    }


async def namespace_report(
    prom: PrometheusClient, namespace: str, trending: bool, infrastructure: bool, window: str
) -> dict[str, Any]:
    now = time.time()
    calls: list[Awaitable[Any]] = [
        fetch_outlook(prom, Namespaces(namespace), window, now)
        if trending
        else prom.query(state_expr(label_eq("namespace", namespace), True), now)
    ]
    if infrastructure:
        calls.append(prom.query(_infrastructure_expr(), now))
    results = await gather(*calls)
    if trending:
        state, outlook, bases = results[0]
    else:
        state, outlook, bases = read_state(results[0]), None, {}
    quota_cpu = state.quota.get("limits.cpu") or state.quota.get("cpu")
    quota_mem = state.quota.get("limits.memory") or state.quota.get("memory")
    quota_pods = state.quota.get("pods")
    used_cpu, used_mem = state.usage.get("cpu"), state.usage.get("memory")

    def available(used: float | None, limit: float | None) -> float | None:
        return max(0.0, limit - (used or 0.0)) if limit else None

    free_cpu, free_mem = available(used_cpu, quota_cpu), available(used_mem, quota_mem)
    body: dict[str, Any] = {
        "status": "success",
        "namespace": namespace,
        "timestamp": iso(datetime.fromtimestamp(now, UTC)),
        "quota": drop_none(
            {
                "cpu": {"limit": millicores(quota_cpu), "limit_numeric": quota_cpu} if quota_cpu else None,
                "memory": {"limit": cap.format_bytes(quota_mem), "limit_bytes": int(quota_mem)}
                if quota_mem
                else None,
                "pod_count_limit": int(quota_pods) if quota_pods else 0,
                "has_quota": bool(state.quota),
            }
        ),
        "current_usage": {
            "cpu": cpu_amount("used", used_cpu, quota_cpu),
            "memory": memory_amount("used", used_mem, quota_mem),
            "pod_count": state.pods,
        },
        "available": drop_none(
            {
                "cpu": cpu_amount("available", free_cpu, quota_cpu),
                "memory": memory_amount("available", free_mem, quota_mem),
                "pod_slots": max(0, int(quota_pods) - state.pods) if quota_pods else None,
            }
        ),
    }
    if outlook is not None:
        body["trending"] = outlook_json(outlook, bases, window)
    if infrastructure:
        body["infrastructure_impact"] = _infrastructure(results[1])
    return body


# ------------------------------------------------------------------------------------------ R18 cluster
def _nodes_expr() -> str:
    parts = [
        tagged('kube_node_status_allocatable{resource=~"cpu|memory"}', "kind", "allocatable"),
        tagged('kube_node_status_capacity{resource=~"cpu|memory"}', "kind", "capacity"),
        # node-exporter, where kube-state-metrics has no capacity: CPUs and MemTotal per node.
        tagged(
            tagged('count by (node) (node_cpu_seconds_total{mode="idle"})', "resource", "cpu"),
            "kind",
            "hardware",
        ),
        tagged(tagged("max by (node) (node_memory_MemTotal_bytes)", "resource", "memory"), "kind", "hardware"),
        tagged('max by (node) (kube_node_role{role=~"master|control-plane"})', "kind", "control_plane"),
        tagged("min(etcd_server_has_leader)", "kind", "etcd"),
        tagged(pod_count_expr(""), "kind", "pods"),
    ]
    return " or ".join(parts)


def _namespaces_expr() -> str:
    parts = [
        tagged(
            f"sum by (namespace) (rate(container_cpu_usage_seconds_total{{{CONTAINERS}}}[5m]))",
            "kind",
            "cpu",
        ),
        tagged(f"sum by (namespace) (container_memory_working_set_bytes{{{CONTAINERS}}})", "kind", "memory"),
        tagged(pod_count_expr("", by="namespace"), "kind", "pods"),
    ]
    return " or ".join(parts)


@dataclass(frozen=True, slots=True)
class _Nodes:
    """The nodes' figures by node (`<kind>_<resource>`), the control-plane nodes, etcd's leader gauge, pods."""

    nodes: dict[str, dict[str, float]]
    control_plane: set[str]
    etcd: float | None
    pods: int

    @property
    def workers(self) -> dict[str, dict[str, float]]:
        return {n: v for n, v in self.nodes.items() if n not in self.control_plane}

    def total(self, key: str, fallback: str | None = None) -> float | None:
        """A figure summed over the worker nodes (`fallback` where a node lacks `key`); None if no node has it."""
        values = [v.get(key, v.get(fallback or "")) for v in self.workers.values()]
        known = [v for v in values if v is not None]
        return math.fsum(known) if known else None


def _read_nodes(series: list[Series]) -> _Nodes:
    nodes: dict[str, dict[str, float]] = defaultdict(dict)
    control_plane: set[str] = set()
    etcd, pods = None, 0
    for s in series:
        kind, value = s.labels.get("kind"), finite_last(s)
        if value is None:
            continue
        if kind == "control_plane":
            control_plane.add(s.labels.get("node", ""))
        elif kind == "etcd":
            etcd = value
        elif kind == "pods":
            pods = int(value)
        elif s.labels.get("node"):
            nodes[s.labels["node"]][f"{kind}_{s.labels.get('resource')}"] = value
    return _Nodes(dict(nodes), control_plane, etcd, pods)


def _per_namespace(series: list[Series]) -> dict[str, dict[str, float]]:
    """Each namespace's usage (`cpu`, `memory`, `pods`)."""
    per_ns: dict[str, dict[str, float]] = defaultdict(dict)
    for s in series:
        value = finite_last(s)
        if value is not None and s.labels.get("namespace"):
            per_ns[s.labels["namespace"]][s.labels.get("kind", "")] = value
    return per_ns


def _namespace_summaries(
    per_ns: Mapping[str, Mapping[str, float]], alloc_cpu: float | None, alloc_mem: float | None
) -> list[dict[str, Any]]:
    """The engine's per-namespace rows, system namespaces and `default` left out."""
    return [
        {
            "name": name,
            "cpu_percent": percent_of(v.get("cpu", 0.0), alloc_cpu),
            "memory_percent": percent_of(v.get("memory", 0.0), alloc_mem),
            "pod_count": int(v.get("pods", 0)),
            "cpu_cores": rounded(v.get("cpu"), 6),
            "memory_bytes": int(v["memory"]) if "memory" in v else None,
        }
        for name, v in sorted(per_ns.items())
        if name != "default" and not name.startswith(SYSTEM_NAMESPACE_PREFIXES)
    ]


async def cluster_report(prom: PrometheusClient) -> dict[str, Any]:
    """R18's answer: worker-node capacity, the cluster's usage, each namespace's share, the nodes."""
    now = time.time()
    node_series, ns_series = await gather(prom.query(_nodes_expr(), now), prom.query(_namespaces_expr(), now))
    found = _read_nodes(node_series)
    nodes, control_plane, etcd, pods, workers = found.nodes, found.control_plane, found.etcd, found.pods, found.workers
    alloc_cpu, alloc_mem = found.total("allocatable_cpu"), found.total("allocatable_memory")
    total_cpu = found.total("capacity_cpu", "hardware_cpu")
    total_mem = found.total("capacity_memory", "hardware_memory")
    per_ns = _per_namespace(ns_series)
    used_cpu = math.fsum(v.get("cpu", 0.0) for v in per_ns.values())
    used_mem = math.fsum(v.get("memory", 0.0) for v in per_ns.values())
    summaries = _namespace_summaries(per_ns, alloc_cpu, alloc_mem)
    return {
        "status": "success",
        "scope": "cluster",
        "timestamp": iso(datetime.fromtimestamp(now, UTC)),
        "cluster_capacity": {
            "total_cpu": millicores(total_cpu),
            "total_memory": cap.format_bytes(total_mem),
            "allocatable_cpu": millicores(alloc_cpu),
            "allocatable_memory": cap.format_bytes(alloc_mem),
            "total_cpu_cores": rounded(total_cpu, 3),
            "total_memory_bytes": int(total_mem) if total_mem is not None else None,
            "allocatable_cpu_cores": rounded(alloc_cpu, 3),
            "allocatable_memory_bytes": int(alloc_mem) if alloc_mem is not None else None,
            "worker_nodes": len(workers),
            "control_plane_nodes_excluded": len(control_plane & set(nodes)),
        },
        "cluster_usage": {
            "cpu": cpu_amount("used", used_cpu, alloc_cpu),
            "memory": memory_amount("used", used_mem, alloc_mem),
            "pod_count": pods,
        },
        "namespaces": summaries,
        "nodes": [
            {
                "name": name,
                "control_plane": name in control_plane,
                "cpu_capacity_cores": rounded(v.get("capacity_cpu", v.get("hardware_cpu")), 3),
                "cpu_allocatable_cores": rounded(v.get("allocatable_cpu"), 3),
                "memory_capacity_bytes": rounded(v.get("capacity_memory", v.get("hardware_memory")), 0),
                "memory_allocatable_bytes": rounded(v.get("allocatable_memory"), 0),
            }
            for name, v in sorted(nodes.items())
        ],
        "infrastructure": {
            # Not measured: usage on control-plane nodes is not attributed (the engine always sent 0).
            "control_plane_cpu_percent": None,
            "control_plane_memory_percent": None,
            "etcd_health": "unknown" if etcd is None else "healthy" if etcd >= 1 else "degraded",
        },
    }


