"""Rows as a terminal table, pure: aligned columns under a header, long values cut with `…`, times as ages.

`table(rows, columns, width)` lays out every row (a mapping, e.g. one item of an API list) with `Column`s: each
says how to get its text from a row, at most how wide it may be, and whether it gives way when the line is wider
than the terminal (`flexible`: the title or reason column, cut further, never below its header). `details`
lays out `label: value` pairs for one object. `age` and `when` say times the way `kubectl get` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ELLIPSIS = "…"
GAP = "  "
NONE = "-"  # a cell with no value (never 0 or an empty string, which would read as data)

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """A column: `title`, the text of a row (`text`), at most `max` characters (None: no limit), right-aligned
    when `right` (counts), and `flexible` when it gives way to fit the terminal."""

    title: str
    text: Callable[[Row], str]
    max: int | None = None
    right: bool = False
    flexible: bool = False


def field(name: str, *, max: int | None = None, right: bool = False, flexible: bool = False,
          title: str | None = None) -> Column:
    """A column showing one field of the row as it is (`-` when absent or null)."""
    return Column(title or name.upper().replace("_", " "), lambda row: text(row.get(name)), max=max, right=right,
                  flexible=flexible)


def text(value: Any) -> str:
    """A cell's text: `-` for None or an empty string, `yes`/`no` for booleans, one line."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())


def cut(value: str, width: int) -> str:
    """`value` in at most `width` characters, its end replaced by `…` when cut."""
    if width <= 0:
        return ""
    if len(value) <= width:
        return value
    return value[: width - 1] + ELLIPSIS


def table(rows: Iterable[Row], columns: Sequence[Column], width: int | None = None) -> list[str]:
    """The header and one line per row, columns aligned; with `width` (the terminal's), flexible columns are cut
    further, the last one first, so that each line fits (down to their title's width, never lower)."""
    cells = [[cut(c.text(row), c.max) if c.max else c.text(row) for c in columns] for row in rows]
    widths = [max([len(c.title), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    if width is not None:
        excess = sum(widths) + len(GAP) * (len(columns) - 1) - width
        for i, c in reversed(list(enumerate(columns))):  # the last flexible column gives way first
            if excess <= 0:
                break
            if c.flexible:
                give = min(excess, widths[i] - len(c.title))
                widths[i] -= give
                excess -= give
    lines = [_line([c.title for c in columns], widths, columns)]
    lines.extend(_line([cut(v, widths[i]) for i, v in enumerate(line)], widths, columns) for line in cells)
    return lines


def _line(values: Sequence[str], widths: Sequence[int], columns: Sequence[Column]) -> str:
    parts = [v.rjust(w) if c.right else v.ljust(w) for v, w, c in zip(values, widths, columns, strict=True)]
    return GAP.join(parts).rstrip()


def details(pairs: Iterable[tuple[str, Any]], width: int | None = None, optional: Iterable[tuple[str, Any]] = ()
            ) -> list[str]:
    """`label: value` lines, the values aligned; a value is cut to the terminal's `width` when given. `optional`
    pairs follow, those without a value left out."""
    items = [(label, text(value)) for label, value in pairs]
    items += [(label, text(value)) for label, value in optional if text(value) != NONE]
    pad = max((len(label) for label, _ in items), default=0) + 1
    return [f"{(label + ':').ljust(pad)} {cut(value, width - pad - 1) if width else value}" for label, value in items]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the API (`…Z` or with an offset), None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """How long ago `value` (an API time) was, as `kubectl get` says it: `45s`, `5m12s`, `47m`, `3h5m`, `26h`,
    `3d4h`, `12d`, `2y`; `-` when there is no time. A time ahead of `now` (clock skew) is `0s`."""
    then = parse_time(value)
    if then is None:
        return NONE
    return duration((now - then).total_seconds())


def duration(seconds: float) -> str:
    """A duration in the units `age` uses: the largest unit, with the next one while it still says much."""
    s = max(0, int(seconds))
    m, h, d = s // 60, s // 3600, s // 86400
    ladder = ((120, f"{s}s"), (600, _pair(m, "m", s % 60, "s")), (3 * 3600, f"{m}m"),
              (8 * 3600, _pair(h, "h", m % 60, "m")), (48 * 3600, f"{h}h"), (8 * 86400, _pair(d, "d", h % 24, "h")),
              (730 * 86400, f"{d}d"))
    return next((said for below, said in ladder if s < below), f"{d // 365}y")


def _pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def stamp(value: Any) -> str:
    """An API time to the millisecond, in UTC: `2026-12-06T17:53:21.864Z`; `-` when absent."""
    then = parse_time(value)
    if then is None:
        return NONE
    return f"{then.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{then.microsecond // 1000:03d}Z"


def when(value: Any, now: datetime) -> str:
    """An API time for a person: `2026-12-06 17:45:57Z (5m ago)`, `-` when absent."""
    then = parse_time(value)
    if then is None:
        return NONE
    return f"{then.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({age(value, now)} ago)"
