"""R17 `GET /api/v1/capacity/namespace/{namespace}` and R18 `GET /api/v1/capacity/cluster`."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.adapters.prometheus import PrometheusClient, Series
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
from pipeline.gateway.analysis.trends import fetch_outlook, outlook_json, read_state, state_expr


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


