"""The Grafana dashboard (deploy/grafana/pipeline.json, and the chart's ConfigMap of it) is one Grafana loads and
one that shows data: it has the dashboard model's structure (uid, title, panels with unique ids, a grid
position each, targets with PromQL), every expression parses in a real Prometheus (which answers 400 to one
that does not) and returns the series it should from the metrics as a scrape of the pipeline labels them,
and every metric it names is one the pipeline registers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest

import pipeline.observability
import pipeline.web.prefix
import pipeline.web.server
from pipeline.embedded.history import History
from pipeline.embedded.prometheus import PrometheusServer
from tests.unit.test_chart_audit import _render

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "pipeline.json"
# What Grafana substitutes before it sends a query: the namespace variable's "All" and a rate window.
VARIABLES = {"$namespace": ".*", "$__rate_interval": "1m"}
STEP_S = 15
# PromQL words that are not metric names, and the functions (an identifier followed by "(").
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]


def _concrete(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers left once strings, label matchers, range and
    grouping clauses are taken out, that are neither functions nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(), text[match.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or (match.start() > 0 and text[match.start() - 1].isdigit()):
            continue  # a duration or a number's exponent
        names.add(word)
    return names


def registered_names() -> set[str]:
    """Every sample name the pipeline's processes export: the default registry once the modules that define
    metrics are imported (a labelled family has no samples before its first use, so its names come from its
    type), plus the process collector's."""
    assert pipeline.observability and pipeline.web.server and pipeline.web.prefix  # their metrics registered
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created", ""), "gauge": ("",), "info": ("_info",),
                "stateset": ("",), "unknown": ("",)}
    names = set()
    for family in prometheus_client.REGISTRY.collect():
        names |= {family.name + s for s in suffixes[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def test_the_dashboard_has_the_grafana_model_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pipeline-overview" and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), ids
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        # every query honours the namespace variable
        assert all('namespace=~"$namespace"' in t["expr"] for t in panel["targets"]), panel["title"]
    # no two panels overlap on the grid
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[x, y] = panel["title"]
    # what the operator asked for is on it
    metrics = set().union(*map(metric_names, _expressions(dashboard)))
    assert {"pipeline_ingest_requests_total", "pipeline_stage_lag", "pipeline_stage_dead_lettered_total",
            "pipeline_circuit_breaker_state", "pipeline_stage_consumed_total", "pipeline_stage_failed_total",
            "coordination_actions_total", "pipeline_remediate_workflows_total",
            "coordination_resolution_time_seconds_bucket", "process_resident_memory_bytes",
            "process_cpu_seconds_total"} <= metrics


def test_every_metric_the_dashboard_names_is_one_the_pipeline_exports() -> None:
    known = registered_names()
    assert metric_names('sum by (stage) (rate(pipeline_stage_lag{namespace=~"a"}[5m])) > 1e-3') == {"pipeline_stage_lag"}
    for expr in _expressions(json.loads(DASHBOARD.read_text())):
        unknown = metric_names(expr) - known
        assert not unknown, f"{expr}: {sorted(unknown)} not exported by the pipeline"


def _scrape(end: float) -> str:
    """Ten minutes of two pipeline pods as Prometheus stores a ServiceMonitor's scrapes of them (namespace and
    pod labels), in OpenMetrics for promtool: ingest answering 3 webhooks in 4 with 200 and 1 with 503, a
    stage with lag, decisions and a histogram of decision times, and the process metrics."""
    lines: list[str] = []  # untyped samples: Prometheus stores the scraped names as they are
    series: list[tuple[str, str, Any]] = []
    ingest = 'namespace="alerts",pod="pipeline-ingest-0"'
    arbitrate = 'namespace="alerts",pod="pipeline-arbitrate-0"'
    other = 'namespace="alerts",pod="someone-else-0"'
    for pod in (ingest, arbitrate):
        series.append(("pipeline_watch_leader", pod, lambda i: 0))
    series += [
        ("pipeline_ingest_requests_total", f'{ingest},route="/api/v1/alerts",code="200"', lambda i: 3 * i),
        ("pipeline_ingest_requests_total", f'{ingest},route="/api/v1/alerts",code="503"', lambda i: i),
        ("pipeline_stage_lag", f'{arbitrate},stage="arbitrate",topic="pipeline.remediation",partition="0"', lambda i: 40),
        ("pipeline_stage_lag", f'{arbitrate},stage="arbitrate",topic="pipeline.remediation",partition="1"', lambda i: 2),
        ("coordination_actions_total", f'{arbitrate},source="deterministic",action="restart_pod",outcome="approved"',
         lambda i: 2 * i),
        ("process_resident_memory_bytes", ingest, lambda i: 90_000_000),
        ("process_resident_memory_bytes", arbitrate, lambda i: 110_000_000),
        ("process_resident_memory_bytes", other, lambda i: 999_000_000),  # not a pipeline pod
    ]
    for le, per_step in (("0.1", 1), ("0.5", 1), ("1.0", 1), ("2.5", 2), ("+Inf", 2)):  # half of them above 1 s
        series.append(("coordination_resolution_time_seconds_bucket", f'{arbitrate},le="{le}"',
                       lambda i, n=per_step: n * i))
    steps = 10 * 60 // STEP_S
    start = end - steps * STEP_S
    for name, labels, value in series:
        for i in range(steps + 1):
            lines.append(f"{name}{{{labels}}} {value(i)} {start + i * STEP_S:.0f}")
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, float]]:
    end = float(int(time.time()) // STEP_S * STEP_S)
    history = History(end=end, duration_s=600, step_s=STEP_S, seed=0, samples={}, openmetrics=_scrape(end),
                      crashy_restart_times=(), generate_s=0.0)
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), history) as prom:
        yield prom, end


def _query(prom: PrometheusServer, expr: str, at: float) -> httpx.Response:
    return httpx.get(f"{prom.url}/api/v1/query", params={"query": expr, "time": at}, timeout=30, trust_env=False)


def test_every_expression_parses_in_prometheus_and_the_panels_show_the_scraped_data(
        scraped: tuple[PrometheusServer, float]) -> None:
    prom, end = scraped
    bad = _query(prom, "sum by (stage (pipeline_stage_lag)", end)
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"  # what a broken panel would get
    for expr in _expressions(json.loads(DASHBOARD.read_text())):
        answer = _query(prom, _concrete(expr), end)
        assert answer.status_code == 200 and answer.json()["status"] == "success", (expr, answer.text)

    def value(title: str) -> dict[str, float]:
        (panel,) = [p for p in _panels(json.loads(DASHBOARD.read_text())) if p["title"] == title]
        result = _query(prom, _concrete(panel["targets"][0]["expr"]), end).json()["data"]["result"]
        return {",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1]) for r in result}

    assert value("Webhooks answered 503") == {"": pytest.approx(0.25)}
    assert value("Consumer lag, by stage and topic") == {"stage=arbitrate,topic=pipeline.remediation": 42}
    assert value("Decisions per second, by outcome") == {"outcome=approved,source=deterministic": pytest.approx(2 / STEP_S)}
    p95 = value("Proposal → decision p95")[""]
    assert 1.0 < p95 <= 2.5  # half of the decisions took over a second: the runbook's line is crossed
    assert value("Resident memory, by pod") == {"pod=pipeline-arbitrate-0": 110_000_000,
                                                "pod=pipeline-ingest-0": 90_000_000}  # not someone else's pod


def test_the_chart_renders_the_dashboard_for_grafanas_sidecar_only_when_asked() -> None:
    assert not [d for d in _render() if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    (config_map,) = [d for d in _render("grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring",
                                        "grafanaDashboard.annotations.grafana_folder=Pipeline")
                     if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Pipeline"}
    assert json.loads(config_map["data"]["pipeline.json"]) == json.loads(DASHBOARD.read_text())
