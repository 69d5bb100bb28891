"""Alert ingest: a webhook becomes one signal per alert, acknowledged by the broker before we answer.

A webhook is checked whole before anything is produced: an alert past a size limit, or whose signal record
would be too large for the broker, refuses the whole webhook (`IngestRefused`, a 4xx naming the alert), so
nothing of it is stored and Alertmanager, which does not retry a 4xx, sees one consistent answer. Only what a
retry can fix is `BrokerUnavailable` (503 + Retry-After); a broker refusal no retry can fix is
`BrokerRejected`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
from pipeline.domain.alertmanager import AlertmanagerWebhook, WebhookAlert, signal_id, to_signal
from pipeline.events import Event
from pipeline.ingest.dedup import RecentIds
from pipeline.observability import INGEST_DUPLICATES, INGEST_IN_FLIGHT, INGEST_SIGNALS, get_logger

log = get_logger("pipeline.ingest")
_SIGNALS, _DUPLICATES = INGEST_SIGNALS.labels("alertmanager"), INGEST_DUPLICATES.labels("alertmanager")


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
    """Bytes of `text` in UTF-8 (`isascii` is O(1): ASCII text is one byte per character, nothing encoded)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _check_map(where: str, what: str, values: dict[str, str], per_value: int, total: int) -> None:
    if values:  # within the limits, found at C level (the usual case); else the first field past one is named
        joined_values, joined_names = "".join(values.values()), "".join(values)
        if (joined_values.isascii() and joined_names.isascii() and len(joined_values) + len(joined_names) <= total
                and max(map(len, values.values())) <= per_value):
            return
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


def _first(record: tuple[int, Output]) -> int:
    return record[0]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    signal_ids: list[str]
    refused: tuple[str, ...] = ()  # with skip_refused: the fields of the alerts left out


class AlertIngest:
    """Publishes the signals of a webhook, each alert instance once: an instance whose signal id is remembered
    (`RecentIds`: published here, or read from the signals topic by `dedup.SignalIdTail`) or in the same
    webhook already is a duplicate; one whose publish is in flight for another request waits for that publish
    and is a duplicate if it succeeded (else this request publishes it itself)."""

    def __init__(self, settings: Settings, producer: EventProducer, recent: RecentIds | None = None,
                 written: Callable[[int, int], None] | None = None) -> None:
        """`written(partition, offset)` is told where each signal this instance published was stored (the
        `SignalIdTail` then need not read it back)."""
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic("signals")
        self.recent = recent if recent is not None else RecentIds(settings.ingest_dedup_size)
        self.written = written
        self._pending: dict[str, asyncio.Future[bool]] = {}  # signal id -> its publish in flight: True if stored
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
        candidates: dict[str, tuple[int, Output]] = {}  # signal id -> (alert index, record)
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
                sid = signal_id(alert)
                if sid in candidates or self.recent.seen(sid):
                    duplicates += 1
                    continue
                candidates[sid] = (index, self._record(index, alert, webhook, now, traceparent, sid))
            except IngestRefused as exc:
                if not skip_refused:
                    raise
                log.warning("alert refused", field=exc.field, limit=exc.limit, size=exc.size)
                refused.append(exc.field)
        if candidates and self._in_flight >= settings.ingest_max_in_flight:
            raise BrokerUnavailable("too many requests waiting for the broker")
        published: list[tuple[int, str]] = []
        if candidates:
            self._in_flight += 1
            INGEST_IN_FLIGHT.inc()
            try:
                duplicates += await self._deliver(candidates, published)
            finally:
                self._in_flight -= 1
                INGEST_IN_FLIGHT.dec()
        if duplicates:
            _DUPLICATES.inc(duplicates)
        if published:
            _SIGNALS.inc(len(published))
        ids = [sid for _, sid in sorted(published)]
        log.debug("webhook accepted", accepted=len(ids), duplicates=duplicates, refused=len(refused),
                  receiver=webhook.receiver, signal_ids=ids)  # per webhook, DEBUG only: the hot path stays quiet
        return IngestResult(len(ids), duplicates, ids, tuple(refused))

    async def _deliver(self, candidates: dict[str, tuple[int, Output]], published: list[tuple[int, str]]) -> int:
        """Publish the candidates no other request is publishing, and wait for those another one is; returns
        how many turned out to be duplicates. A candidate whose other publish failed is published here, once:
        if yet another request is publishing it by then and that fails too, this request fails with
        `BrokerUnavailable` (a retry publishes it)."""
        duplicates = 0
        for last_round in (False, True):
            own: dict[str, tuple[int, Output]] = {}
            waits: dict[str, asyncio.Future[bool]] = {}
            for sid, record in candidates.items():
                if sid in self.recent:  # stored meanwhile (by a request that finished, or read from the topic)
                    duplicates += 1
                elif (future := self._pending.get(sid)) is not None:
                    waits[sid] = future
                else:
                    own[sid] = record
            if own:  # registered before the first await: a copy arriving now waits for this publish
                await self._publish_own(own)
                published.extend((index, sid) for sid, (index, _) in own.items())
            if waits:
                await asyncio.wait(waits.values())  # not cancelled with this request: other requests own them
            failed = {sid: candidates[sid] for sid, future in waits.items() if not future.result()}
            duplicates += len(waits) - len(failed)
            if not failed:
                break
            if last_round:
                raise BrokerUnavailable("the broker did not acknowledge a concurrent delivery of the same alerts")
            candidates = failed
        return duplicates

    async def _publish_own(self, own: dict[str, tuple[int, Output]]) -> None:
        """Publish `own`, letting requests with copies of them wait for the outcome."""
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()  # one for all of them
        pending = self._pending
        for sid in own:
            pending[sid] = outcome
        stored = False
        try:
            await self._publish(sorted(own.values(), key=_first))
            for sid in own:
                self.recent.add(sid)
            stored = True
        finally:  # also when this request is cancelled: a waiting copy then publishes the alert itself
            for sid in own:
                if pending.get(sid) is outcome:
                    del pending[sid]
            outcome.set_result(stored)

    def _record(self, index: int, alert: WebhookAlert, webhook: AlertmanagerWebhook, now: datetime,
                traceparent: str | None, sid: str) -> Output:
        """The signal record of `alerts[index]` (signal id `sid`); `IngestRefused` past INGEST_MAX_SIGNAL_BYTES."""
        signal = to_signal(alert, webhook, now, sid)
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
        try:
            outputs = [output for _, output in records]
            async with asyncio.timeout(self.settings.ingest_produce_timeout_s):  # no task per call, as wait_for
                stored = await self.producer.publish(outputs)
            if self.written is not None:
                for where in stored:
                    self.written(where.partition, where.offset)
        except Exception as exc:
            failure = self._failure(exc, records)
            if failure is exc:
                raise
            raise failure from exc

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
