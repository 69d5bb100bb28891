"""The Prometheus client's retry, auth and parameter policy.

These use `httpx.MockTransport`, a FAKE Prometheus: a real one cannot be made to answer 503 on demand or to
demand a rotating token. The client's real-server behaviour is covered by tests/integration/test_features_*.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from pipeline.adapters.prometheus import (
    NotConfigured,
    PrometheusClient,
    PrometheusUnavailable,
    QueryError,
)
from pipeline.config import Settings

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"pod": "a"}, "value": [1700000000, "1.5"]},
    {"metric": {"pod": "b"}, "value": [1700000000, "NaN"]},
]}}


def client(handler, **settings: object) -> PrometheusClient:  # type: ignore[no-untyped-def]
    base = {"prometheus_url": "http://prometheus.test", "prometheus_token_file": "/nonexistent"}
    return PrometheusClient(Settings(**{**base, **settings}), transport=httpx.MockTransport(handler))


async def test_transient_errors_are_retried_then_succeed() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, json=VECTOR)

    prometheus = client(handler, prometheus_retry_attempts=3)
    series = await prometheus.query("up")
    assert len(calls) == 3
    assert series[0].labels == {"pod": "a"} and series[0].last == 1.5
    assert series[1].last != series[1].last  # NaN is passed through; callers decide what it means
    await prometheus.aclose()


async def test_bad_queries_are_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})

    prometheus = client(handler, prometheus_retry_attempts=5)
    with pytest.raises(QueryError, match="bad_data: parse error"):
        await prometheus.query("sum(")
    assert len(calls) == 1
    await prometheus.aclose()


async def test_persistent_5xx_and_connection_errors_are_unavailable() -> None:
    prometheus = client(lambda r: httpx.Response(502), prometheus_retry_attempts=2)
    with pytest.raises(PrometheusUnavailable):
        await prometheus.query("up")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    prometheus = client(refuse, prometheus_retry_attempts=2)
    with pytest.raises(PrometheusUnavailable, match="ConnectError"):
        await prometheus.query_range("up", 0, 60, 15)


async def test_token_file_is_reread_when_it_rotates_and_thanos_parameters_are_sent(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("authorization"), dict(httpx.QueryParams(request.content.decode()))))
        return httpx.Response(200, json=VECTOR)

    prometheus = client(handler, prometheus_token_file=str(token), thanos_dedup=True, thanos_partial_response=False)
    await prometheus.query("up", 1700000000.25)
    token.write_text("second\n")
    os.utime(token, (token.stat().st_atime, token.stat().st_mtime + 10))
    await prometheus.query_range("up", 1700000000, 1700000600, 60)
    assert [auth for auth, _ in seen] == ["Bearer first", "Bearer second"]
    first, second = (params for _, params in seen)
    assert first == {"query": "up", "time": "1700000000.250", "dedup": "true", "partial_response": "false"}
    assert (second["start"], second["end"], second["step"]) == ("1700000000.000", "1700000600.000", "60")
    await prometheus.aclose()


async def test_inline_token_wins_and_is_never_in_the_settings_repr() -> None:
    seen = []
    prometheus = client(lambda r: seen.append(r.headers["authorization"]) or httpx.Response(200, json=VECTOR),
                        prometheus_token=SecretStr("s3cret"))
    await prometheus.query("up")
    assert seen == ["Bearer s3cret"] and "s3cret" not in repr(prometheus.settings)


def test_no_url_is_a_clear_error() -> None:
    with pytest.raises(NotConfigured, match="PROMETHEUS_URL"):
        PrometheusClient(Settings(prometheus_url=""))


async def test_readiness_is_an_authenticated_query() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}})

    prometheus = client(handler, prometheus_token=SecretStr("t0ken"))
    assert await prometheus.ready() is True
    assert seen == [("/api/v1/query", "Bearer t0ken")]
    await prometheus.aclose()
