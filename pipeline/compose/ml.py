"""`pipeline ml serve`: the reference ML service as a process of its own (pipeline.ml.api under uvicorn).

The model is the cached one in the model directory (default: `Settings.cache_dir`/ml/anomaly-detector),
trained the first time; once listening, one JSON line (url, model, version) goes to stdout.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from pipeline.compose.process import configure_logs
from pipeline.config import Settings, load_settings
from pipeline.ml.api import create_app
from pipeline.ml.model import ReferenceModel, train_or_load
from pipeline.observability import get_logger
from pipeline.web.server import server

log = get_logger("pipeline.ml")


async def serve(model: ReferenceModel, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; prints one JSON line (url, model, version) once listening."""
    srv = server(create_app(model), host, port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, srv, "should_exit", True)
    task = asyncio.create_task(srv.serve())
    while not srv.started and not task.done():
        await asyncio.sleep(0.02)
    if srv.started:
        bound = srv.servers[0].sockets[0].getsockname()
        url = f"http://{bound[0]}:{bound[1]}"
        print(json.dumps({"url": url, "model": model.name, "model_version": model.version}), flush=True)
        log.info(
            "ml service listening", url=url, model_version=model.version, load_seconds=model.load_seconds
        )
    await task


def run(host: str, port: int, model_dir: Path | None, settings: Settings | None = None) -> int:
    """`pipeline ml serve`: load the cached model (training it the first time), then serve."""
    settings = settings or load_settings()
    configure_logs(settings)
    model = train_or_load(model_dir, settings=settings)
    asyncio.run(serve(model, host, port))
    return 0
