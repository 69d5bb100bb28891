"""Every route the MCP server calls, answered by the real gateway, checked against the Go types it decodes into.

The MCP server (`KubeHeal/openshift-cluster-health-mcp`, `pkg/clients/coordination_engine.go`) decodes each
answer with `encoding/json` into fixed Go structs. A JSON number where Go has a `string` fails the whole
decode (the MCP tool errors); `1.0` where Go has an `int` fails too; a `null` or missing key for a non-pointer
field decodes as 0 / "" / false, which the MCP then shows as if it were data. The structs are encoded below as
a table of facts (`GO_TYPES`, one entry per Go struct, named after it), and every answer is checked field by
field against them -- types, not only keys.

The pipeline is the one `pipeline run` starts (all stages, ingest, gateway, the reference ML model), on the
session's real Kafka broker, with a real Prometheus holding the generated cluster history
(pipeline/embedded/history.py) for the analysis routes. The requests are the ones the MCP's tools send
(anchor-coordination-engine.md section 2.1), also under the doubled `/api/v1/api/v1/` prefix its Helm chart
causes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline import observability
from pipeline.embedded.history import NODES, THROTTLED_POD
from pipeline.embedded.prometheus import PrometheusServer
from tests.support import EVERYTHING, PipelineUnderTest, eventually, incidents, sample, settings_for

pytestmark = pytest.mark.timeout(300)


# --------------------------------------------------------------------------------------------- Go type facts
@dataclass(frozen=True)
class Go:
    """A Go type as `encoding/json` decodes into it. `absent_ok`: a non-pointer field whose struct tag says
    `omitempty` and whose zero value the MCP treats as "not given" (it prints nothing for it)."""

    kind: str  # string | float64 | int | bool | any | ptr | slice | map | struct
    elem: Go | None = None
    fields: tuple[tuple[str, Go], ...] = ()
    absent_ok: bool = False


STRING, FLOAT64, INT, BOOL, ANY = Go("string"), Go("float64"), Go("int"), Go("bool"), Go("any")


def ptr(elem: Go) -> Go:
    return Go("ptr", elem)


def slice_of(elem: Go) -> Go:
    return Go("slice", elem)


def map_of(elem: Go) -> Go:
    return Go("map", elem)


def struct(**fields: Go) -> Go:
    return Go("struct", fields=tuple(fields.items()))


def omitempty(t: Go) -> Go:
    return replace(t, absent_ok=True)


def mistakes(value: Any, t: Go, path: str = "$") -> list[str]:
    """What the MCP's `json.Decoder` would reject, or would decode into a zero shown as data."""
    if t.kind == "ptr":
        return [] if value is None else mistakes(value, t.elem, path)  # type: ignore[arg-type]
    if value is None:
        return [f"{path}: null for Go {t.kind} (decodes as its zero value, shown as data)"]
    if t.kind == "any":
        return []
    if t.kind == "string":
        return [] if isinstance(value, str) else [f"{path}: {value!r} for Go string (decode error)"]
    if t.kind == "bool":
        return [] if isinstance(value, bool) else [f"{path}: {value!r} for Go bool (decode error)"]
    if t.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} for Go int (decode error; an int needs a JSON integer)"]
    if t.kind == "float64":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return [] if ok else [f"{path}: {value!r} for Go float64 (decode error)"]
    if t.kind == "slice":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} for a Go slice (decode error)"]
        return [m for i, item in enumerate(value) for m in mistakes(item, t.elem, f"{path}[{i}]")]  # type: ignore[arg-type]
    if t.kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} for a Go map (decode error)"]
        return [m for k, v in value.items() for m in mistakes(v, t.elem, f"{path}.{k}")]  # type: ignore[arg-type]
    assert t.kind == "struct", t
    if not isinstance(value, dict):
        return [f"{path}: {type(value).__name__} for a Go struct (decode error)"]
    found: list[str] = []
    for name, field in t.fields:
        if name not in value:
            if field.kind != "ptr" and not field.absent_ok:
                found.append(f"{path}.{name}: missing for Go {field.kind} (decodes as its zero value, shown as data)")
            continue
        found.extend(mistakes(value[name], field, f"{path}.{name}"))
    return found


# The MCP server's structs, field by field (pkg/clients/coordination_engine.go).
INCIDENT = struct(  # Incident
    id=STRING, title=STRING, description=STRING, severity=STRING, status=STRING, priority=INT, target=STRING,
    action_type=STRING, source=STRING, confidence=FLOAT64, parameters=map_of(ANY), created_at=STRING,
    started_at=ptr(STRING), completed_at=ptr(STRING), duration_seconds=ptr(FLOAT64), tags=slice_of(STRING),
)
INCIDENT_LIST = struct(  # IncidentListResponse
    incidents=slice_of(INCIDENT),
    summary=struct(total=INT, active=INT, completed=INT, failed=INT, by_severity=map_of(INT)),
)
CREATE_INCIDENT = struct(  # CreateIncidentResponse
    incident_id=STRING, title=STRING, description=STRING, severity=STRING, priority=INT, status=STRING,
    created_at=STRING, message=STRING,
)
TRIGGER = struct(  # TriggerRemediationResponse
    workflow_id=STRING, status=STRING, deployment_method=STRING, estimated_duration=STRING,
)
ANOMALY_PATTERN = struct(  # AnomalyPattern
    metric=STRING, type=STRING, severity=STRING, anomaly_score=FLOAT64, confidence=FLOAT64, timestamp=STRING,
    value=FLOAT64, expected_min=FLOAT64, expected_max=FLOAT64, model=STRING, metrics=map_of(FLOAT64),
    explanation=STRING, recommended_action=STRING,
)
ANALYZE = struct(  # AnalyzeAnomaliesResponse (with Alert and EnrichedSignals)
    status=STRING, anomalies_detected=INT, time_range=STRING, threshold=FLOAT64, anomalies=slice_of(ANOMALY_PATTERN),
    recommendations=slice_of(STRING),
    alerts=slice_of(struct(type=STRING, message=STRING, severity=STRING, action_required=BOOL)),
    summary=struct(total_metrics_analyzed=INT, anomalies_found=INT, models_used=slice_of(STRING),
                   by_severity=map_of(INT)),
    analyzed_at=STRING,
    enriched_signals=ptr(struct(cpu_throttle_rate=ptr(FLOAT64), http_error_rate=ptr(FLOAT64),
                                http_response_time_p99_ms=ptr(FLOAT64), throttling_detected=BOOL,
                                http_degraded=BOOL)),
)
CLUSTER_STATUS = struct(  # ClusterStatus
    status=STRING, timestamp=STRING,
    actions=struct(total=INT, pending=INT, running=INT, completed=INT, failed=INT),
    conflicts=struct(total=INT, resolved=INT),
    engine=struct(running=BOOL, queue_length=INT, workers_count=INT, uptime=STRING),
)
PREDICT = struct(  # coordinationEnginePredictResponse (unexported: what PredictResourceUsage decodes)
    status=STRING, scope=STRING, target=STRING,
    predictions=struct(cpu_percent=FLOAT64, memory_percent=FLOAT64),
    model_info=struct(name=STRING, version=STRING, confidence=FLOAT64),
    current_metrics=struct(cpu_rolling_mean=FLOAT64, memory_rolling_mean=FLOAT64, timestamp=STRING),
    target_time=struct(hour=INT, day_of_week=INT, iso_timestamp=STRING),
    # omitempty, but the predict tool reads "" as a stable trend and as no recommendation: must be there
    trend=STRING, recommendation=STRING,
)
CAPACITY_TRENDS = struct(  # CapacityTrendingResponse
    status=STRING, namespace=omitempty(STRING), days_until_85_percent=INT,
    projected_exhaustion_date=omitempty(STRING), confidence=FLOAT64, forecasted_exhaustion_days=INT,
    recommended_replica_increase=INT,
)
DISK_EXHAUSTION = struct(  # DiskExhaustionResponse of DiskExhaustionResult
    status=STRING,
    results=slice_of(struct(node=STRING, mountpoint=STRING, available_bytes=FLOAT64, total_bytes=FLOAT64,
                            used_percent=FLOAT64, daily_fill_rate_bytes=FLOAT64, days_until_full=INT,
                            urgency=STRING, projected_full_date=omitempty(STRING))),
    critical_count=INT, warning_count=INT,
)
MEMORY_LEAK = struct(  # MemoryLeakResponse of MemoryLeakResult
    status=STRING, namespace=omitempty(STRING),
    results=slice_of(struct(namespace=STRING, pod=STRING, container=STRING, current_memory_bytes=FLOAT64,
                            daily_growth_bytes=FLOAT64, growth_r_squared=FLOAT64, leak_detected=BOOL,
                            confidence=FLOAT64)),
    leak_count=INT,
)
RIGHTSIZING = struct(  # RightSizingResponse of ContainerRightSizingRec
    status=STRING, namespace=omitempty(STRING), analysis_window=STRING,
    recommendations=slice_of(struct(
        namespace=STRING, pod=STRING, container=STRING, current_cpu_request=STRING, current_cpu_limit=STRING,
        p95_cpu_usage_cores=FLOAT64, recommended_cpu_request=STRING, recommended_cpu_limit=STRING,
        current_memory_request=STRING, current_memory_limit=STRING, p95_memory_usage_bytes=FLOAT64,
        recommended_memory_request=STRING, recommended_memory_limit=STRING, cpu_sizing=STRING,
        memory_sizing=STRING, throttle_rate_pct=ptr(FLOAT64))),
    over_provisioned_count=INT, under_provisioned_count=INT, right_sized_count=INT,
)  # fmt: skip

MCP_CREATE = {  # what the create-incident tool sends (CreateIncidentRequest: camelCase, createdBy mcp-server)
    "title": "Checkout latency regression", "description": "p99 above 2s since the rollout", "severity": "high",
    "source": "manual", "labels": {"namespace": "shop"}, "affectedResources": ["Deployment/checkout"],
    "correlationId": "corr-7", "createdBy": "mcp-server",
}
MCP_TRIGGER = {  # what the trigger-remediation tool sends (TriggerRemediationRequest)
    "incident_id": "inc-mcp", "namespace": "payments", "resource": {"kind": "Deployment", "name": "crashy"},
    "issue": {"type": "pod_crash", "description": "crash looping", "severity": "high"}, "dry_run": True,
}


@dataclass(frozen=True)
class Call:
    """One request the MCP server makes: the tool (or client method) that makes it, and the Go type it decodes."""

    caller: str
    method: str
    url: str
    statuses: tuple[int, ...]  # what the MCP accepts
    go: Go | None  # None: the MCP reads no field (any 2xx)
    body: dict[str, Any] | None = None


CALLS = [
    Call("healthcheck init container", "GET", "/health", (200,), None),
    Call("list-incidents", "GET", "/api/v1/incidents?status=all&severity=all&limit=100&offset=0", (200,),
         INCIDENT_LIST),
    Call("cluster://incidents", "GET", "/api/v1/incidents?status=active&severity=all&limit=100&offset=0", (200,),
         INCIDENT_LIST),
    Call("cluster://remediation-history", "GET",
         "/api/v1/incidents?status=completed&severity=all&limit=100&offset=0", (200,), INCIDENT_LIST),
    Call("cluster://remediation-history", "GET", "/api/v1/incidents?status=failed&severity=all&limit=100&offset=0",
         (200,), INCIDENT_LIST),
    Call("create-incident", "POST", "/api/v1/incidents", (201,), CREATE_INCIDENT, MCP_CREATE),
    Call("trigger-remediation", "POST", "/api/v1/remediation/trigger", (200, 202), TRIGGER, MCP_TRIGGER),
    Call("analyze-anomalies", "POST", "/api/v1/anomalies/analyze", (200,), ANALYZE,
         {"timeRange": "1h", "metrics": ["memory_usage"], "threshold": 0.3, "modelName": "predictive-analytics",
          "namespace": "shop"}),
    Call("get-throttled-pods", "POST", "/api/v1/anomalies/analyze", (200,), ANALYZE,
         {"timeRange": "1h", "metrics": ["cpu_usage"], "threshold": 0.25, "namespace": "payments",
          "pod": THROTTLED_POD}),
    Call("get-remediation-recommendations", "POST", "/api/v1/anomalies/analyze", (200,), ANALYZE,
         {"timeRange": "6h", "metrics": ["cpu", "memory", "disk", "network"], "threshold": 0.7,
          "includePredictions": True}),
    Call("predict-resource-usage", "POST", "/api/v1/predict", (200,), PREDICT,
         {"hour": 15, "day_of_week": 2, "cpu_rolling_mean": 40.0, "memory_rolling_mean": 50.0, "namespace": "shop",
          "scope": "namespace"}),
    Call("predict-resource-usage", "POST", "/api/v1/predict", (200,), PREDICT,
         {"hour": 3, "day_of_week": 6, "cpu_rolling_mean": 0.0, "memory_rolling_mean": 0.0, "scope": "cluster"}),
    Call("predict-resource-usage", "GET", "/api/v1/capacity/trends?namespace=shop", (200,), CAPACITY_TRENDS),
    Call("predict-resource-usage", "GET", "/api/v1/capacity/trends", (200,), CAPACITY_TRENDS),
    Call("predict-disk-exhaustion", "GET", "/api/v1/predict/disk-exhaustion", (200,), DISK_EXHAUSTION),
    Call("predict-disk-exhaustion", "GET", f"/api/v1/predict/disk-exhaustion?node={NODES[0]}&mountpoint=/", (200,),
         DISK_EXHAUSTION),
    Call("get-rightsizing-recommendations", "GET", "/api/v1/recommendations/rightsizing?namespace=payments&window=30d",
         (200,), RIGHTSIZING),
    Call("get-rightsizing-recommendations", "GET", "/api/v1/recommendations/rightsizing?window=30d", (200,),
         RIGHTSIZING),
    Call("DetectMemoryLeaks", "GET", "/api/v1/predict/memory-leak", (200,), MEMORY_LEAK),
    Call("DetectMemoryLeaks", "GET", "/api/v1/predict/memory-leak?namespace=shop", (200,), MEMORY_LEAK),
    Call("GetClusterStatus", "GET", "/api/v1/cluster/status", (200,), CLUSTER_STATUS),
]  # fmt: skip


# ------------------------------------------------------------------------------------------------- the stack
@pytest.fixture(scope="module")
async def gateway(
    kafka_bootstrap: str, prom: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """`pipeline run` on the session broker: every stage, ingest, the gateway and the reference ML model; with
    alert incidents whose remediation has been decided and finished, one of them resolved, and a manual one."""
    settings = settings_for(kafka_bootstrap, Path(tmp_path_factory.mktemp("mcp")) / "data", prometheus_url=prom.url)
    async with PipelineUnderTest(settings, EVERYTHING) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=30.0, trust_env=False) as http:
            firing = sample("alertmanager-webhook-firing.json")
            assert (await http.post("/api/v1/alerts", json=firing)).status_code == 200
            assert (await http.post("/api/v1/incidents", json=MCP_CREATE)).status_code == 201
            resolved = copy.deepcopy(firing)
            resolved["alerts"] = resolved["alerts"][:1]
            resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
            resolved["alerts"][0]["endsAt"] = "2026-11-22T00:10:00Z"

            async def settled() -> bool:
                body = await incidents(http)
                actions = (await http.get("/api/v1/cluster/status")).json()["actions"]
                alerts = [i for i in body["incidents"] if i["source"] == "alertmanager"]
                return (len(alerts) == 2 and actions["total"] >= 2 and actions["pending"] == actions["running"] == 0)

            await eventually(settled, timeout=60)
            assert (await http.post("/api/v1/alerts", json=resolved)).status_code == 200

            async def one_completed() -> bool:
                return (await incidents(http, status="completed"))["summary"]["total"] == 1

            await eventually(one_completed)
            yield http


# ------------------------------------------------------------------------------------------------- the tests
def test_the_type_check_catches_what_breaks_the_mcp() -> None:
    """The checker itself: each mistake the MCP suffers from is caught (so a green table means something)."""
    good = {"status": "healthy", "timestamp": "t", "actions": {"total": 1, "pending": 0, "running": 0,
            "completed": 1, "failed": 0}, "conflicts": {"total": 0, "resolved": 0},
            "engine": {"running": True, "queue_length": 0, "workers_count": 1, "uptime": "1m2s"}}  # fmt: skip
    assert mistakes(good, CLUSTER_STATUS) == []
    number_uptime = copy.deepcopy(good)
    number_uptime["engine"]["uptime"] = 1147.067  # what the gateway sent before: the MCP's decode failed
    null_workers = copy.deepcopy(good)
    null_workers["engine"]["workers_count"] = None
    float_int = copy.deepcopy(good)
    float_int["actions"]["total"] = 1.0
    missing = copy.deepcopy(good)
    del missing["engine"]["queue_length"]
    for broken, where in ((number_uptime, "engine.uptime"), (null_workers, "engine.workers_count"),
                          (float_int, "actions.total"), (missing, "engine.queue_length")):
        (found,) = mistakes(broken, CLUSTER_STATUS)
        assert found.startswith(f"$.{where}:"), found
    incident = {"id": "i", "title": "t", "description": "d", "severity": "high", "status": "active", "priority": 2,
                "target": "shop", "action_type": None, "source": "alertmanager", "confidence": None,
                "parameters": {}, "created_at": "t", "completed_at": None, "tags": []}  # fmt: skip
    assert [m.split(":")[0] for m in mistakes(incident, INCIDENT)] == ["$.action_type", "$.confidence"]


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.caller}:{c.method} {c.url}" for c in CALLS])
async def test_each_mcp_call_decodes_into_the_mcp_types(gateway: httpx.AsyncClient, call: Call) -> None:
    response = await gateway.request(call.method, call.url, json=call.body)
    assert response.status_code in call.statuses, response.text
    body = response.json()  # JSON, even where the MCP reads nothing
    if call.go is not None:
        assert mistakes(body, call.go) == [], body


async def test_incidents_carry_real_values_where_the_mcp_has_no_null(gateway: httpx.AsyncClient) -> None:
    """Alert incidents: confidence 1.0 (observed), action_type a word the MCP can show, never "" or 0; the
    finished one has its completion time and duration, the open ones none yet."""
    body = await incidents(gateway)
    alerts = [i for i in body["incidents"] if i["source"] == "alertmanager"]
    assert len(alerts) == 2 and all(i["confidence"] == 1.0 for i in alerts)
    # the remediator has no cluster here: every workflow ends skipped, so nothing was done
    assert {(i["action_type"], i["remediation_status"]) for i in alerts} == {("none", "skipped")}
    (done,) = [i for i in alerts if i["status"] == "completed"]
    assert done["completed_at"] and done["duration_seconds"] >= 0
    (still,) = [i for i in alerts if i["status"] == "active"]
    assert still["completed_at"] is None and still["duration_seconds"] is None
    manual = [i for i in body["incidents"] if i["source"] == "manual"]
    assert manual and {(i["confidence"], i["action_type"]) for i in manual} == {(1.0, "none")}  # as stated; no action


async def test_cluster_status_says_uptime_for_people_and_seconds_for_machines(gateway: httpx.AsyncClient) -> None:
    status = (await gateway.get("/api/v1/cluster/status")).json()
    engine = status["engine"]
    assert engine["workers_count"] == 1  # the remediate stage's one consumer in this process
    assert isinstance(engine["uptime_seconds"], float) and engine["uptime_seconds"] > 0
    seconds = int(engine["uptime_seconds"])
    expected = (f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s")
    assert engine["uptime"] == expected  # Go's time.Duration.String(), to the second
    assert status["status"] == "healthy" and status["reasons"] == []


async def test_the_mcp_charts_doubled_prefix_is_served(
    gateway: httpx.AsyncClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MCP chart's default base URL ends in /api/v1: its requests arrive as /api/v1/api/v1/... and get the
    same answers as under /api/v1/, with one warning that names the fix."""
    # the process-wide limit on repeated warnings would drop this gateway's if another test's gateway in this
    # process warned within its window
    monkeypatch.setattr(observability._repeats, "window_s", 0.0)
    listed = "/api/v1/incidents?status=all&severity=all&limit=100&offset=0"
    analyze = {"timeRange": "1h", "metrics": ["memory_usage"], "threshold": 0.3,
               "modelName": "predictive-analytics", "namespace": "shop"}  # fmt: skip
    capsys.readouterr()
    doubled = [await gateway.get("/api/v1" + listed),
               await gateway.post("/api/v1/api/v1/anomalies/analyze", json=analyze)]  # fmt: skip
    plain = [await gateway.get(listed), await gateway.post("/api/v1/anomalies/analyze", json=analyze)]
    assert [r.status_code for r in doubled] == [r.status_code for r in plain] == [200, 200]
    assert doubled[0].json()["incidents"] == plain[0].json()["incidents"]
    assert mistakes(doubled[0].json(), INCIDENT_LIST) == [] and mistakes(doubled[1].json(), ANALYZE) == []
    assert {a["metric"] for a in doubled[1].json()["anomalies"]} == {a["metric"] for a in plain[1].json()["anomalies"]}
    assert (await gateway.get("/api/v1/api/v1/cluster/status")).status_code == 200
    warnings = [line for line in capsys.readouterr().err.splitlines() if "doubled /api/v1 prefix" in line]
    assert len(warnings) == 1 and "COORDINATION_ENGINE_URL=http://<gateway>:8080" in warnings[0]  # once, with the fix
    metrics = (await gateway.get("/metrics")).text
    counted = [line for line in metrics.splitlines() if line.startswith("pipeline_gateway_doubled_prefix_requests_total")]
    assert counted and float(counted[0].split()[-1]) >= 3
    assert (await gateway.get("/api/v1/api/v1/no-such-route")).status_code == 404
