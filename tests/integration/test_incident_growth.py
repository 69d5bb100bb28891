"""An incident with thousands of alerts, through real ingest -> Kafka -> correlate -> gateway: what is written per
signal stays flat, no record grows with the incident (one that did would pass the broker's 1 MiB limit and stall
the partition), the read model lists a bounded number of alerts and counts them all, and a restarted correlate
stage rebuilds the incident with every alert from its changelog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pipeline.compose.process import Plan
from pipeline.config import Settings
from tests.support import PipelineUnderTest, eventually, incidents, read_topic

ONLY_CORRELATE = Plan(stages=["correlate"], ingest=True, gateway=True, apply_topics=True)
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def _webhook(first: int, count: int, status: str) -> dict[str, Any]:
    ends = (START + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    alerts = [
        {
            "status": status,
            "labels": {"alertname": f"KubeAlert{i % 5}", "namespace": "grow", "pod": "big-0",
                       "instance": f"10.0.{i // 250}.{i % 250}:9100", "severity": "warning"},
            "annotations": {"summary": f"alert {i} of one pod"},
            "startsAt": START.isoformat().replace("+00:00", "Z"),
            "endsAt": ends if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": f"{i:016x}",
        }
        for i in range(first, first + count)
    ]
    return {"version": "4", "receiver": "pipeline", "status": status, "alerts": alerts,
            "externalURL": "http://alertmanager.test", "groupKey": "{}:{}", "truncatedAlerts": 0}


async def _send(client: httpx.AsyncClient, total: int, status: str, per_webhook: int = 250) -> None:
    for first in range(0, total, per_webhook):
        response = await client.post("/api/v1/alerts", json=_webhook(first, min(per_webhook, total - first), status))
        assert response.status_code == 200, response.text


def _bytes(records: list[Any]) -> list[int]:
    return [len(r.key or b"") + len(r.value or b"") + sum(len(k) + len(v or b"") for k, v in r.headers)
            for r in records]


async def _incident(client: httpx.AsyncClient, **expected: Any) -> dict[str, Any]:
    async def matches() -> dict[str, Any] | None:
        found = (await incidents(client, namespace="grow"))["incidents"]
        if len(found) == 1 and all(found[0][k] == v for k, v in expected.items()):
            return found[0]  # type: ignore[no-any-return]
        return None

    return await eventually(matches, timeout=60)


async def test_an_incident_of_3001_alerts_writes_flat_records_and_survives_a_restart(settings: Settings) -> None:
    small = settings.model_copy(update={"incident_alerts_listed": 50})
    async with PipelineUnderTest(small, ONLY_CORRELATE) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=30, trust_env=False) as client:
            await _send(client, 1500, "firing")
            incident = await _incident(client, alerts_total=1500)
    # the incident is counted whole and listed in part: 50 alerts, the first ones (all firing)
    assert (incident["alerts_firing"], incident["alerts_listed"], len(incident["alerts"])) == (1500, 50, 50)
    assert incident["signal_count"] == 1500 and incident["status"] == "active"

    # a new process: correlate rebuilds the resource's state, with all 1,500 alerts, from its changelog
    async with PipelineUnderTest(small, ONLY_CORRELATE) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=30, trust_env=False) as client:
            await _send(client, 3000, "firing")  # 1,500 redelivered (nothing changes), 1,500 new
            await _incident(client, alerts_total=3000, alerts_firing=3000)
            await _send(client, 2999, "resolved")
            incident = await _incident(client, alerts_firing=1)
            assert incident["status"] == "active"  # one alert of 3,000 still fires: it was not forgotten
            # the list keeps the first 50 (now resolved); the count says one more fires. A new firing alert takes
            # the place of a resolved one, so what fires now is listed
            listed = {a["fingerprint"]: a["status"] for a in incident["alerts"]}
            assert len(listed) == 50 and set(listed.values()) == {"resolved"}
            assert (await client.post("/api/v1/alerts", json=_webhook(3000, 1, "firing"))).status_code == 200
            incident = await _incident(client, alerts_firing=2)
            listed = {a["fingerprint"]: a["status"] for a in incident["alerts"]}
            assert len(listed) == 50 and listed[f"{3000:016x}"] == "firing"
            for last in (2999, 3000):
                assert (await client.post("/api/v1/alerts", json=_webhook(last, 1, "resolved"))).status_code == 200
            incident = await _incident(client, status="completed")
    assert (incident["alerts_total"], incident["alerts_firing"]) == (3001, 0)

    signals = _bytes(await read_topic(settings, "signals"))
    changes = _bytes(await read_topic(settings, "incidents"))
    changelog = _bytes(await read_topic(settings, "correlate.state"))
    assert len(changes) == 6002  # one change per alert state change: 3,001 firing, 3,001 resolved
    # No record grows with the incident: the last change is the size of the second (before, it carried all
    # 3,000 alerts: ~1 MB, past the broker's limit). Per signal, what correlate wrote is within a small multiple
    # of the signal record itself, whatever the incident's size.
    assert max(changes[1:]) < 1.5 * changes[1]
    # a changelog record is at most the incident without its alerts and the 64 signal ids seen last (~40 bytes each)
    assert max(changelog) < max(changes) + 64 * 40
    per_signal = (sum(changes) + sum(changelog)) / len(signals)
    print(f"FIGURES growth: signals={len(signals)} written_bytes_per_signal={per_signal:.0f} "
          f"signal_bytes={sum(signals) / len(signals):.0f} largest_change={max(changes)} "
          f"largest_changelog={max(changelog)}")
    assert per_signal < 4 * sum(signals) / len(signals)
