"""Hostile HTTP input against the real app and a real broker: what cannot be stored is refused at ingest with a
4xx naming the field and the limit, before anything reaches the broker; deep JSON is a 400 on every POST route;
the webhook takes JSON only; and the pipeline keeps correlating afterwards."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from pipeline.bus.producer import EventProducer
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook
from pipeline.ingest.alerts import AlertIngest
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample

FIRING = sample("alertmanager-webhook-firing.json")
ALERTMANAGER_HEADERS = sample("alertmanager-webhook-request-headers.json")
JSON = {"content-type": "application/json"}


def _webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(FIRING), "alerts": [copy.deepcopy(a) for a in alerts]}


def _alert(fingerprint: str, pod: str = "web-1", **changes: Any) -> dict[str, Any]:
    alert = copy.deepcopy(FIRING["alerts"][0])
    alert["fingerprint"], alert["labels"]["pod"] = fingerprint, pod
    alert.update(changes)
    return alert


async def _total(client: httpx.AsyncClient, expected: int) -> bool:
    return (await incidents(client))["summary"]["total"] == expected


def _refused(response: httpx.Response, field: str, limit: int) -> dict[str, Any]:
    assert response.status_code == 413, response.text
    assert "retry-after" not in response.headers  # Alertmanager must not retry it
    body = response.json()
    assert body["code"] == "LIMIT_EXCEEDED" and body["field"] == field, body
    assert body["limit"] == limit and body["size"] > limit, body
    assert field in body["error"] and str(limit) in body["error"], body
    return body


async def test_an_alert_that_cannot_be_stored_refuses_the_whole_webhook_and_the_pipeline_keeps_going(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """The reproduction: a 150 KB `pod` label was answered 200 and then stalled correlate for good."""
    huge_pod = _alert("huge", pod="p" * 150_000)
    response = await http.post("/api/v1/alerts", json=_webhook(_alert("fine-0"), huge_pod))
    _refused(response, "alerts[1].labels.pod", settings.ingest_max_label_value_bytes)

    labels = {f"l{i}": "v" * 2000 for i in range(10)}  # each value fits, together past 16 KiB
    many = _alert("many-labels", labels={**FIRING["alerts"][0]["labels"], **labels})
    _refused(await http.post("/api/v1/alerts", json=_webhook(many)), "alerts[0].labels",
             settings.ingest_max_labels_bytes)

    summary = _alert("big-summary", annotations={"summary": "s" * 530_000})  # the 503 of the outside report
    _refused(await http.post("/api/v1/alerts", json=_webhook(_alert("fine-1"), summary)),
             "alerts[1].annotations.summary", settings.ingest_max_annotation_value_bytes)

    notes = _alert("many-notes", annotations={f"note{i}": "n" * 10_000 for i in range(8)})
    _refused(await http.post("/api/v1/alerts", json=_webhook(notes)), "alerts[0].annotations",
             settings.ingest_max_annotations_bytes)

    link = _alert("long-link", generatorURL="http://prometheus.example/graph?g0.expr=" + "x" * 9000)
    _refused(await http.post("/api/v1/alerts", json=_webhook(link)), "alerts[0].generatorURL",
             settings.ingest_max_url_bytes)

    origin = {**_webhook(_alert("fine-2")), "externalURL": "http://am.example/" + "a" * 9000}
    _refused(await http.post("/api/v1/alerts", json=origin), "externalURL", settings.ingest_max_url_bytes)

    # Nothing of any refused webhook was stored, not even its acceptable alerts.
    assert await read_topic(settings, "signals") == []

    # A webhook that fits afterwards becomes incidents: nothing is stuck behind the refused ones.
    fine = await http.post("/api/v1/alerts", json=_webhook(*(_alert(f"after-{i}", pod=f"web-{i}") for i in range(3))))
    assert fine.status_code == 200, fine.text
    assert fine.json()["accepted"] == 3
    await eventually(lambda: _total(http, 3))
    # The same alert again with the oversized one removed is now stored: Alertmanager's next group update works.
    again = await http.post("/api/v1/alerts", json=_webhook(_alert("fine-0")))
    assert again.status_code == 200 and again.json()["accepted"] == 1


async def test_alerts_per_request_and_signal_record_size_are_bounded(settings: Settings) -> None:
    tight = settings.model_copy(update={"ingest_max_alerts": 3, "ingest_max_signal_bytes": 4096})
    async with PipelineUnderTest(tight) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=15.0, trust_env=False) as client:
            four = _webhook(*(_alert(f"n-{i}", pod=f"web-{i}") for i in range(4)))
            _refused(await client.post("/api/v1/alerts", json=four), "alerts", 3)
            # Each annotation fits its limits, but the signal record carrying them (and the summary and
            # description copied out of them) would be past INGEST_MAX_SIGNAL_BYTES.
            wordy = _alert("wordy", annotations={"summary": "s" * 1500, "description": "d" * 1500})
            _refused(await client.post("/api/v1/alerts", json=_webhook(_alert("ok"), wordy)), "alerts[1]", 4096)
            three = await client.post("/api/v1/alerts", json=_webhook(*four["alerts"][:3]))
            assert three.status_code == 200 and three.json()["accepted"] == 3
    assert len(await read_topic(settings, "signals")) == 3


async def test_a_record_the_broker_refuses_for_its_size_is_413_naming_the_alert_not_503(settings: Settings) -> None:
    """Limits set above the broker's (1 MiB message.max.bytes on the test broker): the broker's refusal is
    permanent, so it is a 413 naming the alert without Retry-After, never 503 `BROKER_UNAVAILABLE`."""
    loose = settings.model_copy(update={
        "ingest_max_body_bytes": 8 << 20,
        "ingest_max_annotation_value_bytes": 4 << 20,
        "ingest_max_annotations_bytes": 4 << 20,
        "ingest_max_signal_bytes": 8 << 20,
    })
    async with PipelineUnderTest(loose) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=15.0, trust_env=False) as client:
            # ~1.2 MB record: past the broker's limit, under the producer's 2 MiB request limit.
            broker = _alert("broker-refuses", annotations={"runbook": "r" * 1_200_000})
            # ~3 MB record (the summary is stored twice): refused by the client before sending.
            client_side = _alert("client-refuses", annotations={"summary": "s" * 1_500_000})
            for big in (broker, client_side):
                response = await client.post("/api/v1/alerts", json=_webhook(_alert("small"), big))
                assert response.status_code == 413, response.text
                assert "retry-after" not in response.headers
                body = response.json()
                assert body["code"] == "LIMIT_EXCEEDED" and body["field"] == "alerts[1]", body
                assert "message.max.bytes" in body["error"]
            # The broker's refusal leaves aiokafka's idempotent producer out of sequence: the next webhook may
            # get one 503 with Retry-After (the producer is replaced), and Alertmanager's retry is stored.
            after = await client.post("/api/v1/alerts", json=_webhook(_alert("after")))
            if after.status_code == 503:
                assert after.headers["retry-after"] and after.json()["code"] == "BROKER_UNAVAILABLE"
                after = await client.post("/api/v1/alerts", json=_webhook(_alert("after")))
            assert after.status_code == 200 and after.json()["accepted"] == 1, after.text


async def test_deeply_nested_json_is_400_naming_body_on_every_post_route(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    posts = sorted(path.replace("{", "").replace("}", "") for path, ops in paths.items() if "post" in ops)
    # The six of the outside report, and the recommendations route, are among them.
    for known in ("/api/v1/alerts", "/api/v1/incidents", "/api/v1/remediation/trigger", "/api/v1/detect",
                  "/api/v1/predict", "/api/v1/anomalies/analyze", "/api/v1/recommendations"):
        assert known in posts
    without_body = {"/api/v1/detect/cache/clear"}  # takes no body: nesting cannot reach it
    for path in posts:
        for nested in ("[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000,
                       '{"alerts":[{"labels":' + '{"x":' * 100_000 + "1" + "}" * 100_000 + "}]}"):
            response = await http.post(path, content=nested.encode(), headers=JSON)
            if path in without_body:
                assert response.status_code != 500 and response.json()["code"] != "INTERNAL", (path, response.text)
                continue
            assert response.status_code in (400, 413), (path, response.status_code, response.text)
            if response.status_code == 400:
                error = response.json()
                assert error.get("field") == "body", (path, error)
                assert "deeper than 64" in json.dumps(error), (path, error)  # the message, or its details
    # Nesting within the bound is still read: a webhook is four levels deep.
    assert (await http.post("/api/v1/alerts", json=FIRING)).status_code == 200
    assert (await http.get("/health")).status_code == 200


async def test_recommendations_with_an_invalid_namespace_is_400_naming_it(http: httpx.AsyncClient) -> None:
    for namespace in ("UPPER", "a" * 64, "shop/../x", 5):
        response = await http.post("/api/v1/recommendations", json={"namespace": namespace})
        assert response.status_code == 400, (namespace, response.text)
        error = response.json()
        assert error["code"] == "INVALID_REQUEST" and error["field"] == "namespace", error
    assert (await http.post("/api/v1/recommendations", json={"namespace": "shop"})).status_code == 200


async def test_the_webhook_takes_json_only(http: httpx.AsyncClient, settings: Settings) -> None:
    body = json.dumps(_webhook(_alert("ct-0"))).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "application/json; charset=utf-16"):
        for route in ("/api/v1/alerts", "/api/v1/anomalies"):
            response = await http.post(route, content=body, headers={"content-type": content_type})
            assert response.status_code == 415, (content_type, response.text)
            error = response.json()
            assert error["code"] == "UNSUPPORTED_MEDIA_TYPE" and error["field"] == "content-type", error
            assert content_type.split(";")[0] in error["error"]
    utf16 = await http.post("/api/v1/alerts", content=body.decode().encode("utf-16"), headers=JSON)
    assert utf16.status_code == 400 and utf16.json()["field"] == "body", utf16.text
    assert await read_topic(settings, "signals") == []

    # Exactly what Alertmanager sends is accepted; so is a body without Content-Type (read as JSON).
    headers = {k: v for k, v in ALERTMANAGER_HEADERS.items() if k not in ("Host", "Content-Length")}
    sent = await http.post("/api/v1/alerts", content=body, headers=headers)
    assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text
    bare = http.build_request("POST", "/api/v1/alerts", content=json.dumps(_webhook(_alert("ct-1"))).encode())
    assert "content-type" not in bare.headers
    untyped = await http.send(bare)
    assert untyped.status_code == 200 and untyped.json()["accepted"] == 1, untyped.text
    charset = await http.post("/api/v1/alerts", content=json.dumps(_webhook(_alert("ct-2"))).encode(),
                              headers={"content-type": "application/json; charset=UTF-8"})
    assert charset.status_code == 200, charset.text


async def test_alerts_read_from_alertmanager_leave_out_only_what_cannot_be_stored(
    pipeline: PipelineUnderTest, settings: Settings
) -> None:
    """Reconcile reads Alertmanager's active alerts where nobody could be told of a refusal: with `skip_refused`
    the oversized alert is left out and named, the others are stored."""
    producer = EventProducer(settings)
    await producer.start()
    try:
        webhook = AlertmanagerWebhook.model_validate(
            _webhook(_alert("kept-0", pod="web-0"), _alert("huge", pod="p" * 150_000), _alert("kept-1", pod="web-1"))
        )
        result = await AlertIngest(settings, producer).accept(webhook, skip_refused=True)
    finally:
        await producer.stop()
    assert (result.accepted, result.refused) == (2, ("alerts[1].labels.pod",))
    stored = await read_topic(settings, "signals")
    assert sorted(r.key.decode() for r in stored) == ["shop/Pod/web-0", "shop/Pod/web-1"]
