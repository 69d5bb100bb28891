"""The gateway's incidents in list order (newest first by created_at, then id) kept as rows change, load from
snapshot records, change their start time or disappear: always the order a sort of every row gives. No broker."""

from __future__ import annotations

import random
from datetime import timedelta

from pipeline.domain.incidents import newest_first
from pipeline.events import (
    Event,
    IncidentOpened,
    IncidentRow,
    IncidentSnapshot,
    IncidentStatus,
    IncidentUpdated,
)
from pipeline.gateway.projection import IncidentProjection
from tests.unit.test_proposals_and_view import NOW, incident


def snapshot_record(n: int, minutes: int) -> tuple[str, bytes, IncidentRow]:
    one = incident(id=f"inc-{n:03d}", created_at=NOW + timedelta(minutes=minutes), updated_at=NOW)
    _, value, _ = Event.of(IncidentSnapshot(incident=one), source="t").encode()
    return one.id, value, IncidentRow.of(one)


def test_the_list_order_follows_every_change() -> None:
    rng = random.Random(7)
    projection = IncidentProjection()
    for n in range(50):  # loaded from snapshot records, some starting at the same minute
        projection.load(*snapshot_record(n, rng.randrange(30)))
    assert list(projection.newest_first()) == newest_first(projection.rows.values())
    for step in range(300):
        n = rng.randrange(80)
        at = NOW + timedelta(minutes=rng.randrange(40), seconds=step)
        change = incident(id=f"inc-{n:03d}", created_at=NOW + timedelta(minutes=rng.randrange(40)), updated_at=at,
                          status=rng.choice([IncidentStatus.ACTIVE, IncidentStatus.COMPLETED]))
        payload = IncidentOpened(incident=change) if step % 2 else IncidentUpdated(incident=change)
        projection.apply(f"e-{step}", payload)
        if step % 37 == 0:
            projection.forget(f"inc-{rng.randrange(80):03d}")
        shown = list(projection.newest_first())
        assert shown == newest_first(projection.rows.values()), step
        assert len(shown) == len(projection)
    assert any(row.status == IncidentStatus.COMPLETED for row in projection.rows.values())
