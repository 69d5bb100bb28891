"""`docs/openapi.json`: the OpenAPI document of every route a process can serve (ingest, gateway, the analysis
and model routes), generated from the app itself without starting anything, and checked for drift like
`schemas/` (`pipeline schemas --check`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pipeline.config import Settings

OPENAPI_PATH = Path(__file__).resolve().parent.parent.parent / "docs" / "openapi.json"


def document(settings: Settings) -> dict[str, Any]:
    """The app of `pipeline run` with every part present but none started: its `/openapi.json`."""
    return asyncio.run(_document(settings))  # the Kafka clients want a running loop to be made in


async def _document(settings: Settings) -> dict[str, Any]:
    from pipeline.adapters.ml import KServeClient
    from pipeline.adapters.scorer import model_registry
    from pipeline.bus.producer import EventProducer
    from pipeline.compose.app import Parts, api_app
    from pipeline.compose.health import KafkaProbe
    from pipeline.gateway.projection import ProjectionRunner
    from pipeline.ingest.alerts import AlertIngest

    settings = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9"})  # never connected
    producer = EventProducer(settings)
    parts = Parts(settings, KafkaProbe(settings), producer, ingest=AlertIngest(settings, producer),
                  projection=ProjectionRunner(settings),
                  kserve=KServeClient(settings, model_registry(settings)))
    try:
        app, _ = api_app(parts)
        return app.openapi()
    finally:
        await parts.kserve.aclose()
        await producer.stop()


def render(settings: Settings) -> str:
    return json.dumps(document(settings), indent=2, sort_keys=True) + "\n"


def drift(settings: Settings, path: Path = OPENAPI_PATH) -> bool:
    """Whether the file differs from the generated document."""
    return not path.exists() or path.read_text() != render(settings)


def export(settings: Settings, path: Path = OPENAPI_PATH) -> Path:
    path.write_text(render(settings))
    return path
