"""Committed schemas match the models; topic specs are consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from pipeline import schemas
from pipeline.bus.producer import Output
from pipeline.bus.topics import TopicSpec, effective_config, load_specs
from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_match_the_models() -> None:
    stale = schemas.drift(ROOT / "schemas", ROOT / "topics")
    assert stale == [], f"run `pipeline schemas export`: out of date {stale}"


def test_schema_drift_is_detected(tmp_path: Path) -> None:
    schemas.export(tmp_path, ROOT / "topics")
    target = tmp_path / "pipeline.signal.observed.v1.json"
    target.write_text(target.read_text().replace('"signal_id"', '"signalId"'))
    assert schemas.drift(tmp_path, ROOT / "topics") == ["pipeline.signal.observed.v1.json"]


def test_the_document_lists_the_headers_a_dead_letter_and_its_replay_carry() -> None:
    """What `Output.dead_letter` (and `.truncated`) write is what the AsyncAPI document says a dead letter carries."""
    doc = json.loads(schemas.render(ROOT / "topics")["asyncapi.json"])
    record = ConsumerRecord("pipeline.signals", 2, 41, 0, 0, b"k", b"{}", None, 1, 2, [("ce_id", b"e1")])
    letter = Output.dead_letter("pipeline.deadletter", record, stage="correlate", error="boom", attempts=3)
    headers = doc["components"]["messages"]["deadletter"]["headers"]
    added = [name for name, _ in letter.headers if name != "ce_id"]
    assert added == headers["required"]
    assert [name for name, _ in letter.truncated(1).headers if name != "ce_id"] == [*added, "dlq_truncated"]
    assert set(headers["properties"]) == {*added, "dlq_truncated"}
    assert doc["channels"]["deadletter"]["messages"] == {"deadletter": {"$ref": "#/components/messages/deadletter"}}
    signal = doc["components"]["messages"]["pipeline.signal.observed.v1"]["headers"]["properties"]
    assert {"dlq_replay_of", "dlq_replay_origin"} <= set(signal)  # `pipeline dlq replay` adds them


def test_topic_specs_load_and_changelogs_are_co_partitioned() -> None:
    specs = {s.name: s for s in load_specs(Settings().topics_dir)}
    assert {"signals", "incidents", "correlate.state", "deadletter"} <= set(specs)
    assert specs["correlate.state"].partitions == specs["signals"].partitions
    assert specs["correlate.state"].config["cleanup.policy"] == "compact"


def test_co_partitioning_mismatch_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\npartitions: 3\nreplication: 1\nkey: k\nvalue_types: [x]\n")
    (tmp_path / "b.yaml").write_text(
        "name: b\npartitions: 6\nreplication: 1\nkey: k\nvalue_types: [x]\nco_partitioned_with: a\n"
    )
    with pytest.raises(ValueError, match="as many partitions"):
        load_specs(tmp_path)


def test_min_insync_replicas_leaves_room_for_one_broker_loss() -> None:
    spec = TopicSpec(name="x", partitions=1, replication=3, key="k", value_types=["t"])
    assert effective_config(spec, 3)["min.insync.replicas"] == "2"
    assert effective_config(spec, 1)["min.insync.replicas"] == "1"


def test_helm_chart_carries_the_same_topic_specs() -> None:
    """The chart renders KafkaTopic CRs from its own copy of topics/; the copy must not drift."""
    chart = ROOT / "deploy" / "helm" / "pipeline" / "files" / "topics"
    ours = {p.name: p.read_text() for p in (ROOT / "topics").glob("*.yaml")}
    copied = {p.name: p.read_text() for p in chart.glob("*.yaml")}
    assert copied == ours, "run: cp topics/*.yaml deploy/helm/pipeline/files/topics/"
