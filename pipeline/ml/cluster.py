"""Train the reference model on a real cluster's history: ``pipeline ml train --prometheus URL [--since
24h] [--every 5m] [--namespace NS ...] [--model-dir DIR]``.

The history is pulled with ``prometheus-api-client`` (synchronous, batch: range queries over the whole
window, a few per scope); the pipeline's hot path keeps its async client. The vectors are the ones the
enrich stage and the gateway compute (``pipeline.domain.features``: the same node lookup, the same base
queries on the same 1-minute grid, the same ``compute``), so the model learns what it will be asked.

Scopes: every pod, deployment (from ``kube_deployment_spec_replicas``; its pods by the same name pattern
the features use), namespace and node that kube-state-metrics shows in the window, and the cluster; with
``--namespace``, only those namespaces' pods, deployments and namespaces (nodes and the cluster hold pods
of others). One vector per scope every ``--every`` (a multiple of one minute) from 15 minutes after the
window's start (the vector's look-back: t-10m..t with 5-minute rates).

What counts as normal, since nothing is labelled (:data:`RULES`): a pod is normal at ``t`` when, over the
vector's look-back, kube-state-metrics knows it and

* none of its containers restarted (``increase(restarts[15m]) == 0``),
* it was throttled in at most 25 % of its CFS periods (pods without a CPU limit are never throttled),
* its working set did not grow by more than 10 % of itself per hour over the last 30 minutes (a leak
  shows as steady growth long before the limit).

A deployment, namespace, node or the cluster is normal at ``t`` when every pod it holds then is. Other
rows are left out: a vector of a crash loop or a leak in the training set would teach the model that it is
normal. Only the shape of normal is learned; a cluster that is never healthy gives no rows, and training
fails rather than fit on nothing.
"""

from __future__ import annotations

import bisect
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
import stamina
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from pipeline.config import Settings, load_settings
from pipeline.domain.features import (
    FEATURE_NAMES,
    LOOKBACK_S,
    STEP_S,
    Scope,
    base_queries,
    compute,
    node_lookup_query,
)
from pipeline.domain.names import literal_pattern, promql_regex
from pipeline.ml.model import ReferenceModel, default_model_dir
from pipeline.ml.training import SCOPE_KINDS, WARMUP_S

DEFAULT_SINCE = "24h"
DEFAULT_EVERY = "5m"
CHUNK_S = 6 * 3600  # one range query covers at most this much (Prometheus caps a query at 11,000 points)
RESTART_WINDOW = "15m"  # the vector's look-back plus its 5-minute rates
THROTTLED_FRACTION = 0.25
GROWTH_PER_HOUR = 0.10
GROWTH_WINDOW = "30m"
RULES = {
    "restarts": f"no container restart in the last {RESTART_WINDOW}",
    "throttling": f"at most {THROTTLED_FRACTION:.0%} of CFS periods throttled over the last {RESTART_WINDOW}",
    "memory": f"working set growing by at most {GROWTH_PER_HOUR:.0%} of itself per hour over {GROWTH_WINDOW}",
}
_TRANSIENT = re.compile(r"HTTP Status Code (502|503|504)\b")
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TrainingFailed(Exception):
    """Nothing to train on, or Prometheus could not answer; the message says which."""


def parse_duration(text: str, what: str) -> int:
    """``90s``, ``5m``, ``6h``, ``2d``, ``1w`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise TrainingFailed(f"{what} must be a duration like 30m, 6h or 2d, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


# ----------------------------------------------------------------------------- progress on stderr
class Progress:
    """A one-line bar on a terminal (redrawn), a line per quarter otherwise (logs, CI)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self.label, self.total, self.done, self._quarter = "", 0, 0, -1
        self._lock = threading.Lock()

    def start(self, label: str, total: int) -> None:
        self.finish()
        self.label, self.total, self.done, self._quarter = label, max(total, 1), 0, -1
        self._draw()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self._draw()

    def finish(self) -> None:
        if self.label and self.tty:
            self.out.write("\n")
        self.label = ""

    def _draw(self) -> None:
        fraction = min(1.0, self.done / self.total)
        if self.tty:
            bar = "#" * int(fraction * 30)
            self.out.write(f"\r{self.label:<22} [{bar:<30}] {self.done}/{self.total}")
        elif int(fraction * 4) > self._quarter:
            self._quarter = int(fraction * 4)
            self.out.write(f"{self.label}: {self.done}/{self.total} ({fraction:.0%})\n")
        self.out.flush()


# ----------------------------------------------------------------------------- Prometheus (sync)
Samples = list[tuple[float, float]]


class History:
    """Range queries through ``prometheus-api-client``, one client per thread, stamina retries on
    connection errors and 502/503/504; the pipeline's Prometheus settings (token, CA, Thanos flags)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self._local = threading.local()
        self.queries = 0

    def _client(self) -> PrometheusConnect:
        client: PrometheusConnect | None = getattr(self._local, "client", None)
        if client is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = self.settings.prometheus_ca_file or self.settings.prometheus_tls_verify
            token = self.settings.prometheus_token.get_secret_value() or _read(
                self.settings.prometheus_token_file
            )
            client = PrometheusConnect(
                self.url,
                headers={"Authorization": f"Bearer {token}"} if token else None,
                retry=Retry(total=0, raise_on_status=False),  # stamina retries, below
                session=session,
                timeout=self.settings.prometheus_timeout_s,
            )
            self._local.client = client
        return client

    def range(self, expr: str, start: float, end: float, step_s: int) -> list[tuple[dict[str, str], Samples]]:
        """``query_range`` at start, start+step, ..., end, cut in chunks of CHUNK_S; series by labels."""
        merged: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], Samples]] = {}
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + CHUNK_S)
            for result in self._query(expr, chunk_start, chunk_end, step_s):
                labels = dict(result.get("metric") or {})
                key = tuple(sorted(labels.items()))
                samples = merged.setdefault(key, (labels, []))[1]
                for ts, value in result.get("values") or []:
                    t = float(ts)
                    if not samples or t > samples[-1][0]:
                        samples.append((t, _float(value)))
            chunk_start = chunk_end + step_s
        return list(merged.values())

    def _query(self, expr: str, start: float, end: float, step_s: int) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if self.settings.thanos_dedup is not None:
            params["dedup"] = str(self.settings.thanos_dedup).lower()
        if self.settings.thanos_partial_response is not None:
            params["partial_response"] = str(self.settings.thanos_partial_response).lower()
        self.queries += 1
        try:
            for attempt in stamina.retry_context(
                on=_transient,
                attempts=self.settings.prometheus_retry_attempts,
                timeout=self.settings.prometheus_timeout_s * 2,
                wait_initial=0.1,
                wait_max=2.0,
            ):
                with attempt:
                    result: list[dict[str, Any]] = self._client().custom_query_range(
                        expr,
                        start_time=datetime.fromtimestamp(start, UTC),
                        end_time=datetime.fromtimestamp(end, UTC),
                        step=str(step_s),
                        params=params,
                    )
        except requests.RequestException as exc:
            raise TrainingFailed(f"cannot reach Prometheus at {redact(self.url)}: {exc}") from None
        except PrometheusApiClientException as exc:
            raise TrainingFailed(f"Prometheus refused {expr!r}: {str(exc)[:300]}") from None
        return result


def _transient(exc: Exception) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, PrometheusApiClientException) and bool(_TRANSIENT.search(str(exc)))


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def redact(url: str) -> str:
    """The URL without user:password, for reports and metadata."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


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


# ----------------------------------------------------------------------------- training
@dataclass
class ClusterTrainingSet:
    vectors: np.ndarray
    rows: list[tuple[str, str, float]]  # (kind, scope name, t)
    start: float
    end: float
    scopes: Counter[str]  # scopes seen per kind
    skipped: Counter[str]  # scopes per kind with no normal time
    queries: int
    seconds: float


def collect(
    url: str,
    *,
    since_s: int,
    every_s: int,
    namespaces: Sequence[str] = (),
    settings: Settings | None = None,
    now: float | None = None,
    progress: Progress | None = None,
) -> ClusterTrainingSet:
    """The normal rows of every scope in the window ending at ``now`` (default: the current time)."""
    started = time.perf_counter()
    if every_s % STEP_S:
        raise TrainingFailed(f"--every must be a whole number of minutes, got {every_s} s")
    if since_s < WARMUP_S + every_s:
        raise TrainingFailed(f"--since must be at least {(WARMUP_S + every_s) // 60} minutes")
    settings = settings or load_settings()
    history = History(url, settings)
    end = float(int(time.time() if now is None else now) // every_s * every_s)
    start = end - since_s
    times = [float(t) for t in range(int(start + WARMUP_S), int(end) + 1, every_s)]
    progress = progress or Progress()
    progress.start("finding scopes", 5)
    inv = inventory(history, times, every_s, namespaces)
    progress.advance(2)
    if not inv.pods_at:
        progress.finish()
        raise TrainingFailed(f"Prometheus has no kube_pod_info between {_iso(start)} and {_iso(end)}")
    bad = abnormal_pods(history, inv, times, every_s, namespaces)
    progress.advance(3)
    scopes = inv.scopes(whole_cluster=not namespaces)
    plan: list[tuple[ClusterScope, list[float]]] = []
    skipped: Counter[str] = Counter()
    for cs in scopes:
        normal = []
        for t in times:
            members = cs.members(t)
            if members and not members & bad[t]:
                normal.append(t)
        if normal:
            plan.append((cs, normal))
        else:
            skipped[cs.kind] += 1
    progress.start("collecting vectors", len(plan))
    rows: list[tuple[str, str, float]] = []
    blocks: list[list[list[float | None]]] = []

    def one(item: tuple[ClusterScope, list[float]]) -> list[list[float | None]]:
        cs, normal = item
        vectors = scope_vectors(history, cs.scope, normal, every_s)
        progress.advance()
        return vectors

    with ThreadPoolExecutor(max_workers=settings.prometheus_max_concurrency) as pool:
        for (cs, normal), vectors in zip(plan, pool.map(one, plan), strict=True):
            rows.extend((cs.kind, cs.name, t) for t in normal)
            blocks.append(vectors)
    progress.finish()
    values = [[math.nan if v is None else v for v in row] for block in blocks for row in block]
    return ClusterTrainingSet(
        vectors=np.asarray(values, dtype=np.float64).reshape(len(values), len(FEATURE_NAMES)),
        rows=rows,
        start=start,
        end=end,
        scopes=Counter(cs.kind for cs in scopes),
        skipped=skipped,
        queries=history.queries,
        seconds=time.perf_counter() - started,
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def train(
    url: str,
    *,
    since: str = DEFAULT_SINCE,
    every: str = DEFAULT_EVERY,
    namespaces: Sequence[str] = (),
    model_dir: Path | None = None,
    now: float | None = None,
    progress: Progress | None = None,
) -> tuple[ReferenceModel, ClusterTrainingSet, Path]:
    """Collect the normal rows, fit, and save the model into ``model_dir`` (the serve default)."""
    since_s, every_s = parse_duration(since, "--since"), parse_duration(every, "--every")
    data = collect(url, since_s=since_s, every_s=every_s, namespaces=namespaces, now=now, progress=progress)
    if not data.rows:
        raise TrainingFailed(
            f"no scope was normal at any time between {_iso(data.start)} and {_iso(data.end)} "
            f"({'; '.join(RULES.values())}): nothing to train on"
        )
    complete = ~np.isnan(data.vectors).all(axis=0)
    if not complete.all():
        absent = [FEATURE_NAMES[i] for i in np.flatnonzero(~complete)]
        raise TrainingFailed(
            f"no value at all for {', '.join(absent)}: Prometheus lacks the metrics they need"
        )
    kinds = Counter(kind for kind, _, _ in data.rows)
    report = {
        "source": "prometheus",
        "prometheus": redact(url),
        "start": _iso(data.start),
        "end": _iso(data.end),
        "since_s": since_s,
        "every_s": every_s,
        "namespaces": list(namespaces),
        "normal": RULES,
        "rows_per_kind": {k: kinds[k] for k in SCOPE_KINDS if kinds[k]},
        "rows_per_scope": dict(sorted(Counter(f"{kind} {name}" for kind, name, _ in data.rows).items())),
        "scopes_per_kind": {k: data.scopes[k] for k in SCOPE_KINDS if data.scopes[k]},
        "scopes_never_normal": {k: data.skipped[k] for k in SCOPE_KINDS if data.skipped[k]},
        "missing_values": {
            FEATURE_NAMES[i]: int(n) for i, n in enumerate(np.isnan(data.vectors).sum(axis=0)) if n
        },
        "queries": data.queries,
        "seconds": round(data.seconds, 3),
    }
    model = ReferenceModel.fit(data.vectors, report)
    directory = model_dir or default_model_dir()
    model.save(directory)
    return model, data, directory


def print_report(model: ReferenceModel, directory: Path, out: TextIO = sys.stdout) -> None:
    t = model.training
    print(f"trained {model.name} {model.version} on {t['prometheus']}", file=out)
    print(
        f"window: {t['start']} .. {t['end']}, one vector per scope every {t['every_s'] // 60} min", file=out
    )
    print(f"normal: {'; '.join(t['normal'].values())}", file=out)
    print("rows per kind of scope (scopes with normal rows / scopes seen):", file=out)
    for kind, seen in t["scopes_per_kind"].items():
        used = seen - t["scopes_never_normal"].get(kind, 0)
        print(f"  {kind:<11} {t['rows_per_kind'].get(kind, 0):>7} rows  {used}/{seen} scopes", file=out)
    missing = t["missing_values"]
    if missing:
        worst = sorted(missing.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {n}/{t['size']}" for name, n in worst[:6])
        more = f" and {len(worst) - 6} more" if len(worst) > 6 else ""
        print(f"missing values (imputed with the training median): {shown}{more}", file=out)
    else:
        print("missing values: none", file=out)
    print(
        f"{t['size']} rows, {t['queries']} queries in {t['seconds']:.1f} s, fit in {t['fit_seconds']:.1f} s",
        file=out,
    )
    print(f"written to {directory} (pipeline ml serve --model-dir {directory})", file=out)


def main(
    url: str,
    *,
    since: str | None,
    every: str | None,
    namespaces: Sequence[str] | None,
    model_dir: Path | None,
) -> int:
    """``pipeline ml train --prometheus URL``: 0 with a report, 1 with the reason nothing was written."""
    try:
        model, _, directory = train(
            url,
            since=since or DEFAULT_SINCE,
            every=every or DEFAULT_EVERY,
            namespaces=namespaces or (),
            model_dir=model_dir,
        )
    except TrainingFailed as exc:
        print(f"pipeline ml train: {exc}", file=sys.stderr)
        return 1
    print_report(model, directory)
    return 0
