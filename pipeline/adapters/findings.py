"""The per-pod findings of the analysis rules for a namespace (or the cluster), from Prometheus.

Two queries: each pod's memory working set / limit over the range (the memory-leak rule's input), and,
at the end of it, one `combined` instant query with each pod's container restarts over the range (the
crash-loop rule's) and its throttled CFS periods / periods over 5 minutes (the throttling rule's). The
rules themselves are `pipeline.domain.analysis`'s; these are the expressions
`POST /api/v1/anomalies/analyze` gives them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.adapters.prometheus import PrometheusClient, Series
from pipeline.domain import analysis
from pipeline.domain.features import Scope, combined, split_parts

_BY_POD = "sum by (namespace, pod)"
_CONTAINERS = 'container!=""'
_MEMORY = 'resource="memory"'


def _sel(*matchers: str) -> str:
    return "{" + ",".join(matchers) + "}" if matchers else ""


def memory_ratio_query(pods: tuple[str, ...]) -> str:
    """Each pod's working set as a fraction of its memory limit (pods without a limit have no series)."""
    return (
        f"{_BY_POD} (container_memory_working_set_bytes{_sel(_CONTAINERS, *pods)}) / "
        f"{_BY_POD} (kube_pod_container_resource_limits{_sel(_MEMORY, *pods)})"
    )


def instant_queries(pods: tuple[str, ...], range_label: str) -> dict[str, str]:
    """Each pod's restarts over the range and its CPU throttled fraction over the last 5 minutes."""
    containers = _sel(_CONTAINERS, *pods)
    return {
        "restarts": f"{_BY_POD} (increase(kube_pod_container_status_restarts_total{_sel(*pods)}[{range_label}]))",
        "throttle": (
            f"{_BY_POD} (rate(container_cpu_cfs_throttled_periods_total{containers}[5m])) / "
            f"{_BY_POD} (rate(container_cpu_cfs_periods_total{containers}[5m]))"
        ),
    }


class NamespaceFindings:
    """`await findings.collect(namespace, "24h", now)`: memory leaks, crash loops and throttled pods."""

    def __init__(self, prometheus: PrometheusClient) -> None:
        self.prometheus = prometheus

    async def collect(self, namespace: str | None, range_label: str, at: float) -> list[analysis.Finding]:
        """The findings over `range_label` (a key of `analysis.TIME_RANGES`) ending at `at`, strongest
        first; raises the client's `PrometheusError` when a query fails."""
        pods = tuple(Scope(namespace=namespace).pod_matchers())
        range_s = analysis.TIME_RANGES[range_label]
        ratios = await self.prometheus.query_range(
            memory_ratio_query(pods), at - range_s, at, analysis.baseline_step(range_s)
        )
        instants = instant_queries(pods, range_label)
        points = _parts(instants, await self.prometheus.query(combined(instants), at))
        found = [analysis.memory_leak(*_pod(s), s.samples) for s in ratios]
        found += [analysis.crash_loop(*_pod(s), s.last, range_label) for s in points["restarts"] if s.samples]
        found += [analysis.throttling(*_pod(s), s.last) for s in points["throttle"] if s.samples]
        return sorted(
            (f for f in found if f is not None),
            key=lambda f: (-f.anomaly_score, f.namespace, f.pod, f.metric),
        )


def _parts(keys: Mapping[str, str], series: list[Series]) -> dict[str, list[Series]]:
    split = split_parts(list(keys), [(s.labels, s) for s in series])
    return {key: [Series(labels, s.samples) for labels, s in found] for key, found in split.items()}


def _pod(series: Series) -> tuple[str, str]:
    return series.labels.get("namespace", ""), series.labels.get("pod", "")
