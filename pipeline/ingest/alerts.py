"""Alert ingest: a webhook becomes one signal per alert, acknowledged by the broker before we answer.

A webhook is checked whole before anything is produced: an alert past a size limit, or whose signal record
would be too large for the broker, refuses the whole webhook (`IngestRefused`, a 4xx naming the alert), so
nothing of it is stored and Alertmanager, which does not retry a 4xx, sees one consistent answer. Only what a
retry can fix is `BrokerUnavailable` (503 + Retry-After); a broker refusal no retry can fix is
`BrokerRejected`."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
    UnsupportedVersionError,
)

from pipeline.bus.producer import EventProducer, Output, RecordRejected
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook, WebhookAlert, alert_instance_key, to_signal
from pipeline.events import Event
from pipeline.observability import INGEST_DUPLICATES, INGEST_IN_FLIGHT, INGEST_SIGNALS, get_logger

log = get_logger("pipeline.ingest")


# The broker refused a record for its size: the same record would be refused again.
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
# The broker refused the write for a reason of its configuration or permissions: a retry in a few seconds
# cannot fix it (an operator can). aiokafka's own `retriable` flag cannot tell: it is False for timeouts too.
_REJECTED = (
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    PolicyViolationError,
    InvalidRequiredAcksError,
    UnsupportedVersionError,
    UnsupportedForMessageFormatError,
    InvalidMessageError,
    CorruptRecordException,
)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time, or the in-flight limit is reached: answer 503, retry later."""


class BrokerRejected(RuntimeError):
    """The broker refused the records for a reason a retry cannot fix (permissions, topic configuration)."""


class IngestRefused(ValueError):
    """Part of the webhook cannot be stored: `field` names it, `limit` and `size` are in bytes (or alerts)."""

    def __init__(self, field: str, message: str, *, limit: int, size: int) -> None:
        super().__init__(message)
        self.field, self.limit, self.size = field, limit, size


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _check_map(where: str, what: str, values: dict[str, str], per_value: int, total: int) -> None:
    size = 0
    for name, value in values.items():
        length = _utf8(value)
        if length > per_value:
            raise IngestRefused(
                f"{where}.{name}", f"{where}.{name}: {what} value of {length} bytes; at most {per_value}",
                limit=per_value, size=length,
            )
        size += _utf8(name) + length
    if size > total:
        raise IngestRefused(
            where, f"{where}: {what}s of {size} bytes (names and values); at most {total}", limit=total, size=size
        )


def check_alert(settings: Settings, index: int, alert: WebhookAlert) -> None:
    """`IngestRefused` naming the first field of `alerts[index]` past a size limit."""
    where = f"alerts[{index}]"
    _check_map(f"{where}.labels", "label", alert.labels, settings.ingest_max_label_value_bytes,
               settings.ingest_max_labels_bytes)
    _check_map(f"{where}.annotations", "annotation", alert.annotations,
               settings.ingest_max_annotation_value_bytes, settings.ingest_max_annotations_bytes)
    check_url(settings, f"{where}.generatorURL", alert.generatorURL)


def check_url(settings: Settings, field: str, url: str) -> None:
    length = _utf8(url)
    if length > settings.ingest_max_url_bytes:
        raise IngestRefused(
            field, f"{field}: {length} bytes; at most {settings.ingest_max_url_bytes}",
            limit=settings.ingest_max_url_bytes, size=length,
        )


def record_size(output: Output) -> int:
    """Bytes of a record's key, value and headers: what the broker's message size limit counts, nearly."""
    return (len(output.key or b"") + len(output.value or b"")
            + sum(len(k) + len(v) for k, v in output.headers))


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    signal_ids: list[str]
    refused: tuple[str, ...] = ()  # with skip_refused: the fields of the alerts left out


class AlertIngest:
    """Publishes the signals of a webhook; remembers acknowledged alert instances to drop redeliveries."""

    def __init__(self, settings: Settings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic("signals")
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._in_flight = 0

    async def accept(
        self, webhook: AlertmanagerWebhook, *, traceparent: str | None = None, skip_refused: bool = False
    ) -> IngestResult:
        """Publish every new alert instance in the webhook; return once the broker has all of them.
        `IngestRefused` (nothing produced) when any alert cannot be stored; with `skip_refused` (for alerts
        read from Alertmanager, where nobody could be told) such alerts are left out, logged and listed in
        `IngestResult.refused`, and the others are published."""
        settings = self.settings
        check_url(settings, "externalURL", webhook.externalURL)
        now = datetime.now(UTC)
        fresh: dict[str, tuple[int, Output]] = {}
        refused: list[str] = []
        duplicates = 0
        for index, alert in enumerate(webhook.alerts):
            try:
                if index >= settings.ingest_max_alerts:
                    raise IngestRefused(
                        "alerts",
                        f"alerts: {len(webhook.alerts)} in one webhook; at most {settings.ingest_max_alerts}",
                        limit=settings.ingest_max_alerts,
                        size=len(webhook.alerts),
                    )
                check_alert(settings, index, alert)
                key = alert_instance_key(alert)
                if key in self._delivered or key in fresh:
                    duplicates += 1
                    continue
                fresh[key] = (index, self._record(index, alert, webhook, now, traceparent))
            except IngestRefused as exc:
                if not skip_refused:
                    raise
                log.warning("alert refused", field=exc.field, limit=exc.limit, size=exc.size)
                refused.append(exc.field)
        if self._in_flight >= settings.ingest_max_in_flight:
            raise BrokerUnavailable("too many requests waiting for the broker")
        if duplicates:
            INGEST_DUPLICATES.labels("alertmanager").inc(duplicates)
        if fresh:
            await self._publish(list(fresh.values()))
            for key in fresh:
                self._remember(key)
            INGEST_SIGNALS.labels("alertmanager").inc(len(fresh))
        ids = [dict(output.headers)["ce_id"].decode() for _, output in fresh.values()]
        return IngestResult(len(fresh), duplicates, ids, tuple(refused))

    def _record(
        self, index: int, alert: WebhookAlert, webhook: AlertmanagerWebhook, now: datetime, traceparent: str | None
    ) -> Output:
        """The signal record of `alerts[index]`; `IngestRefused` past INGEST_MAX_SIGNAL_BYTES."""
        signal = to_signal(alert, webhook, now)
        event = Event.of(
            signal,
            source=webhook.externalURL or "alertmanager",
            id=signal.signal_id,
            subject=signal.resource_key,
            traceparent=traceparent,
        )
        output = Output.event(self.topic, event)
        limit = self.settings.ingest_max_signal_bytes
        if (size := record_size(output)) > limit:
            raise IngestRefused(
                f"alerts[{index}]",
                f"alerts[{index}]: its signal record would be {size} bytes; at most {limit}",
                limit=limit,
                size=size,
            )
        return output

    async def _publish(self, records: list[tuple[int, Output]]) -> None:
        self._in_flight += 1
        INGEST_IN_FLIGHT.inc()
        try:
            outputs = [output for _, output in records]
            await asyncio.wait_for(self.producer.publish(outputs), self.settings.ingest_produce_timeout_s)
        except Exception as exc:
            failure = self._failure(exc, records)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            self._in_flight -= 1
            INGEST_IN_FLIGHT.dec()

    def _failure(self, exc: Exception, records: list[tuple[int, Output]]) -> Exception:
        """What a failed publish means for the caller: the producer's `RecordRejected` names the record it
        refused for good; any other Kafka error or the timeout is transient."""
        cause = exc.cause if isinstance(exc, RecordRejected) else exc
        if isinstance(cause, _TOO_LARGE):  # past INGEST_MAX_SIGNAL_BYTES, when that is above the broker's
            if isinstance(exc, RecordRejected) and 0 <= exc.index < len(records):
                index, output = records[exc.index]
            else:
                index, output = max(records, key=lambda r: record_size(r[1]))
            size = record_size(output)
            log.warning("broker refused a signal record for its size", error=repr(cause), alert=index, bytes=size)
            return IngestRefused(
                f"alerts[{index}]",
                f"alerts[{index}]: the broker refused its signal record of {size} bytes ({type(cause).__name__}); "
                "INGEST_MAX_SIGNAL_BYTES must be below the broker's message.max.bytes",
                limit=self.settings.ingest_max_signal_bytes,
                size=size,
            )
        if isinstance(exc, RecordRejected) or isinstance(cause, _REJECTED):
            log.error("broker rejected the signals", error=repr(cause), signals=len(records))
            return BrokerRejected(f"broker rejected the signals: {type(cause).__name__}: {cause}")
        if isinstance(exc, TimeoutError | KafkaError):
            log.warning("broker did not acknowledge", error=repr(exc), signals=len(records))
            return BrokerUnavailable(f"broker did not acknowledge: {type(exc).__name__}")
        return exc

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _remember(self, key: str) -> None:
        if self.settings.ingest_dedup_size == 0:
            return
        self._delivered[key] = None
        if len(self._delivered) > self.settings.ingest_dedup_size:
            self._delivered.popitem(last=False)
