"""Async Prometheus / Thanos Querier HTTP API client (httpx): instant and range queries.

Bearer token (inline, or a service-account token file re-read when it rotates), CA bundle, timeouts,
retries with jitter on transient failures only (connection errors, 502/503/504), a concurrency limit,
and Thanos' `dedup` / `partial_response` parameters. Query errors (bad PromQL: 400/422) are not retried.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import stamina

from pipeline.adapters.http import async_client
from pipeline.adapters.transient import TransientStatus, raise_if_transient
from pipeline.config import Settings


class PrometheusError(Exception):
    """Base of every failure talking to Prometheus."""


class PrometheusUnavailable(PrometheusError):
    """Not reachable, timing out, or answering 5xx after the retries: the data may exist, we can't get it."""


class QueryError(PrometheusError):
    """Prometheus refused the query itself (bad PromQL, bad parameters): retrying cannot help."""


class NotConfigured(PrometheusError):
    """PROMETHEUS_URL is empty."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a result: its labels and its (unix seconds, value) samples, ascending in time.

    Values may be NaN or ±Inf as Prometheus sends them; callers decide what a non-finite value means.
    """

    labels: dict[str, str]
    samples: list[tuple[float, float]]

    @property
    def last(self) -> float:
        return self.samples[-1][1]


def _timestamp(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan


@functools.lru_cache(maxsize=4096)
def _quoted(value: str) -> str:
    """Form encoding of one value, cached: the same long PromQL is sent again and again, and quoting it is
    a Python loop over its bytes."""
    return urllib.parse.quote_plus(value)


def _form(params: dict[str, Any]) -> bytes:
    quote = urllib.parse.quote_plus
    return "&".join(f"{k}={_quoted(v) if k == 'query' else quote(str(v))}" for k, v in params.items()).encode("ascii")


class PrometheusClient:
    """One per process; safe for concurrent use; `aclose()` when done."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not settings.prometheus_url:
            raise NotConfigured("PROMETHEUS_URL is not set")
        self.settings = settings
        self.url = settings.prometheus_url.rstrip("/")
        self._limit = asyncio.Semaphore(settings.prometheus_max_concurrency)
        self._token_cache: tuple[float, str] | None = None
        self._http = async_client(
            settings,
            timeout=settings.prometheus_timeout_s,
            ca_file=settings.prometheus_ca_file,
            tls_verify=settings.prometheus_tls_verify,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self.queries = 0

    def _token(self) -> str | None:
        inline = self.settings.prometheus_token.get_secret_value()
        if inline:
            return inline
        path = self.settings.prometheus_token_file
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        if self._token_cache is None or self._token_cache[0] != mtime:
            with open(path) as f:
                self._token_cache = (mtime, f.read().strip())
        return self._token_cache[1] or None

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.settings.thanos_dedup is not None:
            params["dedup"] = str(self.settings.thanos_dedup).lower()
        if self.settings.thanos_partial_response is not None:
            params["partial_response"] = str(self.settings.thanos_partial_response).lower()
        return params

    async def query(self, expr: str, at: datetime | float | None = None) -> list[Series]:
        """An instant query: one sample per series."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{_timestamp(at):.3f}"
        return await self._call("/api/v1/query", self._params(params))

    async def query_range(
        self, expr: str, start: datetime | float, end: datetime | float, step_s: float
    ) -> list[Series]:
        """A range query evaluated at start, start+step, ..., end."""
        params = {
            "query": expr,
            "start": f"{_timestamp(start):.3f}",
            "end": f"{_timestamp(end):.3f}",
            "step": f"{step_s:g}",
        }
        return await self._call("/api/v1/query_range", self._params(params))

    async def ready(self) -> bool:
        """One cheap authenticated query (Thanos Querier behind kube-rbac-proxy has no open /-/ready)."""
        try:
            response = await self._http.post(
                f"{self.url}/api/v1/query", data={"query": "1"}, headers=self._auth(), timeout=3.0
            )
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    def _auth(self) -> dict[str, str]:
        token = self._token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, path: str, params: dict[str, Any]) -> list[Series]:
        async with self._limit:
            self.queries += 1
            try:
                body = await self._post_with_retries(path, params)
            except TransientStatus as exc:
                raise PrometheusUnavailable(f"prometheus answered {exc.response.status_code}") from None
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise PrometheusUnavailable(f"{type(exc).__name__}: {exc}") from None
        return self._series(body)

    async def _post_with_retries(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        headers = {**self._auth(), "Content-Type": "application/x-www-form-urlencoded"}
        async for attempt in stamina.retry_context(
            on=(httpx.TransportError, TransientStatus),
            attempts=self.settings.prometheus_retry_attempts,
            timeout=self.settings.prometheus_timeout_s * 2,
            wait_initial=0.05,
            wait_max=1.0,
        ):
            with attempt:
                response = raise_if_transient(
                    await self._http.post(f"{self.url}{path}", content=_form(params), headers=headers)
                )
        return self._body(response)

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise PrometheusUnavailable(f"prometheus answered {response.status_code} without JSON") from None
        if response.status_code in (400, 422) or body.get("status") == "error":
            raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', response.text[:200])}")
        if response.status_code >= 400:
            raise PrometheusUnavailable(f"prometheus answered {response.status_code}")
        return body

    @staticmethod
    def _series(body: dict[str, Any]) -> list[Series]:
        data = body.get("data") or {}
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "vector":
            return [Series(r["metric"], [(float(r["value"][0]), _float(r["value"][1]))]) for r in result]
        if kind == "matrix":
            return [Series(r["metric"], [(float(t), _float(v)) for t, v in r["values"]]) for r in result]
        if kind == "scalar":
            return [Series({}, [(float(result[0]), _float(result[1]))])]
        raise QueryError(f"unexpected result type {kind!r}")


def split_combined(keys: Sequence[str], series: Sequence[Series]) -> dict[str, list[Series]]:
    """The answer of a `domain.features.combined` query, per part key (the part label removed)."""
    from pipeline.domain.features import split_parts

    found = split_parts(keys, [(s.labels, s.samples) for s in series])
    return {key: [Series(labels, samples) for labels, samples in pairs] for key, pairs in found.items()}
