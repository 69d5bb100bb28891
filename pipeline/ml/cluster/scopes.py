"""What is in the cluster (pods, deployments, namespaces, nodes over time), which pods are normal when
(:data:`RULES`), and each scope's 45-feature vectors as the enrich stage computes them."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.domain.features import LOOKBACK_S, STEP_S, Scope, base_queries, compute, node_lookup_query
from pipeline.domain.names import literal_pattern, promql_regex
from pipeline.ml.cluster.history import History, Samples

RESTART_WINDOW = "15m"  # the vector's look-back plus its 5-minute rates
THROTTLED_FRACTION = 0.25
GROWTH_PER_HOUR = 0.10
GROWTH_WINDOW = "30m"
RULES = {
    "restarts": f"no container restart in the last {RESTART_WINDOW}",
    "throttling": f"at most {THROTTLED_FRACTION:.0%} of CFS periods throttled over the last {RESTART_WINDOW}",
    "memory": f"working set growing by at most {GROWTH_PER_HOUR:.0%} of itself per hour over {GROWTH_WINDOW}",
}


# ----------------------------------------------------------------------------- what is in the cluster
@dataclass(frozen=True)
class ClusterScope:
    kind: str
    name: str
    scope: Scope
    members: Callable[[float], set[tuple[str, str]]]  # the (namespace, pod)s it holds at a time


@dataclass
class Inventory:
    """Which pods run where at each evaluation time, and the deployments seen."""

    pods_at: dict[float, dict[tuple[str, str], str]] = field(default_factory=dict)  # t -> (ns, pod) -> node
    deployments: set[tuple[str, str]] = field(default_factory=set)

    def pods(self) -> set[tuple[str, str]]:
        return {p for at in self.pods_at.values() for p in at}

    def scopes(self, whole_cluster: bool) -> list[ClusterScope]:
        pods = sorted(self.pods())
        out = [
            ClusterScope("pod", f"{ns}/{pod}", Scope(namespace=ns, pod=pod), self._only({(ns, pod)}))
            for ns, pod in pods
        ]
        for ns, deployment in sorted(self.deployments):
            pattern = re.compile(literal_pattern(deployment) + "-[a-z0-9]+-[a-z0-9]+")
            members = {(n, p) for n, p in pods if n == ns and pattern.fullmatch(p)}
            if members:
                scope = Scope(namespace=ns, deployment=deployment)
                out.append(ClusterScope("deployment", f"{ns}/{deployment}", scope, self._only(members)))
        for ns in sorted({ns for ns, _ in pods}):
            out.append(
                ClusterScope(
                    "namespace", ns, Scope(namespace=ns), self._only({p for p in pods if p[0] == ns})
                )
            )
        if whole_cluster:
            for node in sorted({node for at in self.pods_at.values() for node in at.values() if node}):
                out.append(ClusterScope("node", node, Scope(node=node), self._on(node)))
            out.append(ClusterScope("cluster", "cluster", Scope(), lambda t: set(self.pods_at.get(t, {}))))
        return out

    def _only(self, pods: set[tuple[str, str]]) -> Callable[[float], set[tuple[str, str]]]:
        return lambda t: pods & set(self.pods_at.get(t, {}))

    def _on(self, node: str) -> Callable[[float], set[tuple[str, str]]]:
        return lambda t: {p for p, n in self.pods_at.get(t, {}).items() if n == node}


def _selector(namespaces: Sequence[str]) -> str:
    if not namespaces:
        return ""
    return f"namespace=~{promql_regex('|'.join(literal_pattern(n) for n in namespaces))}"


def _by_pod(series: Iterable[tuple[dict[str, str], Samples]]) -> dict[tuple[str, str], dict[float, float]]:
    return {
        (labels.get("namespace", ""), labels.get("pod", "")): dict(samples)
        for labels, samples in series
        if labels.get("pod")
    }


def inventory(history: History, times: list[float], every_s: int, namespaces: Sequence[str]) -> Inventory:
    sel = _selector(namespaces)
    inv = Inventory()
    info = history.range(
        f"max by (namespace, pod, node) (kube_pod_info{{{sel}}})", times[0], times[-1], every_s
    )
    for labels, samples in info:
        key = (labels.get("namespace", ""), labels.get("pod", ""))
        if not key[1]:
            continue
        for t, _ in samples:
            inv.pods_at.setdefault(t, {})[key] = labels.get("node", "")
    replicas = history.range(
        f"max by (namespace, deployment) (kube_deployment_spec_replicas{{{sel}}})",
        times[0],
        times[-1],
        every_s,
    )
    inv.deployments = {(lab["namespace"], lab["deployment"]) for lab, _ in replicas if lab.get("deployment")}
    return inv


def abnormal_pods(
    history: History, inv: Inventory, times: list[float], every_s: int, namespaces: Sequence[str]
) -> dict[float, set[tuple[str, str]]]:
    """Per evaluation time, the pods that break a rule of :data:`RULES` or that kube-state-metrics does not
    show with a restart count (unknown is not normal)."""
    sel = _selector(namespaces)
    containers = f'container!=""{"," + sel if sel else ""}'
    by = "sum by (namespace, pod)"
    restarts = _by_pod(
        history.range(
            f"{by} (increase(kube_pod_container_status_restarts_total{{{sel}}}[{RESTART_WINDOW}]))",
            times[0],
            times[-1],
            every_s,
        )
    )
    throttled = _by_pod(
        history.range(
            f"max_over_time(({by} (rate(container_cpu_cfs_throttled_periods_total{{{containers}}}[5m])) / "
            f"{by} (rate(container_cpu_cfs_periods_total{{{containers}}}[5m])))[{RESTART_WINDOW}:1m])",
            times[0],
            times[-1],
            every_s,
        )
    )
    working_set = f"{by} (container_memory_working_set_bytes{{{containers}}})"
    growth = _by_pod(
        history.range(
            f"deriv(({working_set})[{GROWTH_WINDOW}:1m]) * 3600 / avg_over_time(({working_set})[{GROWTH_WINDOW}:1m])",
            times[0],
            times[-1],
            every_s,
        )
    )
    out: dict[float, set[tuple[str, str]]] = {}
    for t in times:
        bad = set()
        for pod in inv.pods_at.get(t, {}):
            count = restarts.get(pod, {}).get(t)
            if count is None or not math.isfinite(count) or count > 0:
                bad.add(pod)
            elif throttled.get(pod, {}).get(t, 0.0) > THROTTLED_FRACTION:
                bad.add(pod)
            elif growth.get(pod, {}).get(t, 0.0) > GROWTH_PER_HOUR:
                bad.add(pod)
        out[t] = bad
    return out


# ----------------------------------------------------------------------------- the vectors
def scope_vectors(
    history: History, scope: Scope, times: list[float], every_s: int
) -> list[list[float | None]]:
    """The 45 features of ``scope`` at each of ``times``, as ``FeatureCollector.collect`` computes them."""
    span = (times[0] - LOOKBACK_S, times[-1])
    node_metrics = ("node_cpu_utilization", "node_memory_utilization")
    nodes_at: dict[float, tuple[str, ...] | None] = dict.fromkeys(times)
    lookup = node_lookup_query(scope)
    if lookup is not None:
        found: dict[float, set[str]] = {t: set() for t in times}
        for labels, samples in history.range(lookup, times[0], times[-1], every_s):
            for t, _ in samples:
                if t in found and labels.get("node"):
                    found[t].add(labels["node"])
        nodes_at = {t: tuple(sorted(found[t])) for t in times}
    pod_exprs = {m: e for m, e in base_queries(scope, None).items() if m not in node_metrics}
    results: dict[str, Samples | str] = {
        m: _single(history.range(e, *span, STEP_S)) for m, e in pod_exprs.items()
    }
    groups: dict[tuple[str, ...] | None, list[float]] = {}
    for t in times:
        groups.setdefault(nodes_at[t], []).append(t)
    node_results: dict[tuple[str, ...] | None, dict[str, Samples | str]] = {}
    for nodes, at in groups.items():
        if nodes == ():  # the pods in scope are not known to kube-state-metrics at that time
            node_results[nodes] = dict.fromkeys(node_metrics, "no node found for the pods in scope")
            continue
        exprs = base_queries(scope, None if nodes is None else list(nodes))
        node_results[nodes] = {
            m: _single(history.range(exprs[m], at[0] - LOOKBACK_S, at[-1], STEP_S)) for m in node_metrics
        }
    vectors = []
    for t in times:
        inputs = {m: _window(r, t) for m, r in {**results, **node_results[nodes_at[t]]}.items()}
        vectors.append(compute(t, inputs).values)
    return vectors


def _single(series: list[tuple[dict[str, str], Samples]]) -> Samples | str:
    if len(series) > 1:
        return f"query returned {len(series)} series where one was expected"
    return series[0][1] if series else []


def _window(result: Samples | str, at: float) -> Samples | str:
    if isinstance(result, str):
        return result
    keys = [t for t, _ in result]
    return result[bisect.bisect_left(keys, at - LOOKBACK_S - 1) : bisect.bisect_right(keys, at + 1)]
