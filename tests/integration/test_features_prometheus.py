"""The 45-feature vector against a real Prometheus 2.42 holding generated cluster history.

Every feature is checked against a value computed here, independently of `pipeline.domain.features`, from the
generated samples (`History.samples`): this module re-implements the PromQL the vector needs (instant
lookback, `rate()` with Prometheus 2.42's extrapolation, sum/avg/max aggregation, one-to-one division), the
range-query grid t-10m..t at 60 s (times rounded to milliseconds as the API does), and the nine features.
Which pods and nodes a scope covers comes from the cluster's specification (`PODS`), not from PromQL.

Then: the scenario signals are visible, a vector costs at most 6 queries, an outage or a missing
configuration degrade to missing values with reasons, and an Alertmanager webhook about the leaky pod
produces a `pipeline.features.computed.v1` event on the `features` topic through real Kafka.

Needs the binaries from scripts/install-components.sh; fails (never skips) without them.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pipeline.adapters.features import Collected, FeatureCollector
from pipeline.adapters.prometheus import PrometheusClient
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES, Scope
from pipeline.embedded.history import (
    CART_DEPLOYMENT,
    CART_NAMESPACE,
    CRASHY_NAMESPACE,
    CRASHY_POD,
    CRASHY_RESTARTS,
    LEAKY_NAMESPACE,
    LEAKY_POD,
    LOOKBACK_DELTA_S,
    PODS,
    THROTTLED_CPU_LIMIT_CORES,
    THROTTLED_NAMESPACE,
    THROTTLED_POD,
    History,
)
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.events import FeaturesComputed, IncidentOpened, decode
from tests.support import PipelineUnderTest, eventually, read_topic

REL = 1e-6

# ============================================================================ the model of PromQL (independent)

METRICS = (
    "node_cpu_utilization",
    "node_memory_utilization",
    "pod_cpu_usage",
    "pod_memory_usage",
    "container_restart_count",
)
FEATURES = ("value", "mean_5m", "std_5m", "min_5m", "max_5m", "lag_1", "lag_5", "diff", "pct_change")
GRID_STEP_MS = 60_000
GRID_POINTS = 11  # t-10m .. t
RATE_RANGE_MS = 300_000
LOOKBACK_MS = LOOKBACK_DELTA_S * 1000


@dataclass(frozen=True)
class _Series:
    labels: dict[str, str]
    ts: list[int]  # milliseconds, ascending
    values: list[float]


class PromModel:
    """The subset of Prometheus 2.42's evaluation the feature queries use, on the generated samples."""

    def __init__(self, history: History) -> None:
        self.by_name: dict[str, list[_Series]] = {}
        for (name, labels), samples in history.samples.items():
            series = _Series(dict(labels), [round(t * 1000) for t, _ in samples], [v for _, v in samples])
            self.by_name.setdefault(name, []).append(series)

    def select(self, name: str, keep: Callable[[dict[str, str]], bool]) -> list[_Series]:
        return [s for s in self.by_name.get(name, []) if keep(s.labels)]

    @staticmethod
    def instant(series: _Series, t: int) -> float | None:
        """The last sample in [t - lookback, t] (both ends closed in 2.x)."""
        i = bisect.bisect_right(series.ts, t) - 1
        if i < 0 or series.ts[i] < t - LOOKBACK_MS:
            return None
        return series.values[i]

    @staticmethod
    def rate(series: _Series, t: int, range_ms: int = RATE_RANGE_MS) -> float | None:
        """`rate(x[range])` at t: Prometheus 2.42's `extrapolatedRate` (isCounter, isRate) on [t - range, t]."""
        lo = bisect.bisect_left(series.ts, t - range_ms)
        hi = bisect.bisect_right(series.ts, t)
        ts, vs = series.ts[lo:hi], series.values[lo:hi]
        if len(ts) < 2:
            return None
        result = vs[-1] - vs[0]
        previous = vs[0]
        for v in vs[1:]:  # counter resets
            if v < previous:
                result += previous
            previous = v
        range_start, range_end = t - range_ms, t
        to_start = (ts[0] - range_start) / 1000
        to_end = (range_end - ts[-1]) / 1000
        sampled = (ts[-1] - ts[0]) / 1000
        average = sampled / (len(ts) - 1)
        if result > 0 and vs[0] >= 0:  # never extrapolate a counter below zero
            to_zero = sampled * (vs[0] / result)
            if to_zero < to_start:
                to_start = to_zero
        threshold = average * 1.1
        interval = sampled
        interval += to_start if to_start < threshold else average / 2
        interval += to_end if to_end < threshold else average / 2
        return result * (interval / sampled) / (range_ms / 1000)


@dataclass(frozen=True)
class ScopeSpec:
    """Which pods a scope covers (from the cluster's specification) and the nodes they run on."""

    pods: frozenset[tuple[str, str]]  # (namespace, pod)
    nodes: frozenset[str] | None  # None: every node

    @classmethod
    def of(cls, scope: Scope) -> ScopeSpec:
        chosen = [
            p
            for p in PODS
            if (scope.namespace is None or p.namespace == scope.namespace)
            and (scope.pod is None or p.pod == scope.pod)
            and (scope.deployment is None or p.deployment == scope.deployment)
        ]
        pods = frozenset((p.namespace, p.pod) for p in chosen)
        return cls(pods, None if scope.is_cluster else frozenset(p.node for p in chosen))

    def has_pod(self, labels: dict[str, str]) -> bool:
        return (labels.get("namespace", ""), labels.get("pod", "")) in self.pods

    def has_node(self, labels: dict[str, str]) -> bool:
        return self.nodes is None or labels.get("node", "") in self.nodes


def base_value(model: PromModel, metric: str, spec: ScopeSpec, t: int) -> float | None:
    """The documented aggregation of one base metric at t (ms); None when the result is empty."""
    if metric == "node_cpu_utilization":  # avg over every CPU of the scoped nodes of (1 - idle rate)
        idle = model.select(
            "node_cpu_seconds_total", lambda lb: lb.get("mode") == "idle" and spec.has_node(lb)
        )
        busy = [1 - r for r in (model.rate(s, t) for s in idle) if r is not None]
        return sum(busy) / len(busy) if busy else None
    if metric == "node_memory_utilization":  # the most pressured node
        ratios = []
        totals = {
            frozenset(s.labels.items()): s for s in model.select("node_memory_MemTotal_bytes", spec.has_node)
        }
        for avail in model.select("node_memory_MemAvailable_bytes", spec.has_node):
            total = totals.get(frozenset(avail.labels.items()))
            a = model.instant(avail, t)
            b = model.instant(total, t) if total is not None else None
            if a is not None and b is not None:
                ratios.append(1 - a / b)
        return max(ratios) if ratios else None
    if metric == "pod_cpu_usage":  # total cores of the scoped pods
        usage = model.select(
            "container_cpu_usage_seconds_total", lambda lb: lb.get("container", "") != "" and spec.has_pod(lb)
        )
        rates = [r for r in (model.rate(s, t) for s in usage) if r is not None]
        return sum(rates) if rates else None
    if metric == "pod_memory_usage":  # max over pods of working set / memory limit
        ws: dict[tuple[str, str], float] = {}
        for s in model.select(
            "container_memory_working_set_bytes",
            lambda lb: lb.get("container", "") != "" and spec.has_pod(lb),
        ):
            if (v := model.instant(s, t)) is not None:
                key = (s.labels["namespace"], s.labels["pod"])
                ws[key] = ws.get(key, 0.0) + v
        limits: dict[tuple[str, str], float] = {}
        for s in model.select(
            "kube_pod_container_resource_limits",
            lambda lb: lb.get("resource") == "memory" and spec.has_pod(lb),
        ):
            if (v := model.instant(s, t)) is not None:
                key = (s.labels["namespace"], s.labels["pod"])
                limits[key] = limits.get(key, 0.0) + v
        ratios = [ws[k] / limits[k] for k in ws.keys() & limits.keys()]
        return max(ratios) if ratios else None
    if metric == "container_restart_count":  # restarts of every container in scope
        values = [
            v
            for v in (
                model.instant(s, t)
                for s in model.select("kube_pod_container_status_restarts_total", spec.has_pod)
            )
            if v is not None
        ]
        return sum(values) if values else None
    raise AssertionError(metric)


def api_ms(seconds: float) -> int:
    """A time as the client sends it (3 decimals) and Prometheus parses it: whole milliseconds."""
    return round(float(f"{seconds:.3f}") * 1000)


def evaluation_times(at: float) -> list[int]:
    """The range query's steps (ms): start, start + 60 s, ... up to end, start and end as sent."""
    start, end = api_ms(at - (GRID_POINTS - 1) * GRID_STEP_MS / 1000), api_ms(at)
    out = []
    t = start
    while t <= end:
        out.append(t)
        t += GRID_STEP_MS
    return out


def expected_vector(model: PromModel, scope: Scope, at: float) -> dict[str, float | None]:
    """All 45 features as the brief defines them, from the model's evaluation on the grid."""
    spec = ScopeSpec.of(scope)
    times = evaluation_times(at)
    assert len(times) == GRID_POINTS and times[-1] == api_ms(at), times
    out: dict[str, float | None] = {}
    for metric in METRICS:
        points = [base_value(model, metric, spec, t) for t in times]  # oldest .. newest
        value, lag_1, lag_5 = points[-1], points[-2], points[-6]
        window = [p for p in points[-5:] if p is not None]  # t-4m .. t: the 5-minute window (t-5m, t]
        mean = sum(window) / len(window) if window else None
        std = math.sqrt(sum((x - mean) ** 2 for x in window) / len(window)) if mean is not None else None
        diff = value - lag_1 if value is not None and lag_1 is not None else None
        if diff is None or lag_1 is None:
            pct = None
        elif lag_1 != 0:
            pct = diff / abs(lag_1)
        else:
            pct = 0.0 if value == 0 else None
        feats = {
            "value": value,
            "mean_5m": mean,
            "std_5m": std,
            "min_5m": min(window) if window else None,
            "max_5m": max(window) if window else None,
            "lag_1": lag_1,
            "lag_5": lag_5,
            "diff": diff,
            "pct_change": pct,
        }
        out.update({f"{metric}_{f}": feats[f] for f in FEATURES})
    return out


def mismatches(
    expected: dict[str, float | None], values: list[float | None], missing: dict[str, str]
) -> list[str]:
    assert len(values) == len(FEATURE_NAMES) == 45
    got = dict(zip(FEATURE_NAMES, values, strict=True))
    assert list(expected) == list(FEATURE_NAMES)
    problems = []
    for name, want in expected.items():
        have = got[name]
        if want is None:
            if have is not None or name not in missing:
                problems.append(f"{name}: expected missing, got {have!r} (reason {missing.get(name)!r})")
        elif have is None or have != pytest.approx(want, rel=REL) or name in missing:
            problems.append(f"{name}: expected {want!r}, got {have!r} (reason {missing.get(name)!r})")
    return problems


def assert_vector(expected: dict[str, float | None], collected: Collected) -> None:
    problems = mismatches(expected, collected.vector.values, collected.vector.missing)
    assert not problems, "\n".join(problems)


# ============================================================================ fixtures


@pytest.fixture(scope="module")
def model(history: History) -> PromModel:
    return PromModel(history)


@pytest.fixture
async def client(prom: PrometheusServer) -> AsyncIterator[PrometheusClient]:
    if not prom.running:  # a test before stopped it and failed to restart: start again
        await asyncio.to_thread(prom.start)
    c = PrometheusClient(Settings(prometheus_url=prom.url))
    try:
        yield c
    finally:
        await c.aclose()


SCOPES = {
    "leaky-pod": Scope(namespace=LEAKY_NAMESPACE, pod=LEAKY_POD),
    "crashy-pod": Scope(namespace=CRASHY_NAMESPACE, pod=CRASHY_POD),
    "throttled-pod": Scope(namespace=THROTTLED_NAMESPACE, pod=THROTTLED_POD),
    "cart-deployment": Scope(namespace=CART_NAMESPACE, deployment=CART_DEPLOYMENT),
    "cluster": Scope(),
}


# ============================================================================ 1. every feature, exactly


def test_the_model_agrees_with_prometheus_on_the_base_queries(
    prom: PrometheusServer, model: PromModel, history: History
) -> None:
    """Sanity of the independent model itself: a few raw PromQL answers at an unaligned time."""
    at = history.end - 37.25
    t = api_ms(at)
    for pod in (LEAKY_POD, CRASHY_POD, THROTTLED_POD):

        def of_pod(labels: dict[str, str], pod: str = pod) -> bool:
            return labels["pod"] == pod

        [series] = model.select("container_cpu_usage_seconds_total", of_pod)
        [answer] = prom.query(f'rate(container_cpu_usage_seconds_total{{pod="{pod}"}}[5m])', at)
        assert float(answer["value"][1]) == pytest.approx(model.rate(series, t), rel=1e-12)
        [series] = model.select("container_memory_working_set_bytes", of_pod)
        [answer] = prom.query(f'container_memory_working_set_bytes{{pod="{pod}"}}', at)
        assert float(answer["value"][1]) == model.instant(series, t)


@pytest.mark.parametrize("name", list(SCOPES))
async def test_every_feature_at_history_end_matches_the_independent_computation(
    name: str, client: PrometheusClient, model: PromModel, history: History
) -> None:
    scope = SCOPES[name]
    collected = await FeatureCollector(client).collect(scope, history.end)
    assert collected.scope == scope
    assert collected.vector.evaluated_at == history.end
    assert collected.vector.missing == {}, collected.vector.missing
    assert collected.vector.complete
    assert_vector(expected_vector(model, scope, history.end), collected)


@pytest.mark.parametrize("name", list(SCOPES))
async def test_every_feature_at_an_unaligned_time_matches_including_rate_extrapolation(
    name: str, client: PrometheusClient, model: PromModel, history: History
) -> None:
    """37.25 s before the end: every rate window's first and last samples are off its boundaries, so
    Prometheus extrapolates; gauges come from the lookback."""
    scope = SCOPES[name]
    at = history.end - 37.25
    collected = await FeatureCollector(client).collect(scope, at)
    assert collected.vector.missing == {}, collected.vector.missing
    assert_vector(expected_vector(model, scope, at), collected)


async def test_evaluation_times_near_a_half_second_keep_every_feature(
    client: PrometheusClient, model: PromModel, history: History
) -> None:
    """The enrich stage evaluates at an incident's `updated_at` (microseconds). Prometheus gets the time to
    the millisecond, so an evaluation time within half a millisecond of a half second comes back as an exact
    half second, which Python's round() sends to the even neighbour: the answer's points must still be
    matched to their grid positions (here: both parities, both sides of the half second)."""
    scope = SCOPES["leaky-pod"]
    base = math.floor(history.end) - 90
    for at in (base + 0.4996, base + 0.5004, base + 1.4996, base + 1.5004):
        collected = await FeatureCollector(client).collect(scope, at)
        assert collected.vector.missing == {}, (at, collected.vector.missing)
        assert_vector(expected_vector(model, scope, at), collected)


# ============================================================================ 2. the scenarios in the vector


async def _complete(collector: FeatureCollector, scope: Scope, at: float) -> dict[str, float]:
    vector = (await collector.collect(scope, at)).vector
    assert vector.complete, vector.missing
    return {name: value for name, value in vector.by_name().items() if value is not None}


async def test_the_scenarios_are_visible_in_the_vector(
    client: PrometheusClient, model: PromModel, history: History
) -> None:
    collector = FeatureCollector(client)
    end = history.end

    leaky = await _complete(collector, SCOPES["leaky-pod"], end)
    assert leaky["pod_memory_usage_value"] > 0.9
    assert leaky["pod_memory_usage_value"] > leaky["pod_memory_usage_lag_5"]
    assert leaky["pod_memory_usage_diff"] > 0 and leaky["pod_memory_usage_pct_change"] > 0
    assert (
        leaky["pod_memory_usage_min_5m"]
        < leaky["pod_memory_usage_mean_5m"]
        < leaky["pod_memory_usage_max_5m"]
    )
    assert leaky["pod_memory_usage_max_5m"] == leaky["pod_memory_usage_value"]  # still growing
    earlier = await _complete(collector, SCOPES["leaky-pod"], end - 300)
    assert leaky["pod_memory_usage_mean_5m"] > earlier["pod_memory_usage_mean_5m"]  # the mean rises
    assert earlier["pod_memory_usage_value"] == leaky["pod_memory_usage_lag_5"]
    assert leaky["container_restart_count_value"] == 0

    # crashy: 12 restarts, the last one 120 s before the end (at end-420 the one before)
    restarts = history.crashy_restart_times
    assert len(restarts) == CRASHY_RESTARTS and restarts[-1] == end - 120
    crashy = await _complete(collector, SCOPES["crashy-pod"], end)
    assert crashy["container_restart_count_value"] == CRASHY_RESTARTS == 12
    assert crashy["container_restart_count_lag_1"] == 12
    assert crashy["container_restart_count_lag_5"] == 11
    assert crashy["container_restart_count_diff"] == 0 and crashy["container_restart_count_pct_change"] == 0
    assert crashy["container_restart_count_min_5m"] == 11 and crashy["container_restart_count_max_5m"] == 12
    assert crashy["container_restart_count_mean_5m"] == pytest.approx((11 + 11 + 12 + 12 + 12) / 5, rel=REL)
    at_restart = await _complete(collector, SCOPES["crashy-pod"], restarts[-1])
    assert at_restart["container_restart_count_value"] == 12
    assert at_restart["container_restart_count_lag_1"] == 11
    assert at_restart["container_restart_count_diff"] == 1
    assert at_restart["container_restart_count_pct_change"] == pytest.approx(1 / 11, rel=REL)
    just_before = await _complete(collector, SCOPES["crashy-pod"], restarts[-1] - 15)
    assert (
        just_before["container_restart_count_value"] == 11
        and just_before["container_restart_count_diff"] == 0
    )

    throttled = await _complete(collector, SCOPES["throttled-pod"], end)
    assert throttled["pod_cpu_usage_value"] == pytest.approx(THROTTLED_CPU_LIMIT_CORES, abs=0.01)
    assert throttled["pod_cpu_usage_value"] <= THROTTLED_CPU_LIMIT_CORES
    assert throttled["pod_cpu_usage_std_5m"] < 0.01

    cart = await _complete(collector, SCOPES["cart-deployment"], end)
    assert cart["container_restart_count_value"] == 0
    assert cart["container_restart_count_max_5m"] == 0 and cart["container_restart_count_diff"] == 0
    assert cart["container_restart_count_pct_change"] == 0.0  # 0 -> 0 is no change
    assert cart["pod_cpu_usage_value"] == pytest.approx(2 * 0.2, abs=0.05)  # both replicas


# ============================================================================ 3. query budget


@pytest.mark.parametrize("name", list(SCOPES))
async def test_a_vector_costs_one_query(
    name: str, client: PrometheusClient, history: History
) -> None:
    scope = SCOPES[name]
    before = client.queries
    collected = await FeatureCollector(client).collect(scope, history.end)
    # one range query carries the five base metrics; the scope's nodes are joined in PromQL
    assert collected.queries == 1
    assert client.queries - before == collected.queries  # what Prometheus really received
    assert collected.vector.complete


# ============================================================================ 4. degradation


async def test_prometheus_down_every_feature_missing_with_a_reason(
    prom: PrometheusServer, history: History, model: PromModel
) -> None:
    settings = Settings(prometheus_url=prom.url, prometheus_retry_attempts=2, prometheus_timeout_s=5)
    c = PrometheusClient(settings)
    await asyncio.to_thread(prom.stop)
    try:
        for scope in (SCOPES["leaky-pod"], SCOPES["cluster"]):
            collected = await FeatureCollector(c).collect(scope, history.end)  # no exception
            vector = collected.vector
            assert vector.values == [None] * 45
            assert set(vector.missing) == set(FEATURE_NAMES)
            bad = {k: v for k, v in vector.missing.items() if not v.startswith("prometheus unavailable")}
            assert not bad, bad
            assert collected.queries == 1
    finally:
        await c.aclose()
        await asyncio.to_thread(prom.start)
    # back: the same data again
    c = PrometheusClient(Settings(prometheus_url=prom.url))
    try:
        collected = await FeatureCollector(c).collect(SCOPES["leaky-pod"], history.end)
        assert_vector(expected_vector(model, SCOPES["leaky-pod"], history.end), collected)
    finally:
        await c.aclose()


async def test_prometheus_not_configured_every_feature_missing_with_a_reason(history: History) -> None:
    collected = await FeatureCollector(None).collect(SCOPES["leaky-pod"], history.end)
    assert collected.vector.values == [None] * 45
    assert collected.vector.missing == dict.fromkeys(FEATURE_NAMES, "prometheus not configured")
    assert collected.queries == 0


# ============================================================================ 5. end to end through Kafka


def _webhook(starts_at: datetime) -> dict[str, Any]:
    labels = {
        "alertname": "KubePodMemoryNearLimit",
        "namespace": LEAKY_NAMESPACE,
        "pod": LEAKY_POD,
        "container": "leaky",
        "severity": "warning",
    }
    return {
        "receiver": "pipeline",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{LEAKY_POD} uses over 90% of its memory limit"},
                "startsAt": starts_at.isoformat().replace("+00:00", "Z"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "5e1a7c0ffee0d00d",
            }
        ],
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:19093",
        "version": "4",
        "groupKey": '{}:{alertname="KubePodMemoryNearLimit"}',
        "truncatedAlerts": 0,
    }


async def test_an_alert_about_the_leaky_pod_yields_its_features_on_the_features_topic(
    settings: Settings, prom: PrometheusServer, history: History, model: PromModel
) -> None:
    if not prom.running:
        await asyncio.to_thread(prom.start)
    enriched = settings.model_copy(update={"prometheus_url": prom.url})
    async with PipelineUnderTest(enriched) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=15.0, trust_env=False) as http:
            starts_at = datetime.fromtimestamp(history.end - 30, UTC)
            response = await http.post("/api/v1/alerts", json=_webhook(starts_at))
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 1

        async def features() -> list[Any]:
            return await read_topic(enriched, "features")

        records = await eventually(features, timeout=60)
        assert len(records) == 1, records
        record = records[0]
        headers = {k: v.decode() for k, v in record.headers}
        event = decode(record.value, record.headers)
        assert isinstance(event.payload, FeaturesComputed)

        opened = [
            e
            for e in (decode(r.value, r.headers) for r in await read_topic(enriched, "incidents"))
            if isinstance(e.payload, IncidentOpened)
        ]
        assert len(opened) == 1, opened
        assert isinstance(opened[0].payload, IncidentOpened)
        incident = opened[0].payload.incident
        assert incident.resource == f"Pod/{LEAKY_POD}"

    assert headers["ce_type"] == "pipeline.features.computed.v1"
    assert headers["ce_incidentid"] == incident.id
    assert record.key.decode() == incident.id
    payload = event.payload
    assert payload.incident_id == incident.id
    assert payload.scope == {"namespace": "shop", "pod": LEAKY_POD}
    assert payload.feature_names == list(FEATURE_NAMES)
    assert payload.source == prom.url
    assert payload.query_count == 1  # one range query carries the five base metrics
    # evaluated when the signal was observed (now), not at the alert's startsAt
    assert payload.evaluated_at == incident.updated_at
    assert payload.evaluated_at.timestamp() >= history.end
    assert payload.missing == {}, payload.missing
    values = {n: v for n, v in zip(payload.feature_names, payload.values, strict=True) if v is not None}
    assert len(values) == 45
    assert values["pod_memory_usage_value"] > 0.9
    assert values["pod_memory_usage_value"] > values["pod_memory_usage_lag_5"]
    # and the whole vector is what the generated history says for that moment
    expected = expected_vector(
        model, Scope(namespace="shop", pod=LEAKY_POD), payload.evaluated_at.timestamp()
    )
    problems = mismatches(expected, payload.values, payload.missing)
    assert not problems, "\n".join(problems)
