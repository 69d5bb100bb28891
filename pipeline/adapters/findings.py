"""The per-pod findings of the analysis rules for a namespace (or the cluster), from Prometheus.

Two queries: each pod's memory working set / limit over the range (the memory-leak rule's input), and,
at the end of it, one `combined` instant query with each pod's container restarts over the range (the
crash-loop rule's) and its throttled CFS periods / periods over 5 minutes (the throttling rule's). The
rules and their expressions are `pipeline.domain.analysis`'s (`rule_queries`, `rule_findings`), the same
`POST /api/v1/anomalies/analyze` uses.
"""

from __future__ import annotations

from pipeline.adapters.prometheus import PrometheusClient, split_combined
from pipeline.domain import analysis
from pipeline.domain.features import Scope, combined


class NamespaceFindings:
    """`await findings.collect(namespace, "24h", now)`: memory leaks, crash loops and throttled pods."""

    def __init__(self, prometheus: PrometheusClient) -> None:
        self.prometheus = prometheus

    async def collect(self, namespace: str | None, range_label: str, at: float) -> list[analysis.Finding]:
        """The findings over `range_label` (a key of `analysis.TIME_RANGES`) ending at `at`, strongest
        first; raises the client's `PrometheusError` when a query fails."""
        pods = tuple(Scope(namespace=namespace).pod_matchers())
        range_s = analysis.TIME_RANGES[range_label]
        over_range, at_end = analysis.rule_queries(pods, range_label)
        ratios = await self.prometheus.query_range(
            over_range["memory"], at - range_s, at, analysis.baseline_step(range_s)
        )
        points = split_combined(list(at_end), await self.prometheus.query(combined(at_end), at))
        return analysis.rule_findings(
            {"memory": [(s.labels, s.samples) for s in ratios]},
            {key: [(s.labels, s.samples) for s in found] for key, found in points.items()},
            range_label,
        )
