"""JSON Schema per event type and an AsyncAPI 3.0 document, generated from the payload models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.bus.topics import load_specs
from pipeline.events import EVENT_TYPES

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
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


def _headers(extra: dict[str, str]) -> dict[str, Any]:
    """The CloudEvents headers, and the ones a payload adds for readers that index records (`index_headers`)."""
    if not extra:
        return _CE_HEADERS
    added = {name: {"type": "string", "description": doc} for name, doc in extra.items()}
    return {**_CE_HEADERS, "properties": {**_CE_HEADERS["properties"], **added}}


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
            "headers": _headers(model.index_header_docs),
            "payload": {"$ref": f"./{event_type}.json"},
        }
    channels: dict[str, Any] = {}
    for spec in load_specs(topics_dir):
        channels[spec.name] = {
            "address": "{prefix}" + spec.name,
            "description": f"{spec.description} Key: {spec.key}.",
            "parameters": {"prefix": {"description": "TOPIC_PREFIX", "default": "pipeline."}},
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in spec.value_types if t in messages},
            "bindings": {"kafka": {"partitions": spec.partitions, "topicConfiguration": spec.config}},
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
