"""What an alert means, through the real ingest -> Kafka -> correlate -> gateway path: Alertmanager's truncation,
an alert first seen already resolved, the alerts' own times, and reconcile resolving alerts whose resolve
notification was lost (a real Alertmanager)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.embedded.process import free_port
from tests.components.alertmanager import AlertmanagerServer
from tests.support import PipelineUnderTest, eventually, incidents


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _alert(pod: str, status: str, starts: datetime, ends: datetime | None = None, fp: str | None = None,
           container: str = "app") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "PodOOMKilled", "namespace": "sem", "pod": pod, "container": container,
                   "severity": "critical"},
        "annotations": {"summary": f"{pod} was OOMKilled"},
        "startsAt": _iso(starts),
        "endsAt": _iso(ends) if ends else "0001-01-01T00:00:00Z",
        "fingerprint": fp or f"fp-{pod}-{container}",
    }


def _webhook(alerts: list[dict[str, Any]], truncated: int = 0) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "receiver": "pipeline", "status": status, "alerts": alerts,
            "externalURL": "http://alertmanager.test", "groupKey": "{}:{}", "truncatedAlerts": truncated}


def _truncated_metric(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("pipeline_incidents_truncated_total "):
            return float(line.split()[1])
    raise AssertionError("pipeline_incidents_truncated_total not exported")


async def test_a_truncated_webhook_is_recorded_on_each_of_its_incidents_and_counted(http: httpx.AsyncClient) -> None:
    before = _truncated_metric((await http.get("/metrics")).text)
    start = datetime.now(UTC) - timedelta(minutes=5)
    body = _webhook([_alert("cut-a", "firing", start), _alert("cut-b", "firing", start)], truncated=3)
    assert (await http.post("/api/v1/alerts", json=body)).status_code == 200

    async def both() -> list | None:
        found = (await incidents(http, namespace="sem"))["incidents"]
        return found if len(found) == 2 else None

    found = await eventually(both)
    assert [i["truncated_alerts"] for i in found] == [3, 3]  # the cut alerts may belong to either
    assert _truncated_metric((await http.get("/metrics")).text) >= before + 2

    whole = _webhook([_alert("whole", "firing", start)])
    assert (await http.post("/api/v1/alerts", json=whole)).status_code == 200
    untouched = await eventually(lambda: _incident_of(http, "Pod/whole"))
    assert untouched["truncated_alerts"] == 0


async def _incident_of(http: httpx.AsyncClient, resource: str, status: str | None = None) -> dict | None:
    for incident in (await incidents(http))["incidents"]:
        if incident["resource"] == resource and (status is None or incident["status"] == status):
            return incident  # type: ignore[no-any-return]
    return None


async def test_an_alert_first_seen_resolved_becomes_a_completed_incident_with_its_own_times(
    http: httpx.AsyncClient,
) -> None:
    starts = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    ends = starts + timedelta(minutes=12)
    body = _webhook([_alert("late", "resolved", starts, ends)])
    answer = await http.post("/api/v1/alerts", json=body)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1

    incident = await eventually(lambda: _incident_of(http, "Pod/late"))
    assert incident["status"] == "completed"
    assert (incident["created_at"], incident["started_at"]) == ("2026-11-21T10:00:00Z", "2026-11-21T10:00:00Z")
    assert incident["completed_at"] == "2026-11-21T10:12:00Z" and incident["duration_seconds"] == 720
    assert incident["received_at"] > "2026-12-01"  # received now, kept apart from when it happened
    (alert,) = incident["alerts"]
    assert (alert["status"], alert["firing_seen"], alert["resolved_by"]) == ("resolved", False, "source")
    assert "never arrived" in incident["description"]


async def test_incident_times_are_the_alerts_start_and_end_not_when_they_were_received(
    http: httpx.AsyncClient,
) -> None:
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)  # delivered after a 3 h backlog
    ends = starts + timedelta(minutes=40)
    assert (await http.post("/api/v1/alerts", json=_webhook([_alert("slow", "firing", starts)]))).status_code == 200
    opened = await eventually(lambda: _incident_of(http, "Pod/slow"))
    assert opened["created_at"] == opened["started_at"] == _iso(starts)
    assert opened["received_at"] > _iso(starts + timedelta(hours=2))
    assert opened["completed_at"] is None and opened["duration_seconds"] is None

    resolved = _webhook([_alert("slow", "resolved", starts, ends)])
    assert (await http.post("/api/v1/alerts", json=resolved)).status_code == 200
    done = await eventually(lambda: _incident_of(http, "Pod/slow", status="completed"))
    assert done["completed_at"] == _iso(ends) and done["duration_seconds"] == 2400
    assert done["alerts"][0]["firing_seen"] is True


class _TruncatingAlertmanager(AlertmanagerServer):
    """The real Alertmanager, with `max_alerts: 1` on its webhook so it truncates."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["receivers"][0]["webhook_configs"][0]["max_alerts"] = 1
        return config


async def test_a_real_alertmanager_truncating_its_webhook_is_visible_on_the_incident(
    pipeline: PipelineUnderTest, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    am = _TruncatingAlertmanager(tmp_path, f"{pipeline.url}/api/v1/alerts")
    await asyncio.to_thread(am.start)
    try:
        labels = {"alertname": "KubeContainerWaiting", "namespace": "sem", "pod": "grouped-0"}
        await asyncio.to_thread(am.fire, {**labels, "container": "a"})
        await asyncio.to_thread(am.fire, {**labels, "container": "b"})

        async def truncated() -> dict | None:
            incident = await _incident_of(http, "Pod/grouped-0")
            return incident if incident and incident["truncated_alerts"] == 1 else None

        incident = await eventually(truncated, timeout=30)
        assert len(incident["alerts"]) == 1  # one alert arrived; the incident says one more was cut
    finally:
        await asyncio.to_thread(am.stop)


async def test_reconcile_resolves_open_alerts_whose_resolve_notification_was_lost(
    settings: Settings, tmp_path: Path
) -> None:
    """Ingest is down while an alert resolves in Alertmanager; on restart the incident is resolved."""
    labels = {"alertname": "KubePodCrashLooping", "namespace": "sem", "severity": "warning"}
    gone, stays = {**labels, "pod": "gone-0"}, {**labels, "pod": "stays-0"}
    async with PipelineUnderTest(settings) as first:
        am = AlertmanagerServer(tmp_path, f"{first.url}/api/v1/alerts")
        await asyncio.to_thread(am.start)
        try:
            async with httpx.AsyncClient(base_url=first.url, trust_env=False) as client:
                await asyncio.to_thread(am.fire, gone)
                await asyncio.to_thread(am.fire, stays)

                async def two_open() -> bool:
                    return (await incidents(client, status="active"))["summary"]["active"] == 2

                await eventually(two_open, timeout=30)
        except BaseException:
            await asyncio.to_thread(am.stop)
            raise
    try:
        # The outage: the resolve notification goes to the stopped instance's address and is lost.
        await asyncio.to_thread(am.resolve, gone)
        assert [a["labels"]["pod"] for a in await asyncio.to_thread(am.active_alerts)] == ["stays-0"]
        restarted = settings.model_copy(update={"port": free_port(), "alertmanager_url": am.url})
        async with PipelineUnderTest(restarted) as second:
            async with httpx.AsyncClient(base_url=second.url, trust_env=False) as client:
                done = await eventually(lambda: _incident_of(client, "Pod/gone-0", status="completed"), timeout=30)
                (alert,) = done["alerts"]
                assert (alert["status"], alert["resolved_by"]) == ("resolved", "reconcile")
                assert alert["ends_at"] is None  # Alertmanager no longer says when it ended
                assert done["completed_at"] >= done["received_at"]
                still = await _incident_of(client, "Pod/stays-0")
                assert still is not None and still["status"] == "active"
                assert (await incidents(client))["summary"]["total"] == 2  # nothing opened twice
    finally:
        await asyncio.to_thread(am.stop)
