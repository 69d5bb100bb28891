"""The webhook receiver against a real broker: what Alertmanager and a careless client would see."""

from __future__ import annotations

import copy
import json

import httpx

from pipeline.config import Settings
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample

FIRING = sample("alertmanager-webhook-firing.json")


async def test_webhook_is_acknowledged_only_with_its_signals_on_the_broker(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    response = await http.post("/api/v1/alerts", json=FIRING)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    # The 2xx came after the acks: the records are readable right away.
    records = await read_topic(settings, "signals")
    assert sorted(dict(r.headers)["ce_id"].decode() for r in records) == sorted(body["signal_ids"])
    keys = {r.key.decode() for r in records}
    assert keys == {"shop/Pod/cart-7d9f8b6c5-hw7kz", "shop/Pod/cart-7d9f8b6c5-x2x9q"}
    for record in records:
        headers = dict(record.headers)
        assert headers["ce_type"] == b"pipeline.signal.observed.v1"
        assert headers["ce_specversion"] == b"1.0"


async def test_same_webhook_twice_creates_no_duplicate_signal_or_incident(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    first = await http.post("/api/v1/alerts", json=FIRING)
    second = await http.post("/api/v1/anomalies", json=FIRING)
    assert first.status_code == second.status_code == 200
    assert second.json()["duplicates"] == 2 and second.json()["accepted"] == 0
    await eventually(lambda: _incident_count(http, 2))
    assert len(await read_topic(settings, "signals")) == 2
    assert len(await read_topic(settings, "incidents")) == 2


async def test_redelivery_after_a_restart_of_ingest_is_absorbed_by_correlation(settings: Settings) -> None:
    """A new ingest process has no memory of what it delivered; correlation still opens no second incident."""
    for _ in range(2):
        async with PipelineUnderTest(settings) as running:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:
                assert (await client.post("/api/v1/alerts", json=FIRING)).status_code == 200
                await eventually(lambda: _incident_count(client, 2))
    assert len(await read_topic(settings, "incidents")) == 2


async def _incident_count(client: httpx.AsyncClient, expected: int) -> bool:
    return (await incidents(client))["summary"]["total"] == expected


def _without(payload: dict, *path: str | int) -> dict:
    out = copy.deepcopy(payload)
    target = out
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return out


async def test_bad_input_gets_a_json_4xx_naming_the_field_and_the_server_keeps_serving(
    http: httpx.AsyncClient,
) -> None:
    cases = [
        (b"{not json", 400, "INVALID_JSON", "body"),
        (b"", 400, "INVALID_JSON", "body"),
        (b"[1, 2]", 422, "VALIDATION_FAILED", "body"),
        (json.dumps(_without(FIRING, "alerts", 0, "startsAt")).encode(), 422, "VALIDATION_FAILED", "alerts[0].startsAt"),
        (json.dumps(_without(FIRING, "alerts")).encode(), 422, "VALIDATION_FAILED", "alerts"),
        (json.dumps({**FIRING, "version": "3"}).encode(), 422, "VALIDATION_FAILED", "version"),
        (json.dumps({**FIRING, "alerts": "many"}).encode(), 422, "VALIDATION_FAILED", "alerts"),
    ]
    wrong_type = copy.deepcopy(FIRING)
    wrong_type["alerts"][1]["labels"] = ["not", "a", "map"]
    cases.append((json.dumps(wrong_type).encode(), 422, "VALIDATION_FAILED", "alerts[1].labels"))
    bad_status = copy.deepcopy(FIRING)
    bad_status["alerts"][0]["status"] = "exploded"
    cases.append((json.dumps(bad_status).encode(), 422, "VALIDATION_FAILED", "alerts[0].status"))
    for body, status, code, field in cases:
        response = await http.post("/api/v1/alerts", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, (body[:80], response.text)
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()
        assert error["code"] == code and error["field"] == field, error
        assert isinstance(error["error"], str) and error["error"]
    assert (await http.post("/api/v1/alerts", json=FIRING)).status_code == 200


async def test_oversized_body_is_refused_with_413(http: httpx.AsyncClient, settings: Settings) -> None:
    huge = copy.deepcopy(FIRING)
    huge["alerts"][0]["annotations"]["description"] = "x" * (settings.ingest_max_body_bytes + 1)
    response = await http.post("/api/v1/alerts", json=huge)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(settings.ingest_max_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = await http.post("/api/v1/alerts", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert (await http.get("/health")).status_code == 200


async def test_bearer_token_is_required_when_configured(settings: Settings) -> None:
    secured = settings.model_copy(update={"api_token": __import__("pydantic").SecretStr("s3cret-token")})
    async with PipelineUnderTest(secured) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:
            missing = await client.post("/api/v1/alerts", json=FIRING)
            wrong = await client.post("/api/v1/alerts", json=FIRING, headers={"Authorization": "Bearer nope"})
            right = await client.post(
                "/api/v1/alerts", json=FIRING, headers={"Authorization": "Bearer s3cret-token"}
            )
            reads = await client.get("/api/v1/incidents")
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["code"] == "UNAUTHORIZED"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200
    assert reads.status_code == 200


async def test_unknown_route_and_wrong_method_are_json(http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/v1/nothing-here")
    wrong = await http.get("/api/v1/alerts")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert wrong.status_code == 405 and wrong.json()["error"]
