"""The 45-feature vector of the anomaly-detector model, computed correctly.

Names and order are the engine's (5 base metrics x 9 features, metric-major). Unlike the engine:
* one range query per base metric (evaluated at t-10m, t-9m, ..., t) replaces 7 instant queries, and the
  nine features are computed here from those 11 points, so lags really are the values 1 and 5 minutes ago;
* every multi-series result is aggregated in PromQL on purpose (see `BASE_QUERIES`), never "first series";
* a value that cannot be computed is *missing*, with its reason, never replaced by an invented default;
* nothing non-finite leaves this module.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pipeline.domain.names import is_dns_label, is_dns_subdomain, literal_pattern, promql_regex, promql_string

BASE_METRICS: tuple[str, ...] = (
    "node_cpu_utilization",
    "node_memory_utilization",
    "pod_cpu_usage",
    "pod_memory_usage",
    "container_restart_count",
)
FEATURES: tuple[str, ...] = ("value", "mean_5m", "std_5m", "min_5m", "max_5m", "lag_1", "lag_5", "diff", "pct_change")
FEATURE_NAMES: tuple[str, ...] = tuple(f"{m}_{f}" for m in BASE_METRICS for f in FEATURES)

T = TypeVar("T")

STEP_S = 60  # the grid of the range queries: lags are whole steps back
LOOKBACK_S = 600  # t-10m .. t: enough for lag_5 and the 5-minute window
WINDOW_POINTS = 5  # the 5-minute window (t-5m, t] on a 1-minute grid: t-4m .. t
RATE_RANGE = "5m"

# What each base metric means, and how several series become one number (documented choices).
# `{nodes_only}`/`{nodes}` narrow node metrics by a node matcher; `{on_nodes}` by a join on the nodes that
# run the scoped pods (`... and on(node) kube_pod_info{pods}`), evaluated at every point of the grid.
BASE_QUERIES: dict[str, str] = {
    # Mean utilisation over every CPU of the nodes in scope (the nodes running the scoped pods).
    "node_cpu_utilization": 'avg((1 - rate(node_cpu_seconds_total{{mode="idle"{nodes}}}[{rate}])){on_nodes})',
    # The most memory-pressured node in scope: pressure on one node is what evicts pods.
    "node_memory_utilization": (
        "max((1 - node_memory_MemAvailable_bytes{{{nodes_only}}} / node_memory_MemTotal_bytes{{{nodes_only}}})"
        "{on_nodes})"
    ),
    # Total cores used by the pods in scope (one pod: its usage; a deployment: all its replicas).
    "pod_cpu_usage": 'sum(rate(container_cpu_usage_seconds_total{{container!=""{pods}}}[{rate}]))',
    # The pod closest to its memory limit (working set / limit); pods without a limit drop out.
    "pod_memory_usage": (
        'max(sum by (namespace, pod) (container_memory_working_set_bytes{{container!=""{pods}}})'
        ' / sum by (namespace, pod) (kube_pod_container_resource_limits{{resource="memory"{pods}}}))'
    ),
    # Restarts of all containers in scope, cumulative (a counter's current value, not a rate).
    "container_restart_count": "sum(kube_pod_container_status_restarts_total{{{pods_only}}})",
}
NODE_METRICS = ("node_cpu_utilization", "node_memory_utilization")
# The label that tells the series of a combined query apart (see `combined`).
PART_LABEL = "pipeline_part"


class InvalidScope(ValueError):
    """A scope value that is not a Kubernetes name; `field` names it. Nothing invalid reaches PromQL."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Scope:
    """What a vector describes: a namespace, a deployment or a pod in it, or a node; empty = cluster."""

    namespace: str | None = None
    deployment: str | None = None
    pod: str | None = None
    node: str | None = None
    pods: tuple[str, ...] = ()  # an explicit set, e.g. the pods a label selector matched

    def __post_init__(self) -> None:
        _check("namespace", self.namespace, is_dns_label)
        for name in ("deployment", "pod", "node"):
            _check(name, getattr(self, name), is_dns_subdomain)
        for pod in self.pods:
            _check("pods", pod, is_dns_subdomain)
        if (self.deployment or self.pod) and not self.namespace:
            raise InvalidScope("namespace", "namespace is required with deployment or pod")

    def pod_matchers(self) -> list[str]:
        out = []
        if self.namespace:
            out.append(f"namespace={promql_string(self.namespace)}")
        if self.pod:
            out.append(f"pod={promql_string(self.pod)}")
        elif self.deployment:
            # Pods of a Deployment are named <deployment>-<replicaset hash>-<suffix>.
            out.append(f"pod=~{promql_regex(literal_pattern(self.deployment) + '-[a-z0-9]+-[a-z0-9]+')}")
        if self.pods:
            out.append(f"pod=~{promql_regex('|'.join(literal_pattern(p) for p in self.pods))}")
        if self.node:
            out.append(f"node={promql_string(self.node)}")
        return out

    def as_dict(self) -> dict[str, str]:
        fields = [("namespace", self.namespace), ("deployment", self.deployment), ("pod", self.pod),
                  ("node", self.node), ("pods", ",".join(self.pods))]
        return {k: v for k, v in fields if v}

    @property
    def is_cluster(self) -> bool:
        return not self.as_dict()


def _check(field_name: str, value: str | None, valid: Callable[[str], bool]) -> None:
    if value is None:
        return
    if not valid(value):
        raise InvalidScope(field_name, f"{field_name} must be a Kubernetes name (lowercase, digits, '-', '.')")


def node_lookup_query(scope: Scope) -> str | None:
    """The query that finds the nodes running the scoped pods; None when node metrics are not narrowed."""
    if scope.node or scope.is_cluster:
        return None
    return f"count by (node) (kube_pod_info{{{','.join(scope.pod_matchers())}}})"


def base_queries(scope: Scope, nodes: Sequence[str] | None = None) -> dict[str, str]:
    """PromQL per base metric. Names were validated by `Scope`.

    Node metrics cover the scope's node, else the given `nodes`, else (a scope of pods) the nodes that run
    the scoped pods, found by a join on `kube_pod_info` in the same query, else every node (the cluster).
    """
    node_names = [scope.node] if scope.node else nodes
    node_matcher = ""
    if node_names is not None:
        checked = [n for n in node_names if is_dns_subdomain(n)]
        node_matcher = f"node=~{promql_regex('|'.join(literal_pattern(n) for n in checked))}"
    pods = scope.pod_matchers()
    pod_only = [m for m in pods if not m.startswith("node=")]
    joined = node_names is None and not scope.is_cluster
    values = {
        "nodes": f",{node_matcher}" if node_matcher else "",
        "nodes_only": node_matcher,
        "on_nodes": f" and on(node) kube_pod_info{{{','.join(pod_only)}}}" if joined else "",
        "pods": "".join(f",{m}" for m in pods),
        "pods_only": ",".join(pods),
        "rate": RATE_RANGE,
    }
    return {metric: template.format(**values) for metric, template in BASE_QUERIES.items()}


def combined(parts: Mapping[str, str]) -> str:
    """Several expressions in one query: each result series carries `PART_LABEL="<its key>"`.

    `label_replace(e, label, key, "", "")` always matches (the empty source label against the empty
    regex), so it only adds the label; `or` keeps every series since the parts' label sets differ.
    """
    return " or ".join(f'label_replace({expr}, "{PART_LABEL}", "{key}", "", "")' for key, expr in parts.items())


def vector_query(scope: Scope) -> str:
    """The one range query (on `grid(at)`) that carries all five base metrics of the scope's vector."""
    return combined(base_queries(scope))


def split_parts(keys: Sequence[str], series: Sequence[tuple[Mapping[str, str], T]]) -> dict[str, list[tuple[dict[str, str], T]]]:
    """The series of a `combined` answer per part key, with the part label removed from their labels."""
    out: dict[str, list[tuple[dict[str, str], T]]] = {key: [] for key in keys}
    for labels, payload in series:
        key = labels.get(PART_LABEL)
        if key in out:
            out[key].append(({k: v for k, v in labels.items() if k != PART_LABEL}, payload))
    return out


def vector_inputs(scope: Scope, series: Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]) -> dict[str, Sequence[tuple[float, float]] | str]:
    """`compute`'s input from the answer of `vector_query`: each metric's one series, or why there is none."""
    parts = split_parts(BASE_METRICS, series)
    out: dict[str, Sequence[tuple[float, float]] | str] = {}
    for metric, found in parts.items():
        if len(found) > 1:
            out[metric] = f"query returned {len(found)} series where one was expected"
        elif found:
            out[metric] = found[0][1]
        elif metric in NODE_METRICS and not scope.is_cluster and not scope.node:
            out[metric] = "no node metrics for the nodes running the pods in scope"
        else:
            out[metric] = []
    return out


def grid(at: float) -> list[float]:
    """The evaluation timestamps of every range query: t-10m, t-9m, ..., t."""
    return [at - LOOKBACK_S + i * STEP_S for i in range(LOOKBACK_S // STEP_S + 1)]


@dataclass
class FeatureVector:
    """45 values in the engine's order; a missing value is None and `missing` says why."""

    evaluated_at: float
    values: list[float | None] = field(default_factory=lambda: [None] * len(FEATURE_NAMES))
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    @property
    def complete(self) -> bool:
        return not self.missing

    def get(self, name: str) -> float | None:
        return self.values[FEATURE_NAMES.index(name)]

    def by_name(self) -> dict[str, float | None]:
        return dict(zip(FEATURE_NAMES, self.values, strict=True))


def compute(at: float, results: Mapping[str, Sequence[tuple[float, float]] | str]) -> FeatureVector:
    """Build the vector from each base metric's aggregated samples, or the reason they are unavailable.

    `results[metric]` is either the (timestamp, value) samples of the metric's single aggregated series
    on the `grid(at)` (any subset of it), or a string: why the metric could not be queried.
    """
    vector = FeatureVector(evaluated_at=at)
    for index, metric in enumerate(BASE_METRICS):
        result = results.get(metric, "not queried")
        if isinstance(result, str):
            values: dict[str, float | None] = dict.fromkeys(FEATURES)
            reasons = dict.fromkeys(FEATURES, result)
        else:
            values, reasons = metric_features(at, result)
        for offset, feature in enumerate(FEATURES):
            name = f"{metric}_{feature}"
            vector.values[index * len(FEATURES) + offset] = values[feature]
            if values[feature] is None:
                vector.missing[name] = reasons[feature]
    return vector


def metric_features(
    at: float, samples: Sequence[tuple[float, float]]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """The nine features of one metric from its samples on the 1-minute grid ending at `at`."""
    # Each sample goes to the grid point it is nearest to, by its distance back from `at`. Not by
    # `round(t) == round(at) - k*60`: Prometheus gets times to the millisecond, so for an `at` within half a
    # millisecond of a half second (e.g. ...4.4996 sent as ...4.500) round() of the answer's timestamps and
    # of `at` go to different seconds and every point was lost.
    points: dict[int, float] = {}
    for t, v in samples:
        back = at - t
        steps = round(back / STEP_S)
        if math.isfinite(v) and abs(back - steps * STEP_S) < 0.5:
            points[steps * STEP_S] = v
    nonfinite = any(not math.isfinite(v) for _, v in samples)
    absent = "no finite sample" if nonfinite else "no sample"

    def point(seconds_back: int) -> float | None:
        return points.get(seconds_back)

    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}

    def put(name: str, value: float | None, reason: str) -> None:
        if value is not None and not math.isfinite(value):
            value, reason = None, "non-finite result"
        values[name] = value
        if value is None:
            reasons[name] = reason

    value, lag_1, lag_5 = point(0), point(STEP_S), point(5 * STEP_S)
    window = [v for v in (point(i * STEP_S) for i in range(WINDOW_POINTS)) if v is not None]
    put("value", value, f"{absent} at the evaluation time")
    put("mean_5m", _safe(statistics.fmean, window), f"{absent} in the last 5 minutes")
    put("std_5m", _safe(_pstdev, window), f"{absent} in the last 5 minutes")
    put("min_5m", min(window) if window else None, f"{absent} in the last 5 minutes")
    put("max_5m", max(window) if window else None, f"{absent} in the last 5 minutes")
    put("lag_1", lag_1, f"{absent} 1 minute before the evaluation time")
    put("lag_5", lag_5, f"{absent} 5 minutes before the evaluation time")
    if value is None or lag_1 is None:
        put("diff", None, "needs value and lag_1")
        put("pct_change", None, "needs value and lag_1")
        return values, reasons
    put("diff", value - lag_1, "")
    if lag_1 != 0:
        put("pct_change", (value - lag_1) / abs(lag_1), "")
    elif value == 0:
        put("pct_change", 0.0, "")  # no change from zero is a 0 % change
    else:
        put("pct_change", None, "lag_1 is 0: the relative change is unbounded")
    return values, reasons


def _pstdev(values: list[float]) -> float:
    """Population standard deviation in floats (`statistics.pstdev` computes it in exact fractions: slow)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _safe(stat: Callable[[list[float]], float], window: list[float]) -> float | None:
    """A window statistic; NaN (reported as non-finite) when the samples are too large to combine."""
    if not window:
        return None
    try:
        return stat(window)
    except OverflowError:
        return math.nan


def scope_for(namespace: str, resource: str, target: str = "") -> Scope:
    """The scope of an incident: its pod, deployment or node; else its namespace; else the cluster.

    Values that are not Kubernetes names (an alert's free-form labels) widen the scope, never break it.
    """
    kind, _, name = resource.partition("/")
    candidates = {
        "Pod": lambda: Scope(namespace=namespace, pod=name),
        "Deployment": lambda: Scope(namespace=namespace, deployment=name),
        "Node": lambda: Scope(node=name),
    }
    for attempt in (candidates.get(kind), lambda: Scope(namespace=namespace or target or None)):
        if attempt is None:
            continue
        try:
            return attempt()
        except InvalidScope:
            continue
    return Scope()
