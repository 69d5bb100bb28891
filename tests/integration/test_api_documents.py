"""The AsyncAPI document in `schemas/` is read by the official parser (`@asyncapi/parser`, pinned in
scripts/api-docs/package-lock.json and installed by scripts/setup) without an error, and what the parser reads is
what `topics/` and the event models say; a broken document fails the same check, naming where it is broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.bus.topics import load_specs
from pipeline.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "scripts" / "api-docs" / "validate.mjs"
# Diagnostics below error level the committed document keeps on purpose: the parser recommends AsyncAPI 3.1.0, and
# the document stays 3.0.0, the version every AsyncAPI 3 tool reads.
ACCEPTED = {("info", "asyncapi-latest-version")}


def validate(kind: str, path: Path, **env: str) -> tuple[int, dict[str, Any] | None, str]:
    """Exit code, the JSON report (None when the validator could not run) and stderr of one validator run."""
    node = shutil.which("node")
    assert node, "node is not on PATH: run scripts/setup (installs Node.js and npm, then the parsers)"
    done = subprocess.run([node, str(VALIDATOR), kind, str(path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout) if done.returncode != 2 else None, done.stderr


def checked(kind: str, path: Path) -> tuple[int, dict[str, Any]]:
    code, report, stderr = validate(kind, path)
    assert report is not None, f"the validator could not run: {stderr.strip()}"
    return code, report


def test_the_committed_asyncapi_document_has_no_errors_and_says_what_the_topics_say() -> None:
    code, report = checked("asyncapi", ROOT / "schemas" / "asyncapi.json")
    assert report["parser"].startswith("@asyncapi/parser 3.")
    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert (code, report["errors"], errors) == (0, 0, [])
    assert {(d["severity"], d["code"]) for d in report["diagnostics"]} <= ACCEPTED, report["diagnostics"]

    channels, messages = report["document"]["channels"], report["document"]["messages"]
    specs = load_specs(ROOT / "topics")
    assert set(channels) == {spec.name for spec in specs}
    for spec in specs:
        channel = channels[spec.name]
        assert channel["address"] == "{prefix}" + spec.name
        carried = ["deadletter"] if spec.value_types == ["any"] else spec.value_types
        assert sorted(channel["messages"]) == sorted(carried), spec.name
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions, spec.name
        as_configured = {name: ",".join(value) if isinstance(value, list) else str(value)
                         for name, value in kafka["topicConfiguration"].items()}
        assert as_configured == spec.config, spec.name
    assert set(messages) == {*EVENT_TYPES, "deadletter"}
    for event_type in EVENT_TYPES:
        message = messages[event_type]
        assert message["ce_type"] == event_type
        assert message["payload"]["$id"] == f"urn:pipeline:event:{event_type}"  # the payload file was read
        assert {"ce_specversion", "ce_id", "ce_type", "ce_source"} <= set(message["headers_required"])
    assert "dlq_origin_topic" in messages["deadletter"]["headers_required"]


def _break_binding(schemas: Path) -> tuple[str, list[str]]:
    """`retention.ms` written as the string topics/signals.yaml holds, as the document did before."""
    doc = json.loads((schemas / "asyncapi.json").read_text())
    doc["channels"]["signals"]["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] = "604800000"
    (schemas / "asyncapi.json").write_text(json.dumps(doc, indent=2))
    return "asyncapi.json", ["channels", "signals", "bindings", "kafka", "topicConfiguration", "retention.ms"]


def _break_payload(schemas: Path) -> tuple[str, list[str]]:
    """A payload schema (a file of its own, referenced by the document) with a type JSON Schema does not have."""
    name = "pipeline.signal.observed.v1.json"
    schema = json.loads((schemas / name).read_text())
    schema["properties"]["status"]["type"] = "text"
    (schemas / name).write_text(json.dumps(schema, indent=2))
    return name, ["properties", "status", "type"]


@pytest.mark.parametrize("breaks", [_break_binding, _break_payload], ids=["kafka-binding", "payload-schema"])
def test_a_broken_document_fails_naming_the_file_and_path(breaks: Any, tmp_path: Path) -> None:
    schemas = shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    file, path = breaks(schemas)
    code, report = checked("asyncapi", schemas / "asyncapi.json")
    assert code == 1 and report["valid"] is False and report["errors"] >= 1
    named = [d for d in report["diagnostics"] if d["severity"] == "error" and d["path"] == path]
    assert named, report["diagnostics"]
    assert named[0]["source"] == str(schemas / file)
    assert "document" not in report


def test_without_the_parsers_installed_the_validator_says_how_to_install_them(tmp_path: Path) -> None:
    code, report, stderr = validate("asyncapi", ROOT / "schemas" / "asyncapi.json", PIPELINE_CACHE_DIR=str(tmp_path))
    assert (code, report) == (2, None)
    assert "the parsers are not installed" in stderr and "run scripts/setup" in stderr
