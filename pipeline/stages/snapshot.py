"""Snapshot stage: folds the gateway's read-model topics (`incidents`, `remediation`, `decisions`, `workflows`)
and writes the latest state per object to compacted snapshot topics, so a gateway starts from O(live objects)
records instead of the whole retention window, and an incident whose opening events are past retention is
still served (pipeline/domain/snapshots.py says how a snapshot and the log after it add up).

State is per source partition number: `incidents.snapshot` partition N holds the incidents of `incidents`
partition N; `remediation.snapshot` partition N the proposals of `remediation`/`decisions`/`workflows` partition N
(all three keyed by namespace). After each batch the changed objects' records and the watermarks are produced
and acknowledged before the offsets are committed; a restarted or reassigned instance reads its partitions of
the snapshot topics back."""

from __future__ import annotations

from pipeline.bus.producer import Output
from pipeline.bus.stage import ChangelogReader, Origin, Stage
from pipeline.config import Settings
from pipeline.domain.snapshots import Snapshot, SnapshotFold
from pipeline.events import Event, IncidentSnapshot, Payload, SnapshotWatermark


class SnapshotStage(Stage):
    """Consumes the read-model topics, produces nothing downstream: its output is the snapshot topics."""

    name = "snapshot"
    inputs = ("incidents", "remediation", "decisions", "workflows")

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.incidents_topic = settings.topic("incidents")
        self.incidents_snapshot = settings.topic("incidents.snapshot")
        self.remediation_snapshot = settings.topic("remediation.snapshot")
        self._folds: dict[int, SnapshotFold] = {}

    def _fold(self, partition: int) -> SnapshotFold:
        found = self._folds.get(partition)
        if found is None:
            found = self._folds[partition] = SnapshotFold(self.settings.incident_alerts_listed)
        return found

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        self._fold(origin.partition).apply(event.envelope.id, event.payload, event.envelope.time, origin.topic,
                                           origin.partition, origin.offset)
        return []

    def _topic_of(self, payload: Payload) -> str:
        if isinstance(payload, IncidentSnapshot) or (
                isinstance(payload, SnapshotWatermark) and payload.topic == self.incidents_topic):
            return self.incidents_snapshot
        return self.remediation_snapshot

    def changelog(self) -> list[Output]:
        return [Output.event(self._topic_of(payload), Event.of(payload, source="pipeline/snapshot"), partition=p)
                for p, fold in self._folds.items() for payload in fold.records()]

    def commit(self) -> None:
        for fold in self._folds.values():
            fold.written()

    def rollback(self) -> None:
        """Producing failed: the batch comes again. Its events stay folded (folding one twice changes nothing)
        and its changed objects stay to be written."""

    async def restore(self, reader: ChangelogReader, partitions: list[int]) -> None:
        for partition in partitions:
            snapshot = Snapshot()
            for topic in (self.incidents_snapshot, self.remediation_snapshot):
                for _, event in await reader.read(topic, [partition]):
                    if event is not None:
                        snapshot.add(event.payload)
            fold = self._folds[partition] = SnapshotFold(self.settings.incident_alerts_listed)
            fold.load(snapshot)

    def release(self, partitions: list[int]) -> None:
        for partition in partitions:
            self._folds.pop(partition, None)
