"""The reference ML service over real HTTP, with a model trained here from a real Prometheus.

The model is trained once for the module (`train_or_load` into a fresh directory: generated history, a
real Prometheus, the project's FeatureCollector). The scenario vectors come from a second real Prometheus
serving the default history ending now, collected at the scenario's end, exactly as the enrich stage
would. The service runs in this process under uvicorn on a free loopback port, and once more as
`python -m pipeline.cli ml serve` to show the version survives a reload. Both KServe protocols are
checked: v1, and v2 (the Open Inference Protocol, which the MCP server's get-model-status speaks).

Needs the binaries from scripts/install-components.sh; fails (never skips) without them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.adapters.features import FeatureCollector
from pipeline.adapters.prometheus import PrometheusClient
from pipeline.domain.features import FEATURE_NAMES, LOOKBACK_S, STEP_S, Scope, base_queries, node_lookup_query
from pipeline.embedded.history import (
    CART_NAMESPACE,
    CART_PODS,
    CRASHY_NAMESPACE,
    CRASHY_POD,
    CRASHY_RESTART_INTERVAL_S,
    LEAKY_NAMESPACE,
    LEAKY_POD,
    History,
)
from pipeline.embedded.process import free_port
from pipeline.ml.api import create_app
from pipeline.ml.model import MODEL_NAME, ReferenceModel, train_or_load
from pipeline.web.server import server

LEAKY = Scope(namespace=LEAKY_NAMESPACE, pod=LEAKY_POD)
CRASHY = Scope(namespace=CRASHY_NAMESPACE, pod=CRASHY_POD)
CARTS = [Scope(namespace=CART_NAMESPACE, pod=pod) for pod in CART_PODS]
PREDICT = f"/v1/models/{MODEL_NAME}:predict"


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ml-model")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> ReferenceModel:
    """Trained here (not from a cache): the test covers training too."""
    return train_or_load(model_dir)


@pytest.fixture(scope="module")
async def vectors(prometheus: PrometheusClient, history: History) -> dict[str, list[float | None]]:
    """The scenario pods' vectors at the end of the history (complete: every value measured)."""
    collector = FeatureCollector(prometheus)
    out = {}
    for name, scope in {"leaky": LEAKY, "crashy": CRASHY, "cart-0": CARTS[0], "cart-1": CARTS[1]}.items():
        collected = await collector.collect(scope, history.end)
        assert collected.vector.complete, collected.vector.missing
        out[name] = collected.vector.values
    return out


@pytest.fixture(scope="module")
async def service(model: ReferenceModel) -> AsyncIterator[str]:
    """The service under uvicorn in this process, on a free loopback port."""
    port = free_port()
    srv = server(create_app(model), "127.0.0.1", port)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        assert not task.done(), "the service exited before listening"
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await task


@pytest.fixture
async def http(service: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service, timeout=30.0, trust_env=False) as client:
        yield client


async def predict(http: httpx.AsyncClient, instances: list[list[float | None]]) -> dict[str, Any]:
    response = await http.post(PREDICT, json={"instances": instances})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ============================================================================ the scenarios
async def test_leak_and_crash_loop_score_anomalous_and_cart_does_not(
    http: httpx.AsyncClient, vectors: dict[str, list[float | None]], model: ReferenceModel
) -> None:
    order = ["leaky", "crashy", "cart-0", "cart-1"]
    body = await predict(http, [vectors[name] for name in order])
    assert body["predictions"] == [-1, -1, 1, 1]
    leaky, crashy, *carts = body["scores"]
    assert min(leaky, crashy) > 0.5 > max(carts)
    assert all(0.0 <= c <= 1.0 for c in body["confidences"])
    assert body["imputed"] == [[], [], [], []]
    assert body["model_name"] == MODEL_NAME and body["model_version"] == model.version


async def test_the_scenarios_score_consistently_over_time(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    """Leak: the whole last hour; crash loop: while it lasts; cart: before the crash loop (whose restarts
    also churn the memory of the node one cart pod shares with it)."""
    collector = FeatureCollector(prometheus)

    async def flagged(scope: Scope, times: list[float]) -> float:
        rows = [(await collector.collect(scope, at)).vector.values for at in times]
        return (await predict(http, rows))["predictions"].count(-1) / len(rows)

    last_hour = [history.end - back for back in range(0, 3600, 120)]
    loop_start = history.crashy_restart_times[0] + 2 * CRASHY_RESTART_INTERVAL_S
    crash_loop = [t for t in last_hour if t >= loop_start]
    quiet = [history.crashy_restart_times[0] - back for back in range(600, 5400, 120)]
    assert await flagged(LEAKY, last_hour) >= 0.9
    assert await flagged(CRASHY, crash_loop) >= 0.9
    for cart in CARTS:
        assert await flagged(cart, quiet) <= 0.1


# ============================================================================ KServe v1
async def test_kserve_readiness_and_model_list(http: httpx.AsyncClient, model: ReferenceModel) -> None:
    ready = await http.get(f"/v1/models/{MODEL_NAME}")
    assert ready.status_code == 200
    assert ready.json() == {"name": MODEL_NAME, "ready": True, "version": model.version}
    assert (await http.get("/v1/models")).json() == {"models": [MODEL_NAME]}
    unknown = await http.get("/v1/models/predictive-analytics")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "model not found: predictive-analytics"
    assert (
        await http.post("/v1/models/predictive-analytics:predict", json={"instances": [[0.1] * 45]})
    ).status_code == 404


async def test_kserve_imputes_nulls_and_says_so(
    http: httpx.AsyncClient, vectors: dict[str, list[float | None]]
) -> None:
    row = list(vectors["cart-0"])
    row[FEATURE_NAMES.index("node_cpu_utilization_std_5m")] = None
    body = await predict(http, [row])
    assert body["imputed"] == [["node_cpu_utilization_std_5m"]]
    assert body["predictions"] == [1]


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        (json.dumps({"instances": [[0.1] * 44]}), "instances[0]", "has 44 values; the model expects 45"),
        (
            json.dumps({"instances": [[0.1] * 45, [0.1] * 10 + ["high"] + [0.1] * 34]}),
            "instances[1][10]",
            "node_memory_utilization_mean_5m is not a number",
        ),
        (json.dumps({"instances": [[0.1] * 44 + [True]]}), "instances[0][44]", "is not a number"),
        ('{"instances": [[' + ", ".join(["0.1"] * 44 + ["NaN"]) + "]]}", "instances[0][44]", "is not finite"),
        (json.dumps({"instances": []}), "instances", "non-empty list"),
        (json.dumps({"inputs": [[0.1] * 45]}), "instances", "Missing 'instances' field"),
        (json.dumps([[0.1] * 45]), "instances", "Missing 'instances' field"),
    ],
)
async def test_kserve_rejects_what_is_not_45_numbers(
    http: httpx.AsyncClient, content: str, field: str, words: str
) -> None:
    response = await http.post(PREDICT, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field and words in body["error"], body


async def test_a_body_that_is_not_json_is_a_400(http: httpx.AsyncClient) -> None:
    for path in (PREDICT, "/api/v1/anomaly/detect", "/api/v1/prediction/predict", "/api/v1/pattern/analyze"):
        response = await http.post(path, content=b"{instances:", headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.json()["code"] == "INVALID_JSON"


async def test_deeply_nested_json_is_a_400_on_every_post_route_and_the_service_keeps_answering(
    http: httpx.AsyncClient,
) -> None:
    nested = b"[" * 10_000 + b"]" * 10_000
    for path in (PREDICT, "/api/v1/anomaly/detect", "/api/v1/prediction/predict", "/api/v1/pattern/analyze",
                 "/v2/models/model/infer"):
        response = await http.post(path, content=nested, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        assert "deeper than 64 levels" in response.json()["error"]
    assert (await http.get("/health")).status_code == 200


# ============================================================================ KServe v2 (Open Inference Protocol)
def v2_tensor(rows: list[list[float | None]], datatype: str = "FP64", nested: bool = False) -> dict[str, Any]:
    data: list[Any] = [list(r) for r in rows] if nested else [v for r in rows for v in r]
    return {"name": "input-0", "shape": [len(rows), len(FEATURE_NAMES)], "datatype": datatype, "data": data}


async def test_v2_health_metadata_and_the_name_the_mcp_server_asks_for(
    http: httpx.AsyncClient, model: ReferenceModel
) -> None:
    assert (await http.get("/v2/health/live")).json() == {"live": True}
    assert (await http.get("/v2/health/ready")).json() == {"ready": True}
    server = (await http.get("/v2")).json()
    assert server["name"] and server["version"] and server["extensions"] == []
    expected = {
        "name": MODEL_NAME,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 45]}],
        "outputs": [
            {"name": "predictions", "datatype": "INT64", "shape": [-1]},
            {"name": "scores", "datatype": "FP64", "shape": [-1]},
            {"name": "confidences", "datatype": "FP64", "shape": [-1]},
        ],
    }
    # The MCP server's get-model-status: GET /v2/models/model, ready iff 200, the name from `name`.
    for name in ("model", MODEL_NAME):
        for path in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{model.version}"):
            response = await http.get(path)
            assert response.status_code == 200 and response.json() == expected, path
        for path in (f"/v2/models/{name}/ready", f"/v2/models/{name}/versions/{model.version}/ready"):
            assert (await http.get(path)).json() == {"name": MODEL_NAME, "ready": True}
    for path in ("/v2/models/predictive-analytics", "/v2/models/predictive-analytics/ready"):
        unknown = await http.get(path)
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "model not found: predictive-analytics"}
    old = await http.get(f"/v2/models/{MODEL_NAME}/versions/0000/ready")
    assert old.status_code == 404
    assert old.json() == {"error": f"model {MODEL_NAME} has no version 0000; it serves {model.version}"}


async def test_v2_infer_answers_what_v1_answers_flat_or_nested_fp32_or_fp64(
    http: httpx.AsyncClient, vectors: dict[str, list[float | None]], model: ReferenceModel
) -> None:
    rows = [vectors[name] for name in ("leaky", "crashy", "cart-0", "cart-1")]
    v1 = await predict(http, rows)
    for body in (
        {"inputs": [v2_tensor(rows)]},
        {"inputs": [v2_tensor(rows, nested=True)]},
        {"inputs": [{**v2_tensor(rows, "FP32"), "name": "anything"}]},
    ):
        response = await http.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["model_name"], answer["model_version"]) == (MODEL_NAME, model.version)
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert list(outputs) == ["predictions", "scores", "confidences"]
        assert outputs["predictions"] == {
            "name": "predictions",
            "datatype": "INT64",
            "shape": [4],
            "data": [-1, -1, 1, 1],
        }
        assert (
            outputs["scores"]["data"] == v1["scores"] and outputs["confidences"]["data"] == v1["confidences"]
        )
    narrowed = await http.post(
        f"/v2/models/model/versions/{model.version}/infer",
        json={"id": "req-7", "inputs": [v2_tensor(rows[:1])], "outputs": [{"name": "scores"}]},
    )
    assert narrowed.json() == {
        "model_name": MODEL_NAME,
        "model_version": model.version,
        "id": "req-7",
        "outputs": [{"name": "scores", "datatype": "FP64", "shape": [1], "data": v1["scores"][:1]}],
    }


ROW = [0.1] * 45


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"inputs": []}, "'inputs' must hold exactly one tensor of shape [n, 45], got 0 tensors"),
        ({"instances": [ROW]}, "'inputs' must hold exactly one tensor of shape [n, 45], got None"),
        ({"inputs": [{"shape": [1, 45], "datatype": "FP64", "data": ROW}]}, "inputs[0].name is required"),
        ({"inputs": [{**v2_tensor([ROW]), "datatype": "INT64"}]}, "input 'input-0': datatype must be FP32 or FP64, got 'INT64'"),
        ({"inputs": [{**v2_tensor([ROW]), "shape": [1, 44]}]}, "input 'input-0': shape must be [n, 45] with 1 <= n <= 10000, got [1, 44]"),
        ({"inputs": [{**v2_tensor([ROW]), "shape": [2, 45]}]}, "input 'input-0': data has 45 values; shape [2, 45] needs 90"),
        ({"inputs": [{**v2_tensor([ROW, ROW[:44]], nested=True)}]}, "input 'input-0': nested data has 2 rows of [44, 45] values; the shape says 2 x 45"),
        ({"inputs": [v2_tensor([[*ROW[:10], "high", *ROW[11:]]])]}, "input 'input-0': data[0][10]: node_memory_utilization_mean_5m is not a number: 'high'"),
        ({"inputs": [v2_tensor([[*ROW[:44], None]])]}, "input 'input-0': data[0][44] (container_restart_count_pct_change) is null; a FP64 tensor holds numbers (the v1 route imputes null)"),
        ({"inputs": [v2_tensor([ROW])], "outputs": [{"name": "imputed"}]}, "outputs[0].name: unknown output 'imputed' (known: predictions, scores, confidences)"),
        ([ROW], "the request body must be a JSON object with 'inputs'"),
    ],
)  # fmt: skip
async def test_v2_rejects_what_is_not_one_tensor_of_45_numbers_saying_what_is_wrong(
    http: httpx.AsyncClient, body: Any, error: str
) -> None:
    response = await http.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": error}


async def test_v2_errors_for_bodies_that_are_not_json_and_unknown_models(http: httpx.AsyncClient) -> None:
    garbled = await http.post("/v2/models/model/infer", content=b"{inputs:")
    assert garbled.status_code == 400 and garbled.json()["error"].startswith("request body is not valid JSON")
    unknown = await http.post("/v2/models/predictive-analytics/infer", json={"inputs": [v2_tensor([ROW])]})
    assert unknown.status_code == 404 and unknown.json() == {"error": "model not found: predictive-analytics"}


# ============================================================================ the ML-service routes
async def test_health(http: httpx.AsyncClient, model: ReferenceModel) -> None:
    response = await http.get("/health")
    assert response.json() == {"status": "healthy", "model": MODEL_NAME, "model_version": model.version}


async def test_detect_with_a_feature_vector_explains_the_leak(
    http: httpx.AsyncClient, vectors: dict[str, list[float | None]], model: ReferenceModel
) -> None:
    as_list = (await http.post("/api/v1/anomaly/detect", json={"features": vectors["leaky"]})).json()
    as_object = (
        await http.post(
            "/api/v1/anomaly/detect",
            json={
                "features": dict(zip(FEATURE_NAMES, vectors["leaky"], strict=True)),
                "timestamp": "2026-01-01T00:00:00Z",
            },
        )
    ).json()
    assert as_list["prediction"] == as_object["prediction"] == -1
    assert as_list["score"] == as_object["score"] > 0.5
    assert as_object["evaluated_at"] == "2026-01-01T00:00:00Z"
    assert as_list["model_version"] == model.version and as_list["imputed"] == []
    names = [a["metric_name"] for a in as_list["anomalies"]]
    assert "pod_memory_usage_value" in names
    memory = as_list["anomalies"][names.index("pod_memory_usage_value")]
    assert memory["value"] > 0.9 and memory["expected"] < 0.4 and memory["severity"] == "high"
    assert set(memory) == {
        "metric_name",
        "value",
        "expected",
        "deviation",
        "severity",
        "confidence",
        "timestamp",
        "reason",
    }
    assert as_list["summary"] == {
        "total": 45,
        "anomalies_found": len(names),
        "high_severity": sum(a["severity"] == "high" for a in as_list["anomalies"]),
        "confidence": as_list["confidence"],
    }
    normal = (await http.post("/api/v1/anomaly/detect", json={"features": vectors["cart-0"]})).json()
    assert normal["prediction"] == 1 and normal["anomalies"] == []


async def range_metrics(
    prometheus: PrometheusClient, scope: Scope, at: float, lookback_s: int = LOOKBACK_S
) -> list[dict[str, Any]]:
    """What a legacy client sends: each base metric's samples on the 1-minute grid, named, timestamped."""
    lookup = node_lookup_query(scope)
    assert lookup is not None
    nodes = sorted({s.labels["node"] for s in await prometheus.query(lookup, at)})
    metrics = []
    for name, expr in base_queries(scope, nodes).items():
        (series,) = await prometheus.query_range(expr, at - lookback_s, at, STEP_S)
        metrics += [
            {
                "name": name,
                "value": v,
                "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
                "labels": {"namespace": scope.namespace or "", "pod": scope.pod or ""},
            }
            for t, v in series.samples
        ]
    return metrics


async def test_detect_with_legacy_metrics_computes_the_same_vector(
    http: httpx.AsyncClient,
    prometheus: PrometheusClient,
    history: History,
    vectors: dict[str, list[float | None]],
) -> None:
    metrics = await range_metrics(prometheus, CRASHY, history.end)
    latency = [
        {
            "name": "http_request_duration_seconds",
            "value": 0.2 + 0.001 * (i % 3),
            "timestamp": history.end - 60 * (10 - i),
        }
        for i in range(10)
    ]
    latency.append({"name": "http_request_duration_seconds", "value": 3.5, "timestamp": history.end})
    legacy = (
        await http.post("/api/v1/anomaly/detect", json={"metrics": metrics + latency, "threshold": 3})
    ).json()
    kserve = await predict(http, [vectors["crashy"]])
    assert legacy["prediction"] == -1 and legacy["imputed"] == []
    assert legacy["score"] == pytest.approx(kserve["scores"][0], abs=1e-12)
    spike = [a for a in legacy["anomalies"] if a["metric_name"] == "http_request_duration_seconds"]
    assert len(spike) == 1 and spike[0]["severity"] == "high" and spike[0]["expected"] == pytest.approx(0.201)
    assert legacy["summary"]["total"] == 46


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"features": {"pod_memory_usage_value": 0.9, "memory_leak": 1}},
            "features.memory_leak",
            "unknown feature",
        ),
        ({"features": [0.1] * 40}, "features", "has 40 values"),
        ({"features": {}}, "features", "every value is missing"),
        ({"features": "all of them"}, "features", "expected a list of 45 numbers"),
        ({}, "body", "give `features`"),
        (
            {"metrics": [{"name": "x", "value": "high", "timestamp": "2026-01-01T00:00:00Z"}]},
            "metrics[0].value",
            "valid number",
        ),
        ({"metrics": [{"name": "x", "value": 1}]}, "metrics[0].timestamp", "Field required"),
        (
            {
                "metrics": [
                    {"name": "pod_cpu_usage", "value": 1, "timestamp": 1, "labels": {"pod": "a"}},
                    {"name": "pod_cpu_usage", "value": 1, "timestamp": 1, "labels": {"pod": "b"}},
                ]
            },
            "metrics",
            "send one scope per request",
        ),
        ({"features": [0.1] * 45, "threshold": 0}, "threshold", "greater than 0"),
    ],
)
async def test_detect_rejects_malformed_requests(
    http: httpx.AsyncClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = await http.post("/api/v1/anomaly/detect", json=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == field and words in answer["error"], answer


async def test_prediction_extrapolates_the_leak(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    memory = [
        m for m in await range_metrics(prometheus, LEAKY, history.end) if m["name"] == "pod_memory_usage"
    ]
    cart = [
        m for m in await range_metrics(prometheus, CARTS[0], history.end) if m["name"] == "pod_memory_usage"
    ]
    for m in cart:
        m["name"] = "cart_memory"
    response = await http.post(
        "/api/v1/prediction/predict",
        json={"historical_metrics": memory + cart, "predict_ahead": "1h", "include_confidence": True},
    )
    assert response.status_code == 200
    body = response.json()
    leak, steady = body["predictions"]
    assert leak["metric_name"] == 'pod_memory_usage{namespace="shop",pod="leaky-6c9d8-abcde"}'
    assert leak["trend"] == "increasing" and leak["risk"] == "high"
    # 750 MiB over 3 h: ~0.24 of the limit per hour
    assert leak["predicted_value"] > memory[-1]["value"] + 0.2
    assert leak["timestamp"] == datetime.fromtimestamp(history.end + 3600, UTC).isoformat().replace(
        "+00:00", "Z"
    )
    assert steady["trend"] == "stable" and steady["risk"] == "low"
    assert body["summary"]["time_range"] == "1h" and body["summary"]["metrics_count"] == 2
    bad = await http.post(
        "/api/v1/prediction/predict", json={"historical_metrics": memory, "predict_ahead": "soon"}
    )
    assert bad.status_code == 400 and bad.json()["field"] == "predict_ahead"
    empty = await http.post("/api/v1/prediction/predict", json={"historical_metrics": []})
    assert empty.status_code == 400 and empty.json()["field"] == "historical_metrics"


async def test_patterns_of_the_leak_and_the_crash_loop(
    http: httpx.AsyncClient, prometheus: PrometheusClient, history: History
) -> None:
    leaky = await range_metrics(prometheus, LEAKY, history.end, lookback_s=3600)
    crashy = await range_metrics(prometheus, CRASHY, history.end, lookback_s=3600)
    metrics = [m for m in leaky if m["name"] == "pod_memory_usage"]
    metrics += [{**m, "name": "crashy_restarts"} for m in crashy if m["name"] == "container_restart_count"]
    window = {
        "start": datetime.fromtimestamp(history.end - 1800, UTC).isoformat(),
        "end": datetime.fromtimestamp(history.end, UTC).isoformat(),
    }
    response = await http.post("/api/v1/pattern/analyze", json={"metrics": metrics, "time_range": window})
    assert response.status_code == 200
    body = response.json()
    kinds = {(p["type"], p["metrics"][0].split("{")[0]) for p in body["patterns"]}
    assert ("trend", "pod_memory_usage") in kinds
    assert ("trend", "crashy_restarts") in kinds  # a restart every 5 minutes
    assert any(
        i.startswith('pod_memory_usage{namespace="shop"') and "reaches 1.0" in i for i in body["insights"]
    )
    assert (
        body["summary"]["patterns_found"] == len(body["patterns"]) and 0 < body["summary"]["confidence"] <= 1
    )
    assert {"type", "description", "metrics", "confidence", "start_time", "end_time"} <= set(
        body["patterns"][0]
    )
    other = (
        await http.post("/api/v1/pattern/analyze", json={"metrics": metrics, "analysis_type": "layers"})
    ).json()
    assert (
        "analysis_type 'layers' is not one of trend, spike, level_shift, correlation: ran all"
        in other["insights"]
    )
    assert other["summary"]["patterns_found"] >= len(body["patterns"])
    backwards = {"start": window["end"], "end": window["start"]}
    bad = await http.post("/api/v1/pattern/analyze", json={"metrics": metrics, "time_range": backwards})
    assert bad.status_code == 400 and bad.json()["field"] == "time_range"
    assert "end is before start" in bad.json()["error"]
    restarts = [p for p in body["patterns"] if p["metrics"][0].startswith("crashy_restarts")]
    assert all(p["start_time"] >= window["start"].replace("+00:00", "Z") for p in restarts)


# ============================================================================ reload
async def test_the_version_is_stable_across_a_reload(
    model: ReferenceModel, model_dir: Path, vectors: dict[str, list[float | None]], http: httpx.AsyncClient
) -> None:
    assert ReferenceModel.load(model_dir).version == model.version
    assert model.training["size"] > 400 and model.training["imputed"] == {}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "ml", "serve", "--port", "0", "--model-dir", str(model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=120)
        ready = json.loads(line)
        assert ready["model_version"] == model.version and ready["url"].startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=ready["url"], timeout=30.0, trust_env=False) as reloaded:
            assert (await reloaded.get("/health")).json()["model_version"] == model.version
            mcp = await reloaded.get("/v2/models/model")  # what the MCP server's get-model-status asks
            assert mcp.status_code == 200 and mcp.json()["versions"] == [model.version]
            again = (await reloaded.post(PREDICT, json={"instances": [vectors["leaky"]]})).json()
        here = await predict(http, [vectors["leaky"]])
        assert again == here
    finally:
        proc.terminate()
        proc.wait(timeout=30)
