"""The audit stage (`pipeline stage audit`): every record of every topic, once, in a hash-chained trail on disk.

A consumer group of its own (`<prefix>audit`) over every topic of `topics/*.yaml` — dead letters and the
compacted changelogs included — whose batches go to `AuditLog.append` (write, fsync, head) and whose offsets are
committed only after that returned (`GroupSink`). It is not a `Stage`: it produces nothing, and it keeps records
that are not events (dead letters' foreign payloads, tombstones) as they are instead of dead-lettering them.
Restarted or redelivered, it writes each record once: the log reads its own files back on start and skips the
dedup keys it already holds (event id on its topic, or the position of a record without one).

Run one replica per trail directory: the trail is one chain, written by one process.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from pipeline.adapters.audit_log import AuditLog
from pipeline.bus.log import LoggedRecord
from pipeline.bus.sink import GroupSink
from pipeline.bus.stage import BATCH_RETRY
from pipeline.bus.topics import load_specs
from pipeline.config import Settings
from pipeline.domain.audit import Entry
from pipeline.observability import (
    AUDIT_DUPLICATES,
    AUDIT_LAST_SEQ,
    AUDIT_LINES,
    AUDIT_WRITE_SECONDS,
    get_logger,
)

log = get_logger("pipeline.audit")


def audited_topics(settings: Settings) -> list[str]:
    """Every topic of the pipeline (the specs in TOPICS_DIR), with the prefix."""
    return sorted(settings.topic(spec.name) for spec in load_specs(settings.topics_dir))


def timestamp(value: datetime) -> str:
    """Milliseconds always, so that the trail's times compare as text."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry(record: LoggedRecord) -> Entry:
    p = record.position
    return Entry(p.topic, p.partition, p.offset, timestamp(p.timestamp), record.key, record.headers, record.value)


class AuditStage:
    """The audit trail's writer as a part of a process: `start`, `stop`."""

    name = "audit"

    def __init__(self, settings: Settings, trail: AuditLog | None = None) -> None:
        self.settings = settings
        self.trail = trail or AuditLog(settings.audit_directory, max_file_bytes=settings.audit_file_max_bytes,
                                       retain_files=settings.audit_retain_files, remember=settings.audit_dedup_ids)
        self.sink = GroupSink(settings, self.name, audited_topics(settings), self._write, BATCH_RETRY)

    async def start(self) -> None:
        await asyncio.to_thread(self.trail.open)
        if self.trail.cut_bytes:
            log.warning("cut a line torn by a crash off the end of the trail", bytes=self.trail.cut_bytes)
        AUDIT_LAST_SEQ.set(self.trail.seq)
        log.info("audit trail open", directory=str(self.trail.directory), last_seq=self.trail.seq,
                 remembered=len(self.trail.seen))
        await self.sink.start()

    async def stop(self) -> None:
        await self.sink.stop()
        self.trail.close()

    async def _write(self, records: list[LoggedRecord]) -> None:
        started = time.perf_counter()
        appended = await asyncio.to_thread(self.trail.append, [entry(r) for r in records])
        AUDIT_WRITE_SECONDS.observe(time.perf_counter() - started)
        AUDIT_DUPLICATES.inc(appended.duplicates)
        AUDIT_LAST_SEQ.set(self.trail.seq)
        AUDIT_LINES.inc(appended.written)
