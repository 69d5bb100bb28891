"""Snapshots of the gateway's read models: the latest state per object on compacted `<name>.snapshot` topics,
and per source partition the watermark up to which they cover the log (pipeline/stages/snapshot.py writes them,
the gateway starts from them)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from pipeline.events.base import Payload
from pipeline.events.incidents import Incident
from pipeline.events.remediation import Decision, Proposal
from pipeline.events.workflows import Workflow


class Folded(Payload):
    """What every snapshot of an object carries besides its state, so that a snapshot followed by the log after
    its watermark gives the state a reader folding the whole log has, with at-least-once delivery: the last
    offset of each source partition folded into it (an event at or before it is in the snapshot already) and
    the ids of the last events folded into it (a duplicate of one of them later in the log is skipped)."""

    covered: dict[str, int] = Field(
        default_factory=dict, description="`topic:partition` -> offset of the last event of it folded in")
    recent_ids: list[str] = Field(default_factory=list, description="Ids of the last events folded in, oldest first")


class IncidentSnapshot(Folded):
    """The read model's incident (alerts folded, at most INCIDENT_ALERTS_LISTED listed), open or resolved."""

    event_type: ClassVar[str] = "pipeline.snapshot.incident.v1"
    key_field: ClassVar[str] = "incident_id"
    incident: Incident

    @property
    def incident_id(self) -> str:
        return self.incident.id


class RemediationSnapshot(Folded):
    """One proposal of the remediation read model and what became of it: its decision, its release, its
    workflow's latest transition, the incidents it speaks for and the request key it answers."""

    event_type: ClassVar[str] = "pipeline.snapshot.remediation.v1"
    key_field: ClassVar[str] = "proposal_id"
    proposal: Proposal
    submitted_at: datetime
    decision: Decision | None = None
    resolution_seconds: float | None = None
    released: str | None = Field(None, description="ActionReleased.reason, once released")
    released_at: datetime | None = None
    workflow: Workflow | None = None
    sequence: int = Field(0, description="The workflow transition's sequence number")
    request_key: str | None = Field(None, description="The manual request key this proposal answers")
    incidents: list[str] = Field(default_factory=list, description="Incident ids it is indexed under")
    proposed: bool = Field(False, description="Its proposal was folded in (not only its decision or workflow)")

    @property
    def proposal_id(self) -> str:
        return self.proposal.id


class SnapshotWatermark(Payload):
    """Every event of a source partition before `offset` is folded into the snapshot topic holding this record
    (key `watermark/<topic>/<partition>`): a reader seeks the partition there and tails."""

    event_type: ClassVar[str] = "pipeline.snapshot.watermark.v1"
    key_field: ClassVar[str] = "key"
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0, description="The next offset of the source partition not yet folded in")

    @property
    def key(self) -> str:
        return f"watermark/{self.topic}/{self.partition}"
