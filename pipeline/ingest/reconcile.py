"""On start, ask Alertmanager for its active alerts: alerts that fired during our outage get ingested."""

from __future__ import annotations

from typing import Any

import httpx
import stamina

from pipeline.adapters.http import async_client
from pipeline.domain.alertmanager import AlertmanagerWebhook
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
async def _fetch(url: str) -> list[dict[str, Any]]:
    async with async_client(timeout=10.0) as client:
        response = await client.get(f"{url.rstrip('/')}/api/v2/alerts", params={"active": "true"})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


async def reconcile(ingest: AlertIngest, alertmanager_url: str) -> IngestResult | None:
    """Ingest Alertmanager's active alerts; duplicates of what we already have are dropped downstream."""
    try:
        alerts = await _fetch(alertmanager_url)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("alertmanager reconcile failed", url=alertmanager_url, error=repr(exc))
        return None
    result = await ingest.accept(to_webhook(alerts, alertmanager_url))
    log.info("alertmanager reconciled", active=len(alerts), accepted=result.accepted)
    return result
