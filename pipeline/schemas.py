"""JSON Schema per event type and an AsyncAPI 3.0 document, generated from the payload models and `topics/`. The
official AsyncAPI parser checks the document (`scripts/api-docs/validate.mjs`; tests/integration/test_api_documents.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.bus.producer import DEAD_LETTER_HEADERS, DEAD_LETTER_TRUNCATED, REPLAY_HEADERS
from pipeline.bus.topics import TopicSpec, load_specs
from pipeline.events import EVENT_TYPES, SPECVERSION

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
# The Kafka bindings' version (github.com/asyncapi/bindings, kafka/0.5.0): the latest AsyncAPI 3.0 knows.
KAFKA_BINDING_VERSION = "0.5.0"
DEAD_LETTER = "deadletter"  # the topic, and the message it carries: any record, with where it came from
_CE_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 binary mode: attributes as Kafka headers",
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source"],
    "properties": {
        name: {"type": "string"}
        for name in (
            "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject",
            "ce_incidentid", "ce_workflowid", "ce_causationid", "ce_traceparent", "content-type",
        )
    },
}


def _headers(event_type: str, extra: dict[str, str]) -> dict[str, Any]:
    """The CloudEvents headers, `ce_specversion` and `ce_type` fixed for this event type, the ones a payload adds
    for readers that index records (`index_headers`), and those of a replayed dead letter."""
    fixed = {name: {"type": "string", "const": value}
             for name, value in (("ce_specversion", SPECVERSION), ("ce_type", event_type))}
    added = {name: {"type": "string", "description": doc} for name, doc in {**extra, **REPLAY_HEADERS}.items()}
    return {**_CE_HEADERS, "properties": {**_CE_HEADERS["properties"], **fixed, **added}}


def _kafka_channel(spec: TopicSpec) -> dict[str, Any]:
    """The Kafka channel binding of a topic: its partitions, and its config typed as the binding schema wants it
    (`cleanup.policy` a list, numbers as integers; `topics/*.yaml` holds strings, as the admin API takes them)."""
    config: dict[str, Any] = {}
    for name, value in spec.config.items():
        if name == "cleanup.policy":
            config[name] = [policy.strip() for policy in value.split(",")]
        elif re.fullmatch(r"-?[0-9]+", value):
            config[name] = int(value)
        else:
            config[name] = value
    return {"partitions": spec.partitions, "topicConfiguration": config, "bindingVersion": KAFKA_BINDING_VERSION}


def _dead_letter() -> dict[str, Any]:
    """A dead letter: the original record (any event of its topic, or whatever another producer wrote) with the
    headers saying where it came from and why it failed."""
    headers = {**DEAD_LETTER_HEADERS, **DEAD_LETTER_TRUNCATED}
    return {
        "name": DEAD_LETTER,
        "title": "DeadLetter",
        "summary": "A record a stage could not handle after bounded retries, with its origin and the reason.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "description": "The original record's headers (CloudEvents attributes for the pipeline's events) "
                           "and these",
            "required": list(DEAD_LETTER_HEADERS),
            "properties": {name: {"type": "string", "description": doc} for name, doc in headers.items()},
        },
        "payload": {"description": "The original record's value, byte for byte (cut when `dlq_truncated` is set)"},
    }


def render(topics_dir: Path) -> dict[str, str]:
    """File name -> file content, deterministic, for every generated document."""
    files: dict[str, str] = {}
    messages: dict[str, Any] = {}
    for event_type, model in EVENT_TYPES.items():
        schema = model.model_json_schema()
        schema["$id"] = f"urn:pipeline:event:{event_type}"
        schema["title"] = event_type
        files[f"{event_type}.json"] = _dump(schema)
        messages[event_type] = {
            "name": event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "headers": _headers(event_type, model.index_header_docs),
            "payload": {"$ref": f"./{event_type}.json"},
            "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    messages[DEAD_LETTER] = _dead_letter()
    channels: dict[str, Any] = {}
    for spec in load_specs(topics_dir):
        carried = [DEAD_LETTER] if spec.name == DEAD_LETTER else [t for t in spec.value_types if t in messages]
        channels[spec.name] = {
            "address": "{prefix}" + spec.name,
            "description": f"{spec.description} Key: {spec.key}.",
            "parameters": {"prefix": {"description": "TOPIC_PREFIX", "default": "pipeline."}},
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in carried},
            "bindings": {"kafka": _kafka_channel(spec)},
        }
    asyncapi = {
        "asyncapi": "3.0.0",
        "info": {"title": "pipeline event log", "version": __version__},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages},
    }
    files["asyncapi.json"] = _dump(asyncapi)
    return files


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def export(out_dir: Path, topics_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(topics_dir).items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written


def drift(out_dir: Path, topics_dir: Path) -> list[str]:
    """Generated files that differ from (or are missing in) `out_dir`."""
    return [
        name
        for name, text in render(topics_dir).items()
        if not (out_dir / name).exists() or (out_dir / name).read_text() != text
    ]
