"""The gateway's incident read model (pipeline/gateway/projection.py IncidentProjection) holding resolved incidents
as compressed records (`settle`): through random openings, updates, resolutions, reopenings and redeliveries,
a projection that settles after every change answers every incident and every list exactly as one that never
settles, while holding decoded only the open incidents. No broker."""

from __future__ import annotations

import random
from datetime import timedelta

from pipeline.domain.incidents import IncidentQuery
from pipeline.events import (
    IncidentChange,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Severity,
)
from pipeline.gateway.projection import IncidentProjection
from tests.unit.test_proposals_and_view import NOW, incident, signal


def change(rng: random.Random, n: int, step: int) -> IncidentChange:
    status = rng.choice([IncidentStatus.ACTIVE, IncidentStatus.ACTIVE, IncidentStatus.COMPLETED])
    kind = (IncidentResolved if status == IncidentStatus.COMPLETED
            else rng.choice([IncidentOpened, IncidentUpdated]))
    at = NOW + timedelta(seconds=step)
    one = incident(id=f"inc-{n}", status=status, severity=rng.choice(list(Severity)),
                   namespace=rng.choice(["shop", "pay"]), created_at=NOW + timedelta(minutes=n), updated_at=at,
                   resolved_at=at if status == IncidentStatus.COMPLETED else None,
                   signals={f"fp-{step}": signal("KubePodCrashLooping", f"s{step}")},
                   alerts_total=step % 7 + 1, signal_count=step + 1)
    return kind(incident=one, signal_id=f"s{step}")


def test_settled_incidents_answer_as_held_ones_and_only_open_ones_stay_decoded() -> None:
    rng = random.Random(11)
    settling, holding = IncidentProjection(alerts_listed=3), IncidentProjection(alerts_listed=3)
    events: list[tuple[str, IncidentChange]] = []
    for step in range(600):
        if events and rng.random() < 0.15:
            event_id, payload = rng.choice(events)  # a redelivery
        else:
            event_id, payload = f"e-{step}", change(rng, rng.randrange(12), step)
            events.append((event_id, payload))
        offset = step
        assert settling.apply(event_id, payload, "incidents:0", offset) == holding.apply(
            event_id, payload, "incidents:0", offset)
        settling.settle()
        assert settling.get(payload.incident.id) == holding.get(payload.incident.id)
        if step % 50 == 49:
            ids = sorted(holding.rows)
            assert [settling.get(i) for i in ids] == [holding.get(i) for i in ids]
            for status in (None, "active", "completed"):
                q = IncidentQuery.parse(None, None, status, "5", "2")
                got, expected = settling.query(q), holding.query(q)
                assert (got[0], [r.id for r in got[1]], got[2]) == (expected[0], [r.id for r in expected[1]],
                                                                     expected[2])
            open_ones = sum(1 for r in holding.rows.values() if r.status == IncidentStatus.ACTIVE)
            assert settling.decoded == open_ones
            assert holding.decoded == len(holding.rows)
