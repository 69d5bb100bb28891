"""The gateway as the operator CLI sees it: JSON from a route, or one line saying why not.

The base URL is `--url`, else `PIPELINE_URL` (`Settings.pipeline_url`, default `http://127.0.0.1:8080`); every
request carries `Authorization: Bearer $API_TOKEN` when API_TOKEN is set (reads are open on the gateway, writes
need it). The client is `adapters.http.async_client`: the pipeline's user agent, CA bundle (`HTTP_CA_FILE`) and
proxy (`HTTP_PROXY_URL`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.adapters.http import async_client
from pipeline.config import Settings

TIMEOUT_S = 30.0  # an incident's timeline reads the log since the incident began: seconds on a large one

# exit statuses of the operator commands (docs/operations.md, "Operator CLI")
OK, FAILED, USAGE = 0, 1, 2


class GatewayError(Exception):
    """What went wrong, as the one line the CLI prints; `code` is the exit status (FAILED, or USAGE for a request
    the gateway refused as malformed); `status` the gateway's HTTP status (None: it did not answer)."""

    def __init__(self, message: str, code: int = FAILED, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True, slots=True)
class Reply:
    """A route's answer: its JSON, parsed, and the body exactly as the gateway sent it (what `--json` prints)."""

    data: Any
    text: str
    status: int


class Gateway:
    """GET and POST against one gateway; `get`/`post` answer the route's Reply or raise GatewayError."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self.url = (url or settings.pipeline_url).rstrip("/")
        self.token = settings.bearer_token
        self.source = "--url" if url else "PIPELINE_URL"

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, what: str = "",
            accept: Sequence[int] = (200,)) -> Reply:
        """The route's answer; `what` names the object for a 404 ("incident inc-…"); `accept`: statuses whose
        body is the answer (e.g. 503 for `/api/v1/health`, whose body says what is unhealthy)."""
        return asyncio.run(self._call("GET", path, params=params, what=what, accept=accept))

    def post(self, path: str, body: Mapping[str, Any], *, what: str = "",
             accept: Sequence[int] = (200, 201, 202)) -> Reply:
        return asyncio.run(self._call("POST", path, body=body, what=what, accept=accept))

    def get_all(self, paths: Sequence[str], accept: Sequence[int] = (200,)) -> list[Reply | GatewayError]:
        """Several routes at once; each answer is its Reply or the GatewayError it would raise."""

        async def all_of() -> list[Reply | GatewayError]:
            async with self._client() as client:
                return list(await asyncio.gather(*(self._one(client, "GET", p, None, None, p, accept)
                                                   for p in paths)))

        return asyncio.run(all_of())

    def _client(self) -> httpx.AsyncClient:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return async_client(self.settings, timeout=TIMEOUT_S, headers=headers, base_url=self.url)

    async def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    body: Mapping[str, Any] | None = None, what: str, accept: Sequence[int]) -> Reply:
        async with self._client() as client:
            answer = await self._one(client, method, path, params, body, what, accept)
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    async def _one(self, client: httpx.AsyncClient, method: str, path: str, params: Mapping[str, Any] | None,
                   body: Mapping[str, Any] | None, what: str, accept: Sequence[int]) -> Reply | GatewayError:
        try:
            response = await client.request(method, path, params=_query(params), json=body)
        except httpx.HTTPError as exc:
            return GatewayError(unreachable(self.url, self.source, exc))
        try:
            payload = response.json()
        except ValueError:
            return GatewayError(f"{self.url}{path} answered {response.status_code} without JSON: is {self.url} "
                                f"the pipeline's gateway? (set {self.source})", status=response.status_code)
        if response.status_code in accept:
            return Reply(payload, response.text, response.status_code)
        line, code = refusal(response.status_code, payload, what or path, bool(self.token))
        return GatewayError(line, code, response.status_code)


def _query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query parameters without the unset ones."""
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None}


def unreachable(url: str, source: str, exc: Exception) -> str:
    """The line for a gateway that did not answer: where we looked, why, and the setting that chose it."""
    reason = str(exc).strip() or type(exc).__name__
    os_error = getattr(exc.__cause__, "os_error", None)  # aiohttp's connector error, under httpx's
    if isinstance(os_error, OSError):
        reason = (os.strerror(os_error.errno) if isinstance(os_error.errno, int) and os_error.errno > 0
                  else os_error.strerror or str(os_error))
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer within {TIMEOUT_S:g} s ({type(exc).__name__})"
    hint = "PIPELINE_URL" if source == "PIPELINE_URL" else "--url (or PIPELINE_URL)"
    return f"cannot reach the gateway at {url}: {reason}; start it (`pipeline run`) or set {hint} to its address"


def refusal(status: int, payload: Any, what: str, with_token: bool) -> tuple[str, int]:
    """(the line, the exit status) for an error answer of the gateway (`{"error", "code", "field"?}`)."""
    body = payload if isinstance(payload, dict) else {}
    message = str(body.get("error") or json.dumps(payload)[:200])
    code = body.get("code")
    if status == 401:
        fix = ("API_TOKEN is set but is not the gateway's token: set API_TOKEN to the gateway's API_TOKEN"
               if with_token else "set API_TOKEN to the gateway's API_TOKEN")
        return f"the gateway refused the request (401 {code or 'UNAUTHORIZED'}): {fix}", FAILED
    if status == 404:
        return f"{what} not found ({status} {code or message})", FAILED
    if status == 400:
        named = f" (field {body['field']})" if body.get("field") else ""
        return f"the gateway refused the request: {message}{named}", USAGE
    return f"the gateway answered {status}{f' {code}' if code else ''}: {message}", FAILED
