"""An incident's timeline read from the log, shared by the gateway's `GET /api/v1/incidents/{id}/timeline` and
`pipeline replay --incident`: one `LogReader` pass over every topic an incident's events go to, from the scan's
start (`domain.timeline.timeline_start`) to the end of the log when the read began, keeping the events that
belong to the incident in causal order (`domain.timeline`). Nothing is committed and no group is joined."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing
from datetime import datetime

from pipeline.bus.log import LoggedRecord, LogReader, Window
from pipeline.config import Settings
from pipeline.domain.timeline import causal_order, members
from pipeline.events import Incident, IncidentChange

# Every topic an incident's events go to, in the order of the flow (changelogs and dead letters are not events
# of an incident: a changelog holds state, a dead letter a copy of a record that is already on its topic).
TIMELINE_TOPICS = ("signals", "incidents", "features", "scores", "remediation", "decisions", "workflows", "control")


def unknown_topics(names: Sequence[str]) -> list[str]:
    """The names that are not timeline topics."""
    return [n for n in names if n not in TIMELINE_TOPICS]


async def incident_timeline(settings: Settings, incident_id: str, start: datetime | None,
                            end: datetime | None = None, topics: Sequence[str] = ()) -> list[LoggedRecord]:
    """The incident's events between `start` and `end` (broker times; None: the beginning, the end of the log)
    on every timeline topic, in causal order; `topics` (logical names) keeps only those topics' events (their
    belonging is still worked out from all of them, so `signals` alone still finds the incident's signals)."""
    async with LogReader(settings) as reader:
        # an event naming another incident can never belong: left out while reading, to bound what is held
        kept = [r async for r in reader.read([settings.topic(t) for t in TIMELINE_TOPICS], Window(start, end))
                if r.event is not None and r.event.envelope.incidentid in (None, incident_id)]
    ordered = causal_order(members(kept, incident_id))
    if topics:
        wanted = {settings.topic(t) for t in topics}
        ordered = [r for r in ordered if r.position.topic in wanted]
    return ordered


async def first_change(settings: Settings, incident_id: str, start: datetime | None = None) -> Incident | None:
    """The incident as its first change on the `incidents` topic carries it (None when there is none): where a
    reader without the read model learns when the incident was received (`domain.timeline.timeline_start`)."""
    async with LogReader(settings) as reader, aclosing(reader.read([settings.topic("incidents")],
                                                                   Window(start=start))) as records:
        async for record in records:  # an incident's changes share its key, so one partition, in order
            payload = record.event.payload if record.event is not None else None
            if isinstance(payload, IncidentChange) and payload.incident.id == incident_id:
                return payload.incident
    return None
