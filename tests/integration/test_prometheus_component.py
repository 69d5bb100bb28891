"""A real Prometheus 2.42 serves the generated cluster history (memory leak, crash loop, CPU throttling)
exactly as generated, over its HTTP query API, and survives a stop/start on the same port.

Needs the binaries from scripts/install-components.sh; fails (never skips) without them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from pipeline.embedded.history import (
    CRASHY_NAMESPACE,
    CRASHY_POD,
    CRASHY_RESTARTS,
    LEAKY_MEMORY_END_BYTES,
    LEAKY_MEMORY_LIMIT_BYTES,
    LEAKY_MEMORY_START_BYTES,
    LEAKY_POD,
    PODS,
    THROTTLED_FRACTION,
    THROTTLED_POD,
    History,
    MiB,
)
from pipeline.embedded.prometheus import PrometheusServer


@pytest.fixture(scope="module")
def prom(history: History, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), history)
    with server:
        print(
            f"\nprometheus timings: {server.timings} ({history.sample_count} samples, {len(history.samples)} series)"
        )
        yield server


async def _query(client: httpx.AsyncClient, promql: str, at: float) -> list[dict]:
    resp = await client.get("/api/v1/query", params={"query": promql, "time": at})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
async def client(prom: PrometheusServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=prom.url, timeout=30.0, trust_env=False) as c:
        yield c


async def test_instant_query_returns_the_generated_last_value_exactly(
    client: httpx.AsyncClient, history: History
) -> None:
    result = await _query(client, 'container_memory_working_set_bytes{pod=~"leaky.*"}', history.end)
    assert len(result) == 1, result
    series = result[0]
    assert series["metric"] == {
        "__name__": "container_memory_working_set_bytes",
        "namespace": "shop",
        "pod": LEAKY_POD,
        "container": "leaky",
        "node": "node-a",
    }
    expected = history.series("container_memory_working_set_bytes", pod=LEAKY_POD)
    ts, value = series["value"]
    assert float(ts) == history.end == expected[-1][0]
    assert float(value) == expected[-1][1]
    assert float(value) == history.instant("container_memory_working_set_bytes", history.end, pod=LEAKY_POD)
    # the scenario: a linear leak from 200 MiB to ~950 MiB of a 1 GiB limit
    assert abs(expected[0][1] - LEAKY_MEMORY_START_BYTES) < 2 * MiB
    assert abs(float(value) - LEAKY_MEMORY_END_BYTES) < 2 * MiB
    assert float(value) / LEAKY_MEMORY_LIMIT_BYTES > 0.9


async def test_increase_of_restarts_finds_the_crash_loop(client: httpx.AsyncClient, history: History) -> None:
    result = await _query(
        client,
        f'increase(kube_pod_container_status_restarts_total{{namespace="{CRASHY_NAMESPACE}"}}[1h])',
        history.end,
    )
    by_pod = {r["metric"]["pod"]: float(r["value"][1]) for r in result}
    assert set(by_pod) == {p.pod for p in PODS if p.namespace == CRASHY_NAMESPACE}
    assert by_pod[CRASHY_POD] == pytest.approx(CRASHY_RESTARTS, abs=0.5)
    assert all(v == 0 for pod, v in by_pod.items() if pod != CRASHY_POD), by_pod
    # and across all namespaces only crashy restarts
    everywhere = await _query(
        client, "sum by (pod) (kube_pod_container_status_restarts_total) > 0", history.end
    )
    assert [r["metric"]["pod"] for r in everywhere] == [CRASHY_POD]


async def test_throttling_ratio(client: httpx.AsyncClient, history: History) -> None:
    result = await _query(
        client,
        "sum by (pod) (rate(container_cpu_cfs_throttled_periods_total[5m]))"
        " / sum by (pod) (rate(container_cpu_cfs_periods_total[5m]))",
        history.end,
    )
    ratio = {r["metric"]["pod"]: float(r["value"][1]) for r in result}
    assert ratio[THROTTLED_POD] == pytest.approx(THROTTLED_FRACTION, abs=0.05)
    assert all(v < 0.05 for pod, v in ratio.items() if pod != THROTTLED_POD), ratio


async def test_instant_queries_see_the_last_sample_for_five_minutes_only(
    client: httpx.AsyncClient, history: History
) -> None:
    """The lookback window is [t - 5m, t]: query at history.end (not "now") once that is > 5 min later."""
    for at in (history.end + 300, history.end + 301):
        result = await _query(client, f'container_memory_working_set_bytes{{pod="{LEAKY_POD}"}}', at)
        expected = history.instant("container_memory_working_set_bytes", at, pod=LEAKY_POD)
        assert [float(r["value"][1]) for r in result] == ([] if expected is None else [expected])
    assert history.instant("container_memory_working_set_bytes", history.end + 301, pod=LEAKY_POD) is None


async def test_range_query_returns_the_generated_samples(client: httpx.AsyncClient, history: History) -> None:
    for name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
        resp = await client.get(
            "/api/v1/query_range",
            params={
                "query": f'{name}{{pod="{CRASHY_POD}"}}',
                "start": history.start,
                "end": history.end,
                "step": history.step_s,
            },
        )
        assert resp.status_code == 200, resp.text
        result = resp.json()["data"]["result"]
        assert len(result) == 1, result
        got = [(float(ts), float(v)) for ts, v in result[0]["values"]]
        assert got == history.series(name, pod=CRASHY_POD)


def test_stop_makes_requests_fail_and_start_restores_them(prom: PrometheusServer, history: History) -> None:
    params = {"query": f'kube_pod_info{{pod="{THROTTLED_POD}"}}', "time": history.end}
    url = f"{prom.url}/api/v1/query"
    port = prom.port
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        assert len(http.get(url, params=params).json()["data"]["result"]) == 1
        prom.stop()
        assert not prom.running
        with pytest.raises(httpx.TransportError):
            http.get(url, params=params)
        prom.start()
        assert prom.port == port and prom.url in url
        result = http.get(url, params=params).json()["data"]["result"]
        assert len(result) == 1 and result[0]["value"][1] == "1"
    assert prom.query(f'kube_pod_info{{pod="{THROTTLED_POD}"}}')[0]["value"][1] == "1"
    print(f"\nprometheus timings after restart: {prom.timings}")
