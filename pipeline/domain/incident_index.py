"""The incident list's indexes (pure): every incident's row in list order (newest first: created_at, then id), the
same order per shown status, per severity, per (status, severity) and per namespace (a row is listed under its
namespace and its target), kept as rows change, so a list query is a slice and its counts are lengths, whatever
the offset; a namespace filter with another filter walks that namespace's rows only.

The status a row is listed under is the one a client sees: an active incident an action works on shows the
action's state (`shown_status`); `act` records it per incident as the remediation view changes."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

from pipeline.events import IncidentRow, IncidentStatus, Severity

Key = tuple[int, str]  # (created, id): ascending order; lists read it from the end
# Where a row is listed: its key, shown status, severity and the namespaces a namespace filter finds it by.
Listed = tuple[Key, IncidentStatus, Severity, tuple[str, ...]]


class Ordered:
    """Rows in ascending (created, id) order, as two aligned lists (bisect on the keys)."""

    __slots__ = ("keys", "rows")

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.rows: list[IncidentRow] = []

    def __len__(self) -> int:
        return len(self.keys)

    def put(self, key: Key, row: IncidentRow) -> None:
        at = bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            self.rows[at] = row
        else:
            self.keys.insert(at, key)
            self.rows.insert(at, row)

    def remove(self, key: Key) -> None:
        at = bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            del self.keys[at]
            del self.rows[at]

    def newest(self, offset: int, limit: int) -> list[IncidentRow]:
        """The rows at positions offset .. offset+limit-1 counted from the newest."""
        end = len(self.rows) - offset
        if end <= 0:
            return []
        return self.rows[max(end - limit, 0):end][::-1]

    def newest_first(self) -> Iterable[IncidentRow]:
        return reversed(self.rows)

    def append(self, key: Key, row: IncidentRow) -> None:
        """A row after every row already here (rebuilding in order)."""
        self.keys.append(key)
        self.rows.append(row)

    def clear(self) -> None:
        self.keys.clear()
        self.rows.clear()


_NONE = Ordered()  # the rows of a namespace nothing is listed under


class IncidentIndex:
    """Every row under its key in the whole list, its shown status's list, its severity's and their pair's."""

    def __init__(self) -> None:
        self.rows: dict[str, IncidentRow] = {}
        self.acting: dict[str, IncidentStatus] = {}  # incident id -> the status an action shows while it is active
        self.all = Ordered()
        self.by_status = {s: Ordered() for s in IncidentStatus}
        self.by_severity = {s: Ordered() for s in Severity}
        self.cells = {(s, v): Ordered() for s in IncidentStatus for v in Severity}
        self.by_namespace: dict[str, Ordered] = {}
        self._listed: dict[str, Listed] = {}  # where each row is listed
        # Rows come in bulk until the first listing (a start's snapshot or log replay): listed all at once, sorted
        # (`listing`), by the first query at latest; one by one after (each an insert into lists of every row).
        self._stale = True
        self._listing: Iterator[None] | None = None  # the listing under way
        self._changed: set[str] = set()  # incidents changed while stale: listed again once the listing is done

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, row: IncidentRow) -> None:
        """A row of a bulk load (a snapshot read at start): listed in one sort (`listing`)."""
        self.rows[row.id] = row
        self._stale = True
        self._note(row.id)

    def _note(self, incident_id: str) -> None:
        """A change while stale: a listing under way lists it again at its end; one not begun reads it anyway."""
        if self._listing is not None:
            self._changed.add(incident_id)

    def prepare(self) -> None:
        """List a bulk load now (what is left of it)."""
        for _ in self.listing():
            pass

    def listing(self, chunk: int = 5000) -> Iterator[None]:
        """List a bulk load in steps of `chunk` rows (a caller may do other work between them); the rows changed
        meanwhile are listed again at the end. Empty when nothing is to be listed."""
        if not self._stale:
            return iter(())
        if self._listing is None:
            self._listing = self._relist(chunk)
        return self._listing

    def _relist(self, chunk: int) -> Iterator[None]:
        for ordered in (self.all, *self.by_status.values(), *self.by_severity.values(), *self.cells.values()):
            ordered.clear()
        self.by_namespace.clear()
        self._listed.clear()
        rows = sorted(self.rows.values(), key=_KEY)
        for start in range(0, len(rows), chunk):
            for row in rows[start:start + chunk]:
                listed = self._listed[row.id] = self._where(row)
                for ordered in self._lists(listed):
                    ordered.append(listed[0], row)
            yield
        self._stale, self._listing = False, None
        changed, self._changed = self._changed, set()
        for incident_id in changed:
            if (now := self.rows.get(incident_id)) is not None:
                self._list(now)
            else:
                self._unlist(incident_id)

    def _where(self, row: IncidentRow) -> Listed:
        return (row.created, row.id), self.shown(row), row.severity, _namespaces(row)

    def _lists(self, listed: Listed) -> list[Ordered]:
        _, status, severity, namespaces = listed
        found = [self.all, self.by_status[status], self.by_severity[severity], self.cells[status, severity]]
        for namespace in namespaces:
            ordered = self.by_namespace.get(namespace)
            if ordered is None:
                ordered = self.by_namespace[namespace] = Ordered()
            found.append(ordered)
        return found

    def shown(self, row: IncidentRow) -> IncidentStatus:
        return self.acting.get(row.id, row.status) if row.status == IncidentStatus.ACTIVE else row.status

    def put(self, row: IncidentRow) -> None:
        self.rows[row.id] = row
        if self._stale:
            self._note(row.id)
        else:
            self._list(row)

    def act(self, incident_id: str, status: IncidentStatus | None) -> None:
        """The status an action shows for the incident while it is active; None: no action changes it."""
        if status is None:
            if self.acting.pop(incident_id, None) is None:
                return
        elif self.acting.get(incident_id) == status:
            return
        else:
            self.acting[incident_id] = status
        if self._stale:
            self._note(incident_id)
        elif (row := self.rows.get(incident_id)) is not None:
            self._list(row)

    def remove(self, incident_id: str) -> None:
        self.rows.pop(incident_id, None)
        self.acting.pop(incident_id, None)
        if self._stale:
            self._note(incident_id)
        else:
            self._unlist(incident_id)

    def _list(self, row: IncidentRow) -> None:
        listed = self._where(row)
        before = self._listed.get(row.id)
        if before is not None and before != listed:
            self._unlist(row.id)
        self._listed[row.id] = listed
        for ordered in self._lists(listed):
            ordered.put(listed[0], row)

    def _unlist(self, incident_id: str) -> None:
        listed = self._listed.pop(incident_id, None)
        if listed is None:
            return
        for ordered in self._lists(listed):
            ordered.remove(listed[0])

    def query(self, namespace: str | None, severity: Severity | None, status: IncidentStatus | None, offset: int,
              limit: int) -> tuple[int, list[IncidentRow], dict[str, Any]]:
        """(how many match, the page, their summary): `domain.incidents.IncidentQuery`'s filters, the status
        being the shown one."""
        self.prepare()
        if namespace is None:
            if status is not None and severity is not None:
                ordered = self.cells[status, severity]
            elif status is not None:
                ordered = self.by_status[status]
            elif severity is not None:
                ordered = self.by_severity[severity]
            else:
                ordered = self.all
            statuses = {s: len(self.cells[s, severity]) if severity is not None else len(self.by_status[s])
                        for s in ([status] if status is not None else IncidentStatus)}
            severities = {v: len(self.cells[status, v]) if status is not None else len(self.by_severity[v])
                          for v in ([severity] if severity is not None else Severity)}
            return len(ordered), ordered.newest(offset, limit), summary_of(statuses, severities)
        listed = self._listed
        matching = [r for r in self.by_namespace.get(namespace, _NONE).newest_first()
                    if (severity is None or r.severity == severity) and (status is None or listed[r.id][1] == status)]
        shown = Counter(listed[r.id][1] for r in matching)
        return len(matching), matching[offset:offset + limit], summary_of(shown, Counter(map(_SEVERITY, matching)))


_SEVERITY = itemgetter(3)  # IncidentRow.severity


def _KEY(row: IncidentRow) -> Key:
    return row.created, row.id


def _namespaces(row: IncidentRow) -> tuple[str, ...]:
    """What `?namespace=` matches a row by: its namespace and its target."""
    if row.target and row.target != row.namespace:
        return (row.namespace, row.target) if row.namespace else (row.target,)
    return (row.namespace,) if row.namespace else ()


def summary_of(statuses: dict[IncidentStatus, int] | Counter[IncidentStatus],
               severities: dict[Severity, int] | Counter[Severity]) -> dict[str, Any]:
    """The `summary` object the MCP server reads, from counts over all matching incidents (not just the page)."""
    counts = {s.value: statuses.get(s, 0) for s in IncidentStatus}
    return {"total": sum(counts.values()), **counts, "by_severity": {v.value: severities.get(v, 0) for v in Severity}}
