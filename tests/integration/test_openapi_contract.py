"""The API contract: `docs/openapi.json` is what the app serves, a valid OpenAPI 3.1 document, and the live
gateway keeps it — Schemathesis generates requests from it for every operation and checks every answer: no
server error, a declared status code, a declared content type and headers, a body matching the declared schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipeline.compose.openapi import OPENAPI_PATH, document, render
from pipeline.config import Settings
from pipeline.embedded.prometheus import PrometheusServer
from tests.support import PipelineUnderTest, schemathesis


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


@pytest.mark.asyncio
async def test_schemathesis_finds_no_failure_on_the_live_gateway(
    settings: Settings, prom: PrometheusServer, tmp_path: Path,
) -> None:
    """Every operation, a bounded number of generated requests each (examples, coverage and fuzzing phases)."""
    settings = settings.model_copy(update={"prometheus_url": prom.url})
    async with PipelineUnderTest(settings) as running:
        code, text = await schemathesis(running.url, tmp_path)
    assert code == 0, text[-20000:]
    operations = sum(len(item) for item in document(Settings())["paths"].values())
    assert f"Tested: {operations}" in text, text[-3000:]  # every operation was called, none skipped
