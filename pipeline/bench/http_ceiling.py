"""The ingest bench's ceilings: what the same HTTP server does without the pipeline behind it.

`python -m pipeline.bench.http_ceiling PORT server|app` serves `POST /api/v1/alerts` on 127.0.0.1:PORT,
reading the whole body and answering 200 with a small JSON object, on the server `pipeline stage ingest` uses
(uvicorn with the project's guarded protocol, on uvloop):

* `server`: a bare ASGI callable -- the HTTP server's own cost per request, no framework;
* `app`: the ingest process's app (pipeline/compose/app.py) with its webhook route, a hot route as ingest's,
  only answering -- what the app adds.

Nothing is parsed, validated or sent to Kafka: `pipeline bench ingest` puts the webhook's figure beside these.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

ANSWER = json.dumps({"status": "accepted", "accepted": 2, "duplicates": 0, "signal_ids": []}).encode()


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the request whole, answer 200 JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})


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


async def serve(port: int, which: str) -> None:
    from pipeline.config import Settings
    from pipeline.web.server import server

    app = bare if which == "server" else framework_app()
    srv = server(app, "127.0.0.1", port, Settings())
    await srv.serve()


def main() -> None:
    port, which = int(sys.argv[1]), sys.argv[2]
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(port, which))


if __name__ == "__main__":
    main()
