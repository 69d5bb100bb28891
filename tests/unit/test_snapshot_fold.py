"""Snapshots of the read models as pure functions (pipeline/domain/snapshots.py): a snapshot written at any point,
loaded and followed by the log after its watermark -- even a watermark left behind by a crash, and with events
delivered twice -- gives the state of a fold of the whole log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from pipeline.bench.history import EPOCH, history, incident_id, remediation_events
from pipeline.domain.remediation_view import remediation_of
from pipeline.domain.snapshots import RECENT_IDS, Snapshot, SnapshotFold
from pipeline.events import (
    ActionReleased,
    DecisionMade,
    Event,
    IncidentChange,
    RemediationProposed,
    SnapshotWatermark,
    WorkflowChanged,
)

Log = list[tuple[str, int, Event]]  # (topic, offset, event), one partition per topic


def rework(i: int) -> Iterator[Event]:
    """Incident i's action is released, then a second proposal for the same target is approved: applying that
    release once more (a redelivery, or a reader that folds it twice) would wrongly release the second one."""
    first = [e for e in remediation_events(i) if isinstance(e.payload, RemediationProposed | DecisionMade)]
    p = first[0].payload.proposal  # type: ignore[attr-defined]
    at = EPOCH + timedelta(seconds=i, milliseconds=900)
    yield Event.of(ActionReleased(namespace=p.namespace, target=p.target, incident_id=incident_id(i),
                                  reason="completed", released_at=at), source="t", id=f"released-{i}", time=at)
    again = p.model_copy(update={"id": f"{p.id}-2", "workflow_id": f"{p.workflow_id}-2", "parameters": {}})
    for event in first:
        if isinstance(event.payload, RemediationProposed):
            payload = event.payload.model_copy(update={"proposal": again})
        else:
            decision = event.payload.decision.model_copy(update={"proposal": again})  # type: ignore[attr-defined]
            payload = event.payload.model_copy(update={"decision": decision})
        yield Event.of(payload, source="t", id=f"{event.envelope.id}-2", time=at)


def busy(i: int, transitions: int = 2 * RECENT_IDS) -> Iterator[Event]:
    """Incident i's workflow reports more transitions than a snapshot keeps ids of."""
    started = [e for e in remediation_events(i) if isinstance(e.payload, WorkflowChanged)][-1]
    for n in range(transitions):
        payload = started.payload.model_copy(update={"sequence": 3 + n})
        yield Event.of(payload, source="t", id=f"{started.envelope.id}-{n}", time=started.envelope.time)


def log_of(events: list[Event]) -> Log:
    offsets: dict[str, int] = {}
    out: Log = []
    for event in events:
        topic = ("incidents" if isinstance(event.payload, IncidentChange) else
                 "remediation" if isinstance(event.payload, RemediationProposed | ActionReleased) else
                 type(event.payload).__name__)
        out.append((topic, offsets.get(topic, 0), event))
        offsets[topic] = offsets.get(topic, 0) + 1
    return out


def fold(log: Log, fold_: SnapshotFold | None = None) -> SnapshotFold:
    state = fold_ or SnapshotFold(alerts_listed=100)
    for topic, offset, event in log:
        state.apply(event.envelope.id, event.payload, event.envelope.time, topic, 0, offset)
    return state


def answers(state: SnapshotFold) -> tuple[object, ...]:
    view = state.view
    return (
        {i: inc.model_dump() for i, inc in state.incidents.items()},
        {pid: (e.status, e.decision, e.resolution_seconds, e.workflow, e.request_key, e.submitted_at)
         for pid, e in view.entries.items()},
        {i: remediation_of(e) if (e := view.for_incident(i)) else None for i in view.by_incident},
        dict(view.requests), dict(view.workflows),
    )


def reload(records: list[object], drop_watermarks: bool = False) -> tuple[SnapshotFold, Snapshot]:
    snapshot = Snapshot()
    for record in records:
        if not (drop_watermarks and isinstance(record, SnapshotWatermark)):
            snapshot.add(record)  # type: ignore[arg-type]
    state = SnapshotFold(alerts_listed=100)
    state.load(snapshot)
    return state, snapshot


def tail(log: Log, snapshot: Snapshot) -> Log:
    return [(t, o, e) for t, o, e in log if o >= snapshot.watermarks.get((t, 0), 0)]


def test_a_snapshot_and_the_log_after_its_watermark_fold_to_the_whole_log() -> None:
    events = list(history(0, 300, open_only=range(250, 300)))
    later = list(history(300, 400, later_of=range(250, 300), again=range(0, 60, 7)))
    whole = log_of(events + later)
    writer = fold(whole[: len(events)])
    restored, snapshot = reload(writer.records())
    assert snapshot.incidents and snapshot.entries and snapshot.watermarks
    assert answers(fold(tail(whole, snapshot), restored)) == answers(fold(whole))


def test_a_watermark_left_behind_by_a_crash_applies_nothing_twice() -> None:
    events = list(history(0, 200))
    whole = log_of(events + [e for i in range(0, 200, 40) for e in (*rework(i), *busy(i))]
                   + list(history(200, 260, again=range(0, 40, 3))))
    writer = fold(whole[:150])
    first = writer.records()
    writer.written()
    fold(whole[150:], writer)
    # the second batch's object records were stored, its watermarks were not: the reader seeks to the first's, and
    # the events between are older than the last RECENT_IDS of some objects (their offsets say they are held)
    behind, _ = reload([*first, *(r for r in writer.records() if not isinstance(r, SnapshotWatermark))])
    old_marks = Snapshot()
    for record in first:
        old_marks.add(record)  # type: ignore[arg-type]
    expected = answers(fold(whole))
    assert {e.status for pid, e in fold(whole).view.entries.items() if pid.endswith("-2")} == {"pending"}
    assert answers(fold(tail(whole, old_marks), behind)) == expected


def test_a_redelivery_across_the_watermark_is_skipped_by_id() -> None:
    rework_events = [e for i in range(0, 200, 40) for e in rework(i)]
    before = list(history(0, 200)) + rework_events
    releases = [e for e in rework_events if isinstance(e.payload, ActionReleased)]
    whole = log_of(before + releases)  # each release delivered once more, after the second proposal's decision
    restored, snapshot = reload(fold(whole[: len(before)]).records())
    assert answers(fold(tail(whole, snapshot), restored)) == answers(fold(whole))


def test_folding_a_batch_again_writes_the_same_records() -> None:
    whole = log_of(list(history(0, 100)))
    writer = fold(whole)
    records = writer.records()
    fold(whole, writer)  # the stage's batch redelivered after a failed produce: nothing changes
    assert writer.records() == records
