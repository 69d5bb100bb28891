"""Alert ingest: a webhook becomes one signal per alert, acknowledged by the broker before we answer."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from pipeline.bus.producer import EventProducer, Output
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook, alert_instance_key, to_signal
from pipeline.events import Event
from pipeline.observability import INGEST_DUPLICATES, INGEST_IN_FLIGHT, INGEST_SIGNALS, get_logger

log = get_logger("pipeline.ingest")


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time, or the in-flight limit is reached: answer 503, retry later."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    signal_ids: list[str]


class AlertIngest:
    """Publishes the signals of a webhook; remembers acknowledged alert instances to drop redeliveries."""

    def __init__(self, settings: Settings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic("signals")
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._in_flight = 0

    async def accept(self, webhook: AlertmanagerWebhook, *, traceparent: str | None = None) -> IngestResult:
        """Publish every new alert instance in the webhook; return once the broker has all of them."""
        if self._in_flight >= self.settings.ingest_max_in_flight:
            raise BrokerUnavailable("too many requests waiting for the broker")
        now = datetime.now(UTC)
        fresh: dict[str, Event] = {}
        for alert in webhook.alerts:
            key = alert_instance_key(alert)
            if key in self._delivered or key in fresh:
                continue
            signal = to_signal(alert, webhook, now)
            fresh[key] = Event.of(
                signal,
                source=webhook.externalURL or "alertmanager",
                id=signal.signal_id,
                subject=signal.resource_key,
                traceparent=traceparent,
            )
        duplicates = len(webhook.alerts) - len(fresh)
        if duplicates:
            INGEST_DUPLICATES.labels("alertmanager").inc(duplicates)
        if fresh:
            await self._publish(list(fresh.values()))
            for key in fresh:
                self._remember(key)
            INGEST_SIGNALS.labels("alertmanager").inc(len(fresh))
        return IngestResult(len(fresh), duplicates, [e.envelope.id for e in fresh.values()])

    async def _publish(self, events: list[Event]) -> None:
        self._in_flight += 1
        INGEST_IN_FLIGHT.inc()
        try:
            outputs = [Output.event(self.topic, e) for e in events]
            await asyncio.wait_for(self.producer.publish(outputs), self.settings.ingest_produce_timeout_s)
        except (TimeoutError, KafkaError) as exc:
            log.warning("broker did not acknowledge", error=repr(exc), signals=len(events))
            raise BrokerUnavailable(f"broker did not acknowledge: {type(exc).__name__}") from exc
        finally:
            self._in_flight -= 1
            INGEST_IN_FLIGHT.dec()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _remember(self, key: str) -> None:
        if self.settings.ingest_dedup_size == 0:
            return
        self._delivered[key] = None
        if len(self._delivered) > self.settings.ingest_dedup_size:
            self._delivered.popitem(last=False)
