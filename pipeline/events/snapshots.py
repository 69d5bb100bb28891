"""Snapshots of the gateway's read models: the latest state per object on compacted `<name>.snapshot` topics,
and per source partition the watermark up to which they cover the log (pipeline/stages/snapshot.py writes them,
the gateway starts from them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NamedTuple

from pydantic import Field
from pydantic_core import from_json

from pipeline.events.base import IncidentStatus, InvalidEvent, Payload, Severity
from pipeline.events.incidents import Incident
from pipeline.events.remediation import Decision, Proposal
from pipeline.events.workflows import Workflow

# The header of an incident snapshot record carrying its IncidentRow: a reader lists and filters incidents from
# it and decodes a record's value only when the incident itself is asked for (the gateway at start-up).
INDEX_HEADER = "pipeline_index"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATUSES = {s.value: s for s in IncidentStatus}
_SEVERITIES = {s.value: s for s in Severity}


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
    index_header_docs: ClassVar[dict[str, str]] = {
        INDEX_HEADER: "The incident's row as a JSON array: created_at (microseconds since the epoch), status, "
                          "severity, namespace, target, issue_type. A reader lists incidents without decoding values."}
    incident: Incident

    @property
    def incident_id(self) -> str:
        return self.incident.id

    def index_headers(self) -> list[tuple[str, bytes]]:
        return [(INDEX_HEADER, IncidentRow.of(self.incident).header())]


def micros(at: datetime) -> int:
    """A time as whole microseconds since the epoch (exact, unlike `timestamp()`); naive times are UTC."""
    return ((at if at.tzinfo else at.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND


class IncidentRow(NamedTuple):
    """What listing, filtering, counting and the history recommendations read of an incident: its id, when it
    started (`created`, microseconds since the epoch: `created_at`), status, severity, namespace, target and
    issue type. Carried in the INDEX_HEADER of its snapshot record as a JSON array (all but the id, which is
    the record's key). A tuple: a gateway makes 100,000 of them at start (a third of a frozen dataclass's cost)."""

    id: str
    created: int
    status: IncidentStatus
    severity: Severity
    namespace: str
    target: str
    issue_type: str

    @classmethod
    def of(cls, incident: Incident) -> IncidentRow:
        return cls(incident.id, micros(incident.created_at), incident.status, incident.severity, incident.namespace,
                   incident.target, incident.issue_type)

    def header(self) -> bytes:
        return json.dumps([self.created, self.status.value, self.severity.value, self.namespace, self.target,
                           self.issue_type], separators=(",", ":")).encode()

    @classmethod
    def from_header(cls, incident_id: str, raw: bytes) -> IncidentRow:
        """The row of a header written by `header`; InvalidEvent when it is not one."""
        try:
            fields: Any = from_json(raw)  # pydantic's JSON parser: a fifth of json.loads' time on a short array
            created, status, severity, namespace, target, issue_type = fields
            row = cls(incident_id, created, _STATUSES[status], _SEVERITIES[severity], namespace, target, issue_type)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidEvent(f"{INDEX_HEADER} header is not an incident row: {raw[:200]!r}") from exc
        if type(created) is not int or type(namespace) is not str or type(target) is not str or (
                type(issue_type) is not str):
            raise InvalidEvent(f"{INDEX_HEADER} header is not an incident row: {raw[:200]!r}")
        return row


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
