"""The API contract: `docs/openapi.json` is what the app serves, a valid OpenAPI 3.1 document, and the live
gateway keeps it — Schemathesis generates requests from it for every operation and checks every answer: no
server error, a declared status code, a declared content type and headers, a body matching the declared schema."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path

import httpx
import pytest
import schemathesis as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipeline.compose.openapi import OPENAPI_PATH, document, render
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.embedded.kube import KubeAPIServer
from pipeline.embedded.process import free_port
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.stages import stage_classes
from tests.integration.test_api_documents import checked as parsed
from tests.support import PipelineUnderTest, schemathesis

API_MD = OPENAPI_PATH.parent / "api.md"
FIRING = Path(__file__).parent.parent / "data" / "alertmanager-webhook-firing.json"


def test_docs_openapi_json_is_the_served_document() -> None:
    settings = Settings()
    assert OPENAPI_PATH.read_text() == render(settings), (
        "docs/openapi.json is out of date: run `pipeline schemas` (it writes docs/openapi.json too)")


def test_the_document_is_valid_openapi_and_declares_what_clients_need() -> None:
    doc = document(Settings())
    validate(doc)  # openapi-spec-validator: OpenAPI 3.1 and its JSON Schema dialect; raises on the first error
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's default 422 body, never answered here
    operations = [(method, path, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) >= 44
    for method, path, op in operations:
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, (method, path)
        for code, response in op["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            assert schema.get("$ref"), (method, path, code, "no response schema")
            if code >= "400" and (path, code) != ("/api/v1/health", "503"):  # unhealthy: the health body
                assert schema["$ref"] == "#/components/schemas/Error", (method, path, code)
        if method in ("post", "put") and "requestBody" not in op:
            assert path.endswith(("/cache/clear", "/approve", "/reject")), (method, path, "no request body")
    listing = doc["paths"]["/api/v1/incidents"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"namespace", "severity", "status", "limit", "offset"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


_MENTION = re.compile(r"`((?:GET|POST|PUT|DELETE)(?:\|(?:GET|POST|PUT|DELETE))*) (/[^`\s?]*)")


def _mentioned(text: str) -> set[tuple[str, str]]:
    """(method, path) of every route docs/api.md names: `GET|POST /a/{x|y}/{id}` is four, placeholders as `{}`."""
    out = set()
    for methods, path in _MENTION.findall(text):
        parts = [p[1:-1].split("|") if p.startswith("{") and "|" in p else ["{}" if p.startswith("{") else p]
                 for p in re.split(r"(\{[^}]*\})", path)]
        out |= {(method, "".join(choice)) for method in methods.split("|") for choice in itertools.product(*parts)}
    return out


def test_docs_api_md_explains_every_operation_and_no_other() -> None:
    doc = json.loads(OPENAPI_PATH.read_text())
    served = {(method.upper(), re.sub(r"\{[^}]*\}", "{}", path)) for path, item in doc["paths"].items()
              for method in item}
    documented = {(m, p) for m, p in _mentioned(API_MD.read_text())
                  if p.startswith(("/api/v1/", "/health"))}  # not Alertmanager's /api/v2, KServe's /v1 and /v2
    assert served - documented == set(), "operations docs/api.md does not explain"
    assert documented - served == set(), "routes docs/api.md names that are not served"


def test_the_npm_openapi_parser_reads_it_without_a_diagnostic() -> None:
    code, report = parsed("openapi", OPENAPI_PATH)  # @readme/openapi-parser, as a JavaScript client's tools would
    assert code == 0 and report["errors"] == report["warnings"] == 0, report


def test_every_example_is_valid_against_its_own_schema() -> None:
    """The examples are what a client developer copies first: each one is checked, nulls included."""
    doc = document(Settings())
    registry = Registry().with_resource("urn:openapi", Resource.from_contents(doc, DRAFT202012))
    examples = [(name, example) for name, schema in doc["components"]["schemas"].items()
                for example in schema.get("examples", [])]
    assert len(examples) >= 20
    for name, example in examples:
        validator = Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=registry)
        problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(example)]
        assert problems == [], name


def test_a_broken_document_is_refused() -> None:
    """The validator is not a formality: a response without a description, an unknown type."""
    doc = json.loads(OPENAPI_PATH.read_text())
    del doc["paths"]["/health"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError, match="description"):
        validate(doc)


async def _seed(http: httpx.AsyncClient) -> dict[str, list[str]]:
    """Objects of every kind the read routes show, made through the API the way clients make them."""
    ids: dict[str, list[str]] = {"workflows": [], "coordination": [], "anomalies": [], "incidents": []}
    assert (await http.post("/api/v1/alerts", content=FIRING.read_bytes())).status_code == 200
    created = await http.post("/api/v1/incidents", json={"title": "disk", "description": "d", "severity": "high",
                                                         "labels": {"namespace": "shop"}})
    ids["incidents"].append(created.json()["incident_id"])
    for path, body, key in (
        ("/api/v1/remediation/trigger", {"incident_id": "inc-1", "namespace": "shop", "issue": {"type": "pod_crash"},
                                         "resource": {"kind": "Deployment", "name": "web"}}, "workflows"),
        ("/api/v1/remediate", {"action": "restart_pod", "namespace": "shop", "target": "Pod/web-1"}, "workflows"),
        ("/api/v1/coordination/trigger", {"incident_id": "inc-2", "description": "node down",
                                          "resources": [{"kind": "Node", "name": "n1"}]}, "coordination"),
        ("/api/v1/anomalies", {"anomaly_type": "memory_leak", "namespace": "shop", "resource_name": "cart",
                               "resource_kind": "Deployment", "confidence": 0.9}, "anomalies"),
    ):
        answer = await http.post(path, json=body)
        assert answer.status_code in (201, 202), answer.text
        ids[key].append(answer.json()["anomaly_id" if key == "anomalies" else "workflow_id"])
    ids["workflows"] += ids["coordination"]
    for _ in range(100):  # the alerts' incidents, and the decisions of every proposal
        decided = (await http.get("/api/v1/decisions")).json()["total"]
        listed = (await http.get("/api/v1/incidents")).json()
        if decided >= 4 and listed["total"] >= 4:
            break
        await asyncio.sleep(0.1)
    ids["incidents"] = [row["id"] for row in listed["incidents"]]
    return ids


@pytest.mark.asyncio
async def test_the_live_gateway_keeps_the_contract(settings: Settings, prom: PrometheusServer,
                                                   kube_apiserver: KubeAPIServer, tmp_path: Path) -> None:
    """With objects of every kind in the read model, each read route's answer matches its declared schema; then
    Schemathesis generates requests for every operation (examples, coverage and fuzzing phases, a bounded number
    each) and checks every answer: no server error, a declared status, content type and headers, a conforming
    body; 502-504 are a dependency's declared answers, a 500 always fails. What each operation is spared, and why,
    is in tests/integration/schemathesis.toml."""
    settings = settings.model_copy(update={  # every dependency there: the routes answer with data, not 503
        "prometheus_url": prom.url, "kubeconfig": str(kube_apiserver.kubeconfig(tmp_path / "kubeconfig")),
        "embedded_ml_port": free_port()})
    plan = Plan(stages=list(stage_classes()), ingest=True, gateway=True, apply_topics=True, embedded_ml=True)
    async with PipelineUnderTest(settings, plan) as running, httpx.AsyncClient(base_url=running.url, timeout=15.0,
                                                                         trust_env=False) as http:
        schema = st.openapi.from_dict((await http.get("/openapi.json")).json())
        ids = await _seed(http)
        checked = 0
        reads = [("/api/v1/incidents/{incident_id}", f"/api/v1/incidents/{i}") for i in ids["incidents"]]
        reads += [("/api/v1/incidents/{incident_id}/timeline", f"/api/v1/incidents/{ids['incidents'][0]}/timeline")]
        reads += [("/api/v1/workflows/{workflow_id}", f"/api/v1/workflows/{w}") for w in ids["workflows"]]
        reads += [("/api/v1/coordination/workflows/{workflow_id}", f"/api/v1/coordination/workflows/{w}")
                  for w in ids["coordination"]]
        reads += [("/api/v1/anomalies/{anomaly_id}", f"/api/v1/anomalies/{a}") for a in ids["anomalies"]]
        reads += [(p, p) for p in ("/api/v1/incidents", "/api/v1/decisions", "/api/v1/workflows",
                                   "/api/v1/coordination/workflows",
                                   "/api/v1/status", "/api/v1/cluster/status", "/api/v1/health", "/health",
                                   "/api/v1/remediation/kill-switch", "/api/v1/remediation/pause")]
        for template, url in reads:
            response = await http.get(url)
            assert response.status_code == 200, (url, response.text)
            schema[template]["GET"].validate_response(response)  # raises naming the field that does not match
            checked += 1
        refused = await http.post(f"/api/v1/workflows/{ids['workflows'][0]}/approve", json={})
        assert refused.status_code == 409, refused.text  # not awaiting approval: skipped, no cluster
        schema["/api/v1/workflows/{workflow_id}/approve"]["POST"].validate_response(refused)
        assert checked >= 13 + len(ids["incidents"])

        code, text = await schemathesis(running.url, tmp_path)
    assert code == 0, text[-20000:]
    operations = sum(len(item) for item in schema.raw_schema["paths"].values())
    assert f"Tested: {operations}" in text, text[-3000:]  # every operation was called, none skipped
