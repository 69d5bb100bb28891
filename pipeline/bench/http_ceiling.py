"""The ingest bench's ceilings: what the same HTTP server does without the pipeline behind it.

`python -m pipeline.bench.http_ceiling PORT server|app|produce [ALERTS_PER_REQUEST]` serves `POST /api/v1/alerts` on 127.0.0.1:PORT,
reading the whole body and answering 200 with a small JSON object, on the server `pipeline stage ingest` uses
(uvicorn with the project's guarded protocol, on uvloop):

* `server`: a bare ASGI callable -- the HTTP server's own cost per request, no framework;
* `app`: the ingest process's app (pipeline/compose/app.py) with its webhook route, a hot route as ingest's,
  only answering -- what the app adds;
* `produce`: the bare ASGI callable producing, per request, as many ready-made signal records as the request
  carries alerts (ALERTS_PER_REQUEST, default 2) with the pipeline's producer settings (acks=all, idempotent, keyed), and
  answering once the broker has them -- the HTTP server and the Kafka client together in one process on one
  event loop, with nothing of the webhook's own work: the ceiling of this stack (the broker and topics from the
  settings, as every process).

Only `produce` sends to Kafka and nothing is parsed or validated: `pipeline bench ingest` puts the webhook's
figure beside these.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

ANSWER = json.dumps({"status": "accepted", "accepted": 2, "duplicates": 0, "signal_ids": []}).encode()


async def _drain(receive: Any) -> None:
    """Read the request's body whole."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


async def _answer(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the request whole, answer 200 JSON."""
    if scope["type"] != "http":
        return
    await _drain(receive)
    await _answer(send)


def framework_app() -> Any:
    """The ingest process's app (pipeline/compose/app.py), its webhook route (a hot route, as ingest's) only
    reading the body and answering."""
    from pipeline.compose.app import Parts, api_app
    from pipeline.config import Settings
    from pipeline.web.hot import HotRoutes

    async def alerts(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    app, _ = api_app(Parts(Settings(), probe=None))  # type: ignore[arg-type] # no probe: /api/v1/health unused
    return HotRoutes(app, {("POST", "/api/v1/alerts"): alerts})


def producing_app(producer: Any, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
                  per_request: int) -> Any:
    """`bare`, producing `per_request` of `records` (in turn) and awaiting the broker's acks before answering."""
    turn = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal turn
        if scope["type"] != "http":
            return
        await _drain(receive)
        futures = []
        for _ in range(per_request):
            key, value, headers = records[turn % len(records)]
            turn += 1
            futures.append(await producer.send(topic, value, key=key, headers=headers))
        for future in futures:
            await future
        await _answer(send)

    return app


async def serve(port: int, which: str, per_request: int = 2) -> None:
    from pipeline.bus import kafka
    from pipeline.config import Settings
    from pipeline.web.server import server

    settings = Settings()
    producer = None
    if which == "produce":
        from pipeline.bench.ingest import signal_records

        producer = kafka.producer(settings)
        await producer.start()
        app = producing_app(producer, settings.topic("signals"), signal_records(2000), per_request)
    else:
        app = bare if which == "server" else framework_app()
    try:
        await server(app, "127.0.0.1", port, settings).serve()
    finally:
        if producer is not None:
            await producer.stop()


def main() -> None:
    port, which = int(sys.argv[1]), sys.argv[2]
    per_request = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(port, which, per_request))


if __name__ == "__main__":
    main()
