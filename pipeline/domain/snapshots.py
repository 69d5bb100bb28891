"""Snapshots of the gateway's read models (pure): what the snapshot stage folds and writes, and what a reader
makes of a snapshot topic read whole.

A snapshot topic holds the latest state of each object (an incident, a proposal and what became of it) and, per
source partition, a watermark: every event before it is folded in. A reader loads the objects, seeks each source
partition to its watermark and folds on from there. Each object carries the last offset of every source
partition folded into it (`covered`) and the ids of its last events (`recent_ids`): an event at or before its
offset is in it already (a crash between an object's record and the watermark leaves the watermark behind), and
a duplicate of a recent event later in the log is skipped, as a reader of the whole log skips it by id. So a
snapshot plus the log after its watermark gives the state the whole log gives, however often events repeat.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain.incidents import fold
from pipeline.domain.remediation_view import Entry, RemediationView, SeenIds
from pipeline.events import (
    Folded,
    Incident,
    IncidentChange,
    IncidentSnapshot,
    Payload,
    RemediationSnapshot,
    SnapshotWatermark,
)

RECENT_IDS = 16  # event ids an object's snapshot carries (duplicates come close to their original)
SOURCES = ("incidents", "remediation", "decisions", "workflows")  # the topics the snapshots fold


def where(topic: str, partition: int) -> str:
    """The key of a source partition in `covered`."""
    return f"{topic}:{partition}"


class Coverage:
    """Per object id: the last offset of each source partition folded into it, and its last event ids."""

    def __init__(self) -> None:
        self.covered: dict[str, dict[str, int]] = {}
        self.recent: dict[str, deque[str]] = {}

    def covers(self, object_id: str, at: str, offset: int) -> bool:
        """True when the object already holds the event at `offset` of source partition `at`."""
        covered = self.covered.get(object_id)
        return covered is not None and covered.get(at, -1) >= offset

    def note(self, object_id: str, at: str, offset: int, event_id: str) -> None:
        """The object folded this event in."""
        covered = self.covered.setdefault(object_id, {})
        covered[at] = max(offset, covered.get(at, -1))
        recent = self.recent.setdefault(object_id, deque(maxlen=RECENT_IDS))
        if event_id not in recent:
            recent.append(event_id)

    def load(self, object_id: str, folded: Folded, applied: SeenIds) -> None:
        self.covered[object_id] = dict(folded.covered)
        self.recent[object_id] = deque(folded.recent_ids, maxlen=RECENT_IDS)
        for event_id in folded.recent_ids:
            applied.add(event_id)

    def drop(self, object_id: str) -> None:
        """Forget an object's coverage (its snapshot record holds it, and `load` brings it back)."""
        self.covered.pop(object_id, None)
        self.recent.pop(object_id, None)

    def of(self, object_id: str) -> dict[str, object]:
        """The `Folded` fields of an object's snapshot."""
        return {"covered": dict(self.covered.get(object_id, {})), "recent_ids": list(self.recent.get(object_id, ()))}


@dataclass
class Snapshot:
    """A snapshot topic read whole: the latest record per key wins (records of one key are in one partition, in
    the order written)."""

    incidents: dict[str, IncidentSnapshot] = field(default_factory=dict)
    entries: dict[str, RemediationSnapshot] = field(default_factory=dict)
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> offset
    records: int = 0

    def add(self, payload: Payload) -> None:
        self.records += 1
        if isinstance(payload, IncidentSnapshot):
            self.incidents[payload.incident.id] = payload
        elif isinstance(payload, RemediationSnapshot):
            self.entries[payload.proposal.id] = payload
        elif isinstance(payload, SnapshotWatermark):
            self.watermarks[(payload.topic, payload.partition)] = payload.offset


def entry_of(record: RemediationSnapshot) -> Entry:
    return Entry(record.proposal, record.submitted_at, record.decision, record.resolution_seconds, record.released,
                 record.released_at, record.workflow, record.sequence, record.request_key, list(record.incidents),
                 record.proposed)


def snapshot_of(entry: Entry, coverage: Coverage) -> RemediationSnapshot:
    return RemediationSnapshot(
        proposal=entry.proposal, submitted_at=entry.submitted_at, decision=entry.decision,
        resolution_seconds=entry.resolution_seconds, released=entry.released, released_at=entry.released_at,
        workflow=entry.workflow, sequence=entry.sequence, request_key=entry.request_key,
        incidents=list(entry.incidents), proposed=entry.proposed, **coverage.of(entry.proposal.id))


class SnapshotFold:
    """The snapshot stage's state of one source partition number: the incidents and the remediation view folded
    from it, what changed since the last records were written, and the watermarks."""

    def __init__(self, alerts_listed: int) -> None:
        self.alerts_listed = alerts_listed
        self.incidents: dict[str, Incident] = {}
        self.incident_ids = SeenIds()
        self.incident_coverage = Coverage()
        self.view = RemediationView(changed=set())
        self.entry_coverage = Coverage()
        self.watermarks: dict[tuple[str, int], int] = {}
        self._changed_incidents: set[str] = set()
        self._changed_entries: set[str] = set()
        self._changed_watermarks: set[tuple[str, int]] = set()

    def apply(self, event_id: str, payload: Payload, at: datetime, topic: str, partition: int, offset: int) -> None:
        """Fold one event read at (topic, partition, offset); an event already folded in changes nothing."""
        source = where(topic, partition)
        if isinstance(payload, IncidentChange):
            self._apply_incident(event_id, payload.incident, source, offset)
        else:
            assert self.view.changed is not None
            self.view.changed.clear()
            coverage = self.entry_coverage
            self.view.apply(event_id, payload, at, lambda pid: coverage.covers(pid, source, offset))
            for pid in self.view.changed:
                coverage.note(pid, source, offset, event_id)
            self._changed_entries.update(self.view.changed)
        key = (topic, partition)
        if self.watermarks.get(key, -1) < offset + 1:
            self.watermarks[key] = offset + 1
            self._changed_watermarks.add(key)

    def _apply_incident(self, event_id: str, incident: Incident, source: str, offset: int) -> None:
        if self.incident_coverage.covers(incident.id, source, offset) or not self.incident_ids.add(event_id):
            return
        self.incidents[incident.id] = fold(self.incidents.get(incident.id), incident, self.alerts_listed)
        self.incident_coverage.note(incident.id, source, offset, event_id)
        self._changed_incidents.add(incident.id)

    def records(self) -> list[Payload]:
        """The snapshot records of what changed since the last `written`: objects first, then watermarks."""
        out: list[Payload] = [
            IncidentSnapshot(incident=self.incidents[i], **self.incident_coverage.of(i))
            for i in sorted(self._changed_incidents)]
        out.extend(snapshot_of(self.view.entries[pid], self.entry_coverage) for pid in sorted(self._changed_entries))
        out.extend(SnapshotWatermark(topic=t, partition=p, offset=self.watermarks[(t, p)])
                   for t, p in sorted(self._changed_watermarks))
        return out

    def written(self) -> None:
        """The records are acknowledged."""
        self._changed_incidents.clear()
        self._changed_entries.clear()
        self._changed_watermarks.clear()

    def load(self, snapshot: Snapshot) -> None:
        """Start from a snapshot read back."""
        for record in snapshot.incidents.values():
            self.incidents[record.incident.id] = record.incident
            self.incident_coverage.load(record.incident.id, record, self.incident_ids)
        restore_entries(self.view, snapshot.entries.values(), self.entry_coverage)
        self.watermarks.update(snapshot.watermarks)


def restore_entries(view: RemediationView, records: Iterable[RemediationSnapshot], coverage: Coverage) -> None:
    """A remediation view (and the coverage of its entries) from snapshot records."""
    records = list(records)
    for record in records:
        coverage.load(record.proposal.id, record, view.applied)
    view.restore(entry_of(r) for r in records)
