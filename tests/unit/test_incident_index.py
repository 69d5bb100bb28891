"""The incident list's indexes (pipeline/domain/incident_index.py) against a plain reference -- every row sorted,
filtered and counted from scratch -- through random loads, changes, changed start times, actions starting and
ending, and removals: every query's total, page and summary agree at every step. No broker."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

from pipeline.domain.incident_index import IncidentIndex, summary_of
from pipeline.events import IncidentRow, IncidentStatus, Severity
from tests.unit.test_proposals_and_view import NOW, incident

NAMESPACES = ["shop", "pay", "ops"]


def random_row(rng: random.Random, n: int) -> IncidentRow:
    ns = rng.choice(NAMESPACES)
    one = incident(id=f"inc-{n:03d}", created_at=NOW + timedelta(minutes=rng.randrange(40)), namespace=ns,
                   target=rng.choice([ns, "pay"]), severity=rng.choice(list(Severity)),
                   status=rng.choice([IncidentStatus.ACTIVE, IncidentStatus.ACTIVE, IncidentStatus.COMPLETED]))
    return IncidentRow.of(one)


def reference(rows: dict[str, IncidentRow], acting: dict[str, IncidentStatus], namespace: str | None,
              severity: Severity | None, status: IncidentStatus | None, offset: int,
              limit: int) -> tuple[int, list[str], dict[str, Any]]:
    def shown(r: IncidentRow) -> IncidentStatus:
        return acting.get(r.id, r.status) if r.status == IncidentStatus.ACTIVE else r.status

    matching = [r for r in sorted(rows.values(), key=lambda r: (r.created, r.id), reverse=True)
                if (namespace is None or namespace in (r.namespace, r.target))
                and (severity is None or r.severity == severity) and (status is None or shown(r) == status)]
    counts = summary_of(Counter(map(shown, matching)), Counter(r.severity for r in matching))
    return len(matching), [r.id for r in matching[offset:offset + limit]], counts


def test_every_query_agrees_with_sorting_and_counting_every_row() -> None:
    rng = random.Random(11)
    index = IncidentIndex()
    rows: dict[str, IncidentRow] = {}
    acting: dict[str, IncidentStatus] = {}
    for n in range(60):  # a bulk load (a snapshot read at start), listed in steps while changes come
        rows[f"inc-{n:03d}"] = row = random_row(rng, n)
        index.load(row)
    listing = index.listing(chunk=7)
    queries = [(ns, sev, st, off, lim) for ns in (None, "pay", "shop") for sev in (None, Severity.CRITICAL)
               for st in (None, IncidentStatus.ACTIVE, IncidentStatus.RUNNING, IncidentStatus.COMPLETED)
               for off, lim in ((0, 5), (7, 100), (3, 2))]
    for step in range(400):
        n = rng.randrange(90)
        incident_id = f"inc-{n:03d}"
        roll = rng.random()
        if roll < 0.55:
            rows[incident_id] = row = random_row(rng, n)
            index.put(row)
        elif roll < 0.85:
            status = rng.choice([None, IncidentStatus.RUNNING, IncidentStatus.COMPLETED, IncidentStatus.FAILED])
            if status is None:
                acting.pop(incident_id, None)
            else:
                acting[incident_id] = status
            index.act(incident_id, status)
        else:
            rows.pop(incident_id, None)
            acting.pop(incident_id, None)
            index.remove(incident_id)
        if step < 12:
            next(listing, None)  # a step of the listing, the changes above in between
            continue
        if step % 7 == 0:
            for q in queries:
                total, page, counts = index.query(*q)
                assert (total, [r.id for r in page], counts) == reference(rows, acting, *q), (step, q)
    assert len(index) == len(rows)
    assert any(r.status == IncidentStatus.ACTIVE and i in acting for i, r in rows.items())
