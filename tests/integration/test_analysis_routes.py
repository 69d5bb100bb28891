"""The analysis routes against a real Prometheus holding the generated cluster history.

The history (pipeline/embedded/history.py) has a memory leak (`shop/leaky`), a crash loop
(`payments/crashy`), CPU throttling (`payments/throttled`), a healthy `shop/cart`, two nodes whose root
filesystems fill at different rates, and requests/limits for every container. Each route must find its
scenario and only it, with numbers that agree with the samples; bad input is a 400 that names the field
and sends nothing to Prometheus; an unreachable Prometheus is a 503.

Needs the binaries from scripts/install-components.sh; fails (never skips) without them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.api import errors
from pipeline.config import Settings
from pipeline.domain import capacity as cap
from pipeline.embedded.history import (
    CRASHY_POD,
    LEAKY_MEMORY_LIMIT_BYTES,
    LEAKY_POD,
    NODE_ALLOCATABLE_CPU_CORES,
    NODE_ALLOCATABLE_MEMORY_BYTES,
    NODE_FILESYSTEM_SIZE_BYTES,
    NODES,
    PODS,
    THROTTLED_CPU_LIMIT_CORES,
    THROTTLED_FRACTION,
    THROTTLED_POD,
    GiB,
    History,
    MiB,
)
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.gateway.analysis import router

WORKING_SET = "container_memory_working_set_bytes"
RIGHTSIZING_FIELDS = {
    "namespace", "pod", "container", "current_cpu_request", "current_cpu_limit", "p95_cpu_usage_cores",
    "recommended_cpu_request", "recommended_cpu_limit", "current_memory_request", "current_memory_limit",
    "p95_memory_usage_bytes", "recommended_memory_request", "recommended_memory_limit", "cpu_sizing",
    "memory_sizing", "throttle_rate_pct",
}  # fmt: skip
TRENDS_FIELDS = {
    "status", "namespace", "days_until_85_percent", "projected_exhaustion_date", "confidence",
    "forecasted_exhaustion_days", "recommended_replica_increase",
}  # fmt: skip


@pytest.fixture(scope="module")
async def prometheus(prom: PrometheusServer) -> AsyncIterator[PrometheusClient]:
    client = PrometheusClient(Settings(prometheus_url=prom.url, prometheus_retry_attempts=2))
    yield client
    await client.aclose()


def app_with(prometheus: PrometheusClient | None) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), prometheus))
    return app


@pytest.fixture(scope="module")
async def http(prometheus: PrometheusClient) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app_with(prometheus))
    async with httpx.AsyncClient(transport=transport, base_url="http://analysis") as client:
        yield client


async def get(
    http: httpx.AsyncClient, prometheus: PrometheusClient, url: str, queries: int
) -> dict[str, Any]:
    """GET, expect 200, and check how many PromQL queries it took (one more when the history is short)."""
    before = prometheus.queries
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert prometheus.queries - before in (queries, queries + 1), prometheus.queries - before
    return response.json()


def last_value(history: History, name: str, **labels: str) -> float:
    return history.series(name, **labels)[-1][1]


def spec(pod: str) -> Any:
    return next(p for p in PODS if p.pod == pod)


# ------------------------------------------------------------------------------------------ memory leaks
async def test_memory_leak_finds_the_leaky_pod_and_only_it(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    body = await get(http, prometheus, "/api/v1/predict/memory-leak", queries=2)
    assert body["status"] == "success"
    rows = {row["pod"]: row for row in body["results"]}
    assert set(rows) == {p.pod for p in PODS}  # one row per container, not one aggregate
    assert [row["pod"] for row in body["results"] if row["leak_detected"]] == [LEAKY_POD]
    assert body["leak_count"] == 1

    leaky = rows[LEAKY_POD]
    samples = history.series(WORKING_SET, pod=LEAKY_POD)
    fit = cap.fit_line(samples)
    assert fit is not None
    assert (leaky["namespace"], leaky["container"]) == ("shop", "leaky")
    assert leaky["current_memory_bytes"] == samples[-1][1]
    assert leaky["daily_growth_bytes"] == pytest.approx(fit.slope_per_day, rel=0.05)
    assert leaky["growth_r_squared"] > 0.95 and leaky["restarts"] == 0
    assert leaky["memory_limit_bytes"] == LEAKY_MEMORY_LIMIT_BYTES
    expected_days = (LEAKY_MEMORY_LIMIT_BYTES - samples[-1][1]) / leaky["daily_growth_bytes"]
    assert leaky["days_until_limit"] == pytest.approx(expected_days, abs=1e-3)
    # Projected from the query time: the last sample's time at the earliest, now at the latest.
    projected_from = datetime.fromisoformat(leaky["projected_limit_time"]) - timedelta(days=expected_days)
    last_sample = datetime.fromtimestamp(samples[-1][0], UTC)
    assert last_sample - timedelta(seconds=2) <= projected_from <= datetime.now(UTC) + timedelta(seconds=2)
    assert 0 < leaky["confidence"] <= 1

    crashy = rows[CRASHY_POD]  # grows fast after every restart, but never for long: not a leak
    assert not crashy["leak_detected"] and crashy["restarts"] >= 1 and crashy["confidence"] == 0
    assert body["aggregate"]["pod"] == body["aggregate"]["container"] == "(aggregated)"


async def test_memory_leak_in_a_namespace_without_one(
    http: httpx.AsyncClient, prometheus: PrometheusClient
) -> None:
    body = await get(http, prometheus, "/api/v1/predict/memory-leak?namespace=payments", queries=2)
    assert body["namespace"] == "payments"
    assert {row["namespace"] for row in body["results"]} == {"payments"}
    assert {row["pod"] for row in body["results"]} == {CRASHY_POD, THROTTLED_POD}
    assert body["leak_count"] == 0 and not body["aggregate"]["leak_detected"]
    nothing = await get(http, prometheus, "/api/v1/predict/memory-leak?namespace=empty", queries=2)
    assert (nothing["results"], nothing["leak_count"]) == ([], 0) and "aggregate" not in nothing


# ------------------------------------------------------------------------------------------ disk
async def test_disk_exhaustion_per_filesystem(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    body = await get(http, prometheus, "/api/v1/predict/disk-exhaustion", queries=2)
    rows = {row["node"]: row for row in body["results"]}
    assert set(rows) == set(NODES)
    for node, row in rows.items():
        samples = history.series("node_filesystem_avail_bytes", node=node)
        assert row["mountpoint"] == "/"
        assert row["available_bytes"] == samples[-1][1]
        assert row["total_bytes"] == NODE_FILESYSTEM_SIZE_BYTES
        assert row["used_percent"] == round(1 - samples[-1][1] / NODE_FILESYSTEM_SIZE_BYTES, 3)
    # node-a loses 2 GiB in 3 hours: full in under 3 days. node-b only fluctuates.
    a, b = rows["node-a"], rows["node-b"]
    fit = cap.fit_line(history.series("node_filesystem_avail_bytes", node="node-a"))
    assert fit is not None
    assert a["daily_fill_rate_bytes"] == pytest.approx(-fit.slope_per_day, rel=0.05)
    assert a["days_until_full"] == math.ceil(a["available_bytes"] / a["daily_fill_rate_bytes"])
    assert a["urgency"] == "critical" and a["projected_full_date"]
    assert b["urgency"] in ("stable", "info")
    assert (body["critical_count"], body["warning_count"]) == (1, 0)
    assert body["results"][0]["node"] == "node-a"  # soonest first
    assert body["aggregate"]["node"] == ""


async def test_disk_exhaustion_filters_by_node_and_mountpoint(
    http: httpx.AsyncClient, prometheus: PrometheusClient
) -> None:
    one = await get(http, prometheus, "/api/v1/predict/disk-exhaustion?node=node-b&mountpoint=/", queries=2)
    assert [row["node"] for row in one["results"]] == ["node-b"]
    assert (one["scope"], one["mountpoint"], one["critical_count"]) == ("node-b", "/", 0)
    # Exact node names: "node" is not a prefix match for node-a and node-b.
    none = await get(http, prometheus, "/api/v1/predict/disk-exhaustion?node=node", queries=2)
    assert none["results"] == [] and none["critical_count"] == 0
    other = await get(
        http, prometheus, "/api/v1/predict/disk-exhaustion?mountpoint=/var/lib/containers", queries=2
    )
    assert other["results"] == []


# ------------------------------------------------------------------------------------------ rightsizing
def prometheus_quantile(values: list[float], q: float) -> float:
    """Prometheus' quantile_over_time: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    lower = math.floor(rank)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] * (1 - (rank - lower)) + ordered[upper] * (rank - lower)


async def test_rightsizing_flags_what_the_data_says(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    body = await get(http, prometheus, "/api/v1/recommendations/rightsizing?window=7d", queries=4)
    assert body["analysis_window"] == "7d"
    rows = {row["pod"]: row for row in body["recommendations"]}
    assert set(rows) == {p.pod for p in PODS}
    for pod, row in rows.items():
        assert RIGHTSIZING_FIELDS <= set(row), RIGHTSIZING_FIELDS - set(row)
        s = spec(pod)
        assert (row["namespace"], row["container"]) == (s.namespace, s.container)
        assert row["current_cpu_request_cores"] == s.cpu_request_cores
        assert row["current_cpu_limit_cores"] == s.cpu_limit_cores
        assert row["current_memory_request_bytes"] == s.memory_request_bytes
        assert row["current_memory_limit_bytes"] == s.memory_limit_bytes
        assert row["current_cpu_request"] == cap.format_cores(s.cpu_request_cores)
        assert row["current_memory_limit"] == cap.format_bytes(s.memory_limit_bytes)
        p95 = prometheus_quantile([v for _, v in history.series(WORKING_SET, pod=pod)], 0.95)
        assert row["p95_memory_usage_bytes"] == pytest.approx(p95, abs=1)
        assert row["recommended_memory_request_bytes"] == pytest.approx(p95 * 1.2, abs=2)
        assert row["recommended_cpu_request_cores"] == pytest.approx(
            row["p95_cpu_usage_cores"] * 1.2, abs=1e-3
        )
        assert (
            row["cpu_sizing"] == cap.sizing(s.cpu_request_cores, row["p95_cpu_usage_cores"]) or row["reasons"]
        )

    throttled = rows[THROTTLED_POD]
    assert throttled["p95_cpu_usage_cores"] == pytest.approx(THROTTLED_CPU_LIMIT_CORES, abs=0.01)
    assert throttled["throttle_rate_pct"] == pytest.approx(THROTTLED_FRACTION * 100, abs=2)
    assert throttled["cpu_sizing"] == "under-provisioned"
    assert throttled["recommended_cpu_limit_cores"] >= 1.5 * THROTTLED_CPU_LIMIT_CORES
    assert throttled["memory_sizing"] == "right-sized"
    leaky = rows[LEAKY_POD]
    assert leaky["memory_sizing"] == "under-provisioned"  # a P95 far above its 256 MiB request
    for cart in (row for row in rows.values() if row["container"] == "cart"):
        assert (cart["cpu_sizing"], cart["memory_sizing"]) == ("right-sized", "right-sized")
        assert cart["throttle_rate_pct"] < 1
    verdicts = [
        "over-provisioned" if "over-provisioned" in sizes else "under-provisioned" if "under-provisioned" in sizes
        else "right-sized"
        for sizes in ((r["cpu_sizing"], r["memory_sizing"]) for r in rows.values())
    ]  # fmt: skip
    assert body["over_provisioned_count"] == verdicts.count("over-provisioned")
    assert body["under_provisioned_count"] == verdicts.count("under-provisioned") >= 2
    assert body["right_sized_count"] == verdicts.count("right-sized") >= 2
    assert body["aggregate"]["container"] == "(aggregated)"


async def test_rightsizing_scopes_by_namespace_and_pod_prefix(
    http: httpx.AsyncClient, prometheus: PrometheusClient
) -> None:
    carts = await get(
        http, prometheus, "/api/v1/recommendations/rightsizing?namespace=shop&pod=cart", queries=4
    )
    assert {row["container"] for row in carts["recommendations"]} == {"cart"}
    assert len(carts["recommendations"]) == 2 and (carts["namespace"], carts["pod"]) == ("shop", "cart")
    assert carts["analysis_window"] == "30d"  # the default
    one = await get(
        http, prometheus, f"/api/v1/recommendations/rightsizing?pod={THROTTLED_POD}&window=90d", queries=4
    )
    assert [row["pod"] for row in one["recommendations"]] == [THROTTLED_POD]
    # A dot in a pod name is literal, not "any character".
    dotted = await get(http, prometheus, "/api/v1/recommendations/rightsizing?pod=cart.5c7d9f8b6", queries=4)
    assert dotted["recommendations"] == []


# ------------------------------------------------------------------------------------------ capacity
def shop_limits(resource: str) -> float:
    return sum(
        p.cpu_limit_cores if resource == "cpu" else p.memory_limit_bytes
        for p in PODS
        if p.namespace == "shop"
    )


async def test_capacity_trends_has_the_fields_the_mcp_server_reads(
    http: httpx.AsyncClient, prometheus: PrometheusClient
) -> None:
    # The state, the usage history, and (memory grows) each container's working set: is it a leak?
    body = await get(http, prometheus, "/api/v1/capacity/trends?namespace=shop", queries=3)
    assert TRENDS_FIELDS - {"projected_exhaustion_date"} <= set(body)  # omitempty in the MCP client
    for key in ("days_until_85_percent", "forecasted_exhaustion_days", "recommended_replica_increase"):
        assert isinstance(body[key], int), key  # the MCP server decodes them into Go ints
    # shop's memory grows with the leak; no quota, so it is measured against the containers' limits.
    memory = body["memory"]
    assert memory["capacity_basis"] == "limits" and memory["capacity"] == shop_limits("memory")
    assert body["cpu"]["capacity"] == shop_limits("cpu")
    assert memory["direction"] == "increasing" and memory["r_squared"] > 0.9  # what the data did
    # The growth is leaky's leak, which stops at its 1 GiB limit (OOM kill): the carts' 600 MiB plus
    # 1 GiB never reach 85 % of the 3 GiB of limits. No exhaustion, so the MCP server appends no
    # "limits reached in 1 day(s) — recommend adding 0 replica(s)".
    assert (memory["days_until_85_percent"], memory["days_until_full"]) == (-1, -1)
    assert f"memory leak in shop/{LEAKY_POD}" in memory["reason"]
    assert (body["days_until_85_percent"], body["forecasted_exhaustion_days"]) == (-1, -1)
    assert "projected_exhaustion_date" not in body
    assert body["recommended_replica_increase"] == 0 and body["replica_advice"]
    assert [(i["kind"], i["pod"]) for i in body["workload_issues"]] == [("memory_leak", LEAKY_POD)]
    assert "leak" in body["workload_issues"][0]["detail"]
    assert 0 < body["confidence"] <= 1 and body["window"] == "7d"

    cluster = await get(http, prometheus, "/api/v1/capacity/trends?namespace=&window=14d", queries=3)
    assert cluster["namespace"] == "" and cluster["window"] == "14d"
    assert cluster["cpu"]["capacity_basis"] == "allocatable"
    assert cluster["cpu"]["capacity"] == pytest.approx(NODE_ALLOCATABLE_CPU_CORES * len(NODES))
    assert cluster["recommended_replica_increase"] == 0  # more replicas do not add allocatable
    assert cluster["forecasted_exhaustion_days"] == -1  # the leak stops at its limit here too
    assert {(i["kind"], i["pod"]) for i in cluster["workload_issues"]} == {
        ("memory_leak", LEAKY_POD),
        ("crash_loop", CRASHY_POD),
    }


async def test_namespace_capacity(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    body = await get(
        http, prometheus, "/api/v1/capacity/namespace/shop?include_infrastructure=true", queries=4
    )
    assert (body["status"], body["namespace"]) == ("success", "shop")
    assert body["quota"] == {"pod_count_limit": 0, "has_quota": False}
    usage = body["current_usage"]
    shop_pods = [p.pod for p in PODS if p.namespace == "shop"]
    assert usage["pod_count"] == len(shop_pods)
    assert usage["memory"]["used_bytes"] == int(
        sum(last_value(history, WORKING_SET, pod=p) for p in shop_pods)
    )
    assert usage["cpu"]["used_numeric"] == pytest.approx(0.2 * 2 + 0.05, abs=0.05)
    assert usage["cpu"]["percent"] is None  # no quota to be a percentage of
    assert body["trending"]["memory"]["direction"] == "increasing"
    assert body["trending"]["days_until_85_percent"] == -1  # a leak, bounded by its limit (see trends)
    assert body["trending"]["workload_issues"][0]["pod"] == LEAKY_POD
    assert body["infrastructure_impact"]["control_plane_health"] == "unknown"  # no etcd metrics here

    plain = await get(
        http, prometheus, "/api/v1/capacity/namespace/payments?include_trending=false", queries=1
    )
    assert "trending" not in plain and "infrastructure_impact" not in plain
    assert plain["current_usage"]["pod_count"] == 2


async def test_cluster_capacity(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    body = await get(http, prometheus, "/api/v1/capacity/cluster", queries=2)
    capacity = body["cluster_capacity"]
    assert capacity["allocatable_cpu_cores"] == pytest.approx(NODE_ALLOCATABLE_CPU_CORES * 2)
    assert capacity["allocatable_memory_bytes"] == NODE_ALLOCATABLE_MEMORY_BYTES * 2
    assert capacity["total_cpu_cores"] == 4 and capacity["total_memory_bytes"] == 16 * GiB
    assert capacity["worker_nodes"] == 2
    assert [n["name"] for n in body["nodes"]] == list(NODES)
    assert {ns["name"]: ns["pod_count"] for ns in body["namespaces"]} == {"payments": 2, "shop": 3}
    used = sum(last_value(history, WORKING_SET, pod=p.pod) for p in PODS)
    assert body["cluster_usage"]["memory"]["used_bytes"] == int(used)
    assert body["cluster_usage"]["memory"]["percent"] == round(
        used / (NODE_ALLOCATABLE_MEMORY_BYTES * 2) * 100, 2
    )
    assert body["cluster_usage"]["pod_count"] == len(PODS)
    assert body["infrastructure"]["etcd_health"] == "unknown"


# ------------------------------------------------------------------------------------------ predict
async def predict(http: httpx.AsyncClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await http.post("/api/v1/predict", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def test_predict_a_throttled_pod_from_its_history(
    http: httpx.AsyncClient, prometheus: PrometheusClient
) -> None:
    before = prometheus.queries
    body = await predict(http, {"hour": 14, "day_of_week": 4, "namespace": "payments", "pod": THROTTLED_POD})
    assert prometheus.queries - before in (2, 3)
    assert (body["status"], body["scope"], body["target"]) == ("success", "pod", f"payments/{THROTTLED_POD}")
    # CPU pinned at its limit; ~150 MiB of a 256 MiB limit.
    assert body["predictions"]["cpu_percent"] == pytest.approx(100, abs=1.5)
    assert body["predictions"]["memory_percent"] == pytest.approx(150 * MiB / (256 * MiB) * 100, abs=3)
    assert body["current_metrics"]["cpu_rolling_mean"] == pytest.approx(100, abs=1.5)
    assert body["current_metrics"]["time_range"] == "24h"
    info = body["model_info"]
    assert info["name"] == "statistical-baseline" and info["version"] and 0 <= info["confidence"] <= 1
    assert body["forecast"]["cpu"]["capacity_basis"] == "limits"
    assert body["trend"] in ("upward", "downward", "stable")
    assert body["recommendation"].startswith("CRITICAL: CPU")
    iso = datetime.fromisoformat(body["target_time"]["iso_timestamp"])
    assert (iso.weekday(), iso.hour, iso.minute) == (4, 14, 0)
    now = datetime.now(UTC)
    assert now < iso <= now + timedelta(days=7)
    assert body["target_time"] == {
        "hour": 14,
        "day_of_week": 4,
        "iso_timestamp": body["target_time"]["iso_timestamp"],
    }


async def test_predict_scopes(http: httpx.AsyncClient) -> None:
    # What the MCP server sends, extra fields included.
    mcp = await predict(
        http,
        {"hour": 9, "day_of_week": 0, "cpu_rolling_mean": 12.5, "memory_rolling_mean": 40.0, "namespace": "shop",
         "scope": "namespace"},
    )  # fmt: skip
    assert (mcp["scope"], mcp["target"]) == ("namespace", "shop")
    for key in ("cpu_percent", "memory_percent"):
        assert 0 <= mcp["predictions"][key] <= 100
    for key in ("cpu_rolling_mean", "memory_rolling_mean", "timestamp"):
        assert mcp["current_metrics"][key] is not None
    assert {"trend", "recommendation", "model_info", "target_time"} <= set(mcp)

    carts = await predict(http, {"hour": 9, "day_of_week": 0, "namespace": "shop", "deployment": "cart"})
    assert (carts["scope"], carts["target"]) == ("deployment", "shop/cart")
    assert carts["forecast"]["cpu"]["capacity_cores"] == 2.0  # two replicas with a 1-core limit
    assert carts["predictions"]["cpu_percent"] == pytest.approx(0.4 / 2.0 * 100, abs=3)

    cluster = await predict(http, {"hour": 0, "day_of_week": 6})
    assert (cluster["scope"], cluster["target"]) == ("cluster", "cluster")
    assert cluster["forecast"]["memory"]["capacity_basis"] == "allocatable"
    everywhere = await predict(http, {"hour": 0, "day_of_week": 6, "scope": "namespace"})
    assert everywhere["target"] == "all-namespaces"

    missing = await predict(http, {"hour": 1, "day_of_week": 1, "namespace": "nothere"}, status=404)
    assert (missing["code"], missing["status"]) == ("NO_DATA", "error") and "nothere" in missing["error"]


async def test_predict_takes_integral_numbers_written_with_a_fraction(http: httpx.AsyncClient) -> None:
    """`14.0` is the integer 14 in JSON, and the contract's `type: integer` says so (schemathesis sent it)."""
    body = await predict(http, {"hour": 14.0, "day_of_week": 4.0, "namespace": "payments"})
    assert (body["target_time"]["hour"], body["target_time"]["day_of_week"]) == (14, 4)


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({"hour": 24, "day_of_week": 1}, "hour must be between 0-23", "hour"),
        ({"hour": -1, "day_of_week": 1}, "hour must be between 0-23", "hour"),
        ({"hour": 1, "day_of_week": 7}, "day_of_week must be between 0-6 (0=Monday, 6=Sunday)", "day_of_week"),
        ({"hour": 1, "day_of_week": 1, "scope": "galaxy"}, "scope must be one of: pod, deployment, namespace, cluster", "scope"),
        ({"hour": 1, "day_of_week": 1, "scope": "pod", "namespace": "shop"}, "pod name is required when scope is 'pod'", "pod"),
        ({"hour": 1, "day_of_week": 1, "pod": "cart-1"}, "namespace is required when scope is 'pod'", "namespace"),
        ({"hour": 1, "day_of_week": 1, "scope": "deployment", "namespace": "shop"}, "deployment name is required when scope is 'deployment'", "deployment"),
        ({"hour": 1, "day_of_week": 1, "deployment": "cart"}, "namespace is required when scope is 'deployment'", "namespace"),
        ({"hour": "3", "day_of_week": 1}, "Invalid request format", "hour"),
        ({"hour": 2.5, "day_of_week": 1}, "Invalid request format", "hour"),
        ({"hour": True, "day_of_week": 1}, "Invalid request format", "hour"),
        ({"hour": 1, "day_of_week": 1, "namespace": 5}, "Invalid request format", "namespace"),
        ({"hour": 1, "day_of_week": 1, "namespace": 'a"}or vector(1)'}, None, "namespace"),
        ({"hour": 1, "day_of_week": 1, "namespace": "shop", "pod": 'x",pod=~".*'}, None, "pod"),
        ({"hour": 1, "day_of_week": 1, "namespace": "shop", "deployment": "cart.*"}, None, "deployment"),
        ({"hour": 1, "day_of_week": 1, "namespace": "Shop"}, None, "namespace"),
        ({"hour": 1, "day_of_week": 1, "namespace": 'shop*"} or vector(1)'}, None, "namespace"),
        ({"hour": 1, "day_of_week": 1, "namespace": "shop.*"}, None, "namespace"),
        ({"hour": 1, "day_of_week": 1, "namespace": "shop*", "pod": "cart*"}, None, "pod"),
        ([1, 2], "Invalid request format", "body"),
    ],
)  # fmt: skip
async def test_predict_rejects_bad_requests_as_the_engine_did(
    http: httpx.AsyncClient, prometheus: PrometheusClient, body: Any, error: str | None, field: str
) -> None:
    before = prometheus.queries
    answer = await predict(http, body, status=400)
    assert (answer["status"], answer["code"], answer["field"]) == ("error", "INVALID_REQUEST", field)
    assert answer["error"] == error if error else field in answer["error"]
    assert prometheus.queries == before  # nothing reached Prometheus


async def test_predict_rejects_a_wrong_content_type_and_bad_json(http: httpx.AsyncClient) -> None:
    plain = await http.post("/api/v1/predict", content=b'{"hour":1}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 400
    assert plain.json()["error"] == "Content-Type must be application/json"
    broken = await http.post(
        "/api/v1/predict", content=b'{"hour":', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert (broken.json()["error"], broken.json()["code"]) == ("Invalid request format", "INVALID_REQUEST")
    assert broken.json()["details"]


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("url", "field"),
    [
        ('/api/v1/predict/memory-leak?namespace=a"}or vector(1)', "namespace"),
        ('/api/v1/predict/memory-leak?namespace=shop"} or on() vector(1) #', "namespace"),
        ("/api/v1/predict/memory-leak?namespace=Shop", "namespace"),
        ("/api/v1/predict/memory-leak?namespace=a.b", "namespace"),
        ("/api/v1/predict/memory-leak?namespace=" + "a" * 64, "namespace"),
        ("/api/v1/predict/disk-exhaustion?node=node-a.*", "node"),
        ('/api/v1/predict/disk-exhaustion?node=node-a"}', "node"),
        ("/api/v1/predict/disk-exhaustion?node=node..a", "node"),
        ('/api/v1/predict/disk-exhaustion?mountpoint=/"}or vector(1)', "mountpoint"),
        ("/api/v1/predict/disk-exhaustion?mountpoint=var/lib", "mountpoint"),
        ("/api/v1/predict/disk-exhaustion?mountpoint=/var/../etc", "mountpoint"),
        ("/api/v1/predict/disk-exhaustion?mountpoint=/var//lib", "mountpoint"),
        ("/api/v1/recommendations/rightsizing?window=1d", "window"),
        ("/api/v1/recommendations/rightsizing?window=30d:5m])) or vector(1", "window"),
        ("/api/v1/recommendations/rightsizing?pod=cart|leaky", "pod"),
        ('/api/v1/recommendations/rightsizing?pod=.*"}', "pod"),
        ("/api/v1/recommendations/rightsizing?namespace=shop&pod=-cart", "pod"),
        ('/api/v1/capacity/trends?namespace=shop*"} or vector(1) #', "namespace"),
        ("/api/v1/capacity/trends?namespace=shop.*", "namespace"),
        ("/api/v1/capacity/trends?namespace=(shop|payments)*", "namespace"),
        ("/api/v1/capacity/trends?namespace=Shop*", "namespace"),
        ("/api/v1/capacity/trends?namespace=" + "a" * 63 + "*", "namespace"),
        ("/api/v1/predict/memory-leak?namespace=shop*", "namespace"),  # wildcards only where promised
        ("/api/v1/capacity/namespace/shop*", "namespace"),
        ("/api/v1/capacity/trends?namespace=shop&window=7", "window"),
        ("/api/v1/capacity/namespace/Shop", "namespace"),
        ("/api/v1/capacity/namespace/a%22%7Dor%20vector(1)", "namespace"),
        ("/api/v1/capacity/namespace/shop?window=365d", "window"),
        ("/api/v1/capacity/namespace/shop?include_trending=maybe", "include_trending"),
        ("/api/v1/capacity/namespace/shop?include_infrastructure=2", "include_infrastructure"),
    ],
)
async def test_bad_query_input_is_a_400_naming_the_field_and_never_reaches_prometheus(
    http: httpx.AsyncClient, prometheus: PrometheusClient, url: str, field: str
) -> None:
    before = prometheus.queries
    response = await http.get(url)
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["status"], body["code"], body["field"]) == ("error", "INVALID_QUERY", field)
    assert field in body["error"]
    assert prometheus.queries == before


# ------------------------------------------------------------------------------------------ Prometheus missing
ROUTES = [
    ("GET", "/api/v1/predict/memory-leak"),
    ("GET", "/api/v1/predict/disk-exhaustion"),
    ("GET", "/api/v1/recommendations/rightsizing"),
    ("GET", "/api/v1/capacity/trends?namespace=shop"),
    ("GET", "/api/v1/capacity/namespace/shop"),
    ("GET", "/api/v1/capacity/cluster"),
    ("POST", "/api/v1/predict"),
]


async def test_without_prometheus_every_route_is_503() -> None:
    transport = httpx.ASGITransport(app_with(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://analysis") as client:
        for method, url in ROUTES:
            response = await client.request(method, url, json={"hour": 1, "day_of_week": 1})
            assert response.status_code == 503, (url, response.text)
            assert response.json()["code"] == "PROMETHEUS_UNAVAILABLE"
            assert response.json()["error"]


async def test_a_stopped_prometheus_is_503_with_retry_after(
    http: httpx.AsyncClient, prom: PrometheusServer
) -> None:
    prom.stop()
    try:
        for method, url in ROUTES:
            response = await http.request(method, url, json={"hour": 1, "day_of_week": 1})
            assert response.status_code == 503, (url, response.text)
            body = response.json()
            assert (body["status"], body["code"]) == ("error", "PROMETHEUS_UNAVAILABLE")
            assert body["error"] and response.headers["Retry-After"].isdigit()
    finally:
        prom.start()
    response = await http.get("/api/v1/predict/memory-leak")
    assert response.status_code == 200 and response.json()["leak_count"] == 1
