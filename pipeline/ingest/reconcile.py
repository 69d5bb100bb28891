"""On start, ask Alertmanager for its active alerts: alerts that fired during our outage get ingested, and the
firing alerts of open incidents that Alertmanager no longer lists (their resolve notification was lost while we
were down) get resolved signals (`inferred_by: reconcile`), so no incident stays open forever.

The open incidents are read from the correlate stage's changelog before Alertmanager is asked, so an alert that
fires in between is never taken for a resolved one. Only alerts received from Alertmanager are resolved; with
several independent Alertmanagers (not an HA pair) feeding one pipeline, set `ALERTMANAGER_URL` on none of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import stamina

from pipeline.adapters.correlation_states import read_states
from pipeline.adapters.http import async_client
from pipeline.bus import kafka
from pipeline.bus.producer import Output
from pipeline.bus.stage import ChangelogReader
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook, lost_resolutions
from pipeline.events import CorrelationState, Event
from pipeline.ingest.alerts import AlertIngest, IngestResult
from pipeline.observability import get_logger

log = get_logger("pipeline.ingest.reconcile")


def to_webhook(alerts: list[dict[str, Any]], external_url: str) -> AlertmanagerWebhook:
    """Alertmanager's v2 API alerts in the webhook v4 shape (all active, so all firing)."""
    return AlertmanagerWebhook.model_validate(
        {
            "version": "4",
            "receiver": "reconcile",
            "status": "firing",
            "externalURL": external_url,
            "alerts": [
                {
                    "status": "firing",
                    "labels": a.get("labels") or {},
                    "annotations": a.get("annotations") or {},
                    "startsAt": a["startsAt"],
                    "endsAt": None,
                    "generatorURL": a.get("generatorURL") or "",
                    "fingerprint": a["fingerprint"],
                }
                for a in alerts
                if (a.get("status") or {}).get("state", "active") == "active"
            ],
        }
    )


@stamina.retry(on=httpx.TransportError, attempts=5, timeout=30.0)
async def _fetch(settings: Settings) -> list[dict[str, Any]]:
    client = async_client(
        settings,
        timeout=settings.alertmanager_timeout_s,
        ca_file=settings.alertmanager_ca_file,
        tls_verify=settings.alertmanager_tls_verify,
    )
    async with client:
        response = await client.get(f"{settings.alertmanager_url.rstrip('/')}/api/v2/alerts", params={"active": "true"})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


async def open_incidents(settings: Settings) -> list[CorrelationState]:
    """The latest correlate state of every resource with an open incident (its compacted changelog)."""
    topic = settings.topic("correlate.state")
    parts = (await kafka.partitions(settings, topic)).get(topic) or []
    states = await read_states(ChangelogReader(settings), topic, parts)
    return [s for by_key in states.values() for s in by_key.values() if s.incident is not None]


async def reconcile(ingest: AlertIngest) -> IngestResult | None:
    """Ingest Alertmanager's active alerts (duplicates of what we already have are dropped downstream) and
    resolve the open incidents' alerts it no longer has."""
    alertmanager_url = ingest.settings.alertmanager_url
    try:
        states = await open_incidents(ingest.settings)
    except Exception as exc:  # noqa: BLE001 - still ingest the active alerts; resolving waits for the next start
        log.warning("open incidents not readable: lost resolutions are not reconciled", error=repr(exc))
        states = None
    try:
        alerts = await _fetch(ingest.settings)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("alertmanager reconcile failed", url=alertmanager_url, error=repr(exc))
        return None
    result = await ingest.accept(to_webhook(alerts, alertmanager_url), skip_refused=True)
    resolved = []
    if states is not None:
        unresolved = {a["fingerprint"] for a in alerts if a.get("fingerprint")}
        resolved = lost_resolutions(states, unresolved, alertmanager_url, datetime.now(UTC))
    if resolved:
        try:
            await ingest.producer.publish(
                [
                    Output.event(
                        ingest.topic,
                        Event.of(s, source=alertmanager_url, id=s.signal_id, subject=s.resource_key),
                    )
                    for s in resolved
                ]
            )
        except Exception as exc:  # noqa: BLE001 - the incidents stay open until the next start reconciles
            log.warning("lost resolutions not stored", error=repr(exc), signals=len(resolved))
            resolved = []
    log.info("alertmanager reconciled", active=len(alerts), accepted=result.accepted, resolved=len(resolved))
    return result
