"""Times and durations as people type them: the forensic commands' `--since`/`--from`/`--to`, the REST routes'
`since`, `pipeline ml train --since/--every`. One parser for each form, shared by all of them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pipeline.config import go_duration_seconds

_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int | None:
    """``90s``, ``5m``, ``6h``, ``2d``, ``1w`` -> seconds; None when it is not such a duration."""
    match = _DURATION.match(text.strip())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp with its offset (`Z` or `±hh:mm`), in UTC; ValueError otherwise (a time without an
    offset is ambiguous and refused)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    if value.tzinfo is None or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 timestamp (date, time and offset needed, e.g. 2026-12-01T12:00:00Z): "
                         f"{text!r}")
    return value.astimezone(UTC)


def parse_when(text: str, now: datetime) -> datetime:
    """A point in the log as an operator types it: `now`, a duration ago (`90s`, `15m`, `2d`, `1w`, or a Go
    duration such as `1h30m`) or an RFC 3339 timestamp. ValueError saying what is accepted otherwise."""
    text = text.strip()
    if text == "now":
        return now
    seconds = parse_duration(text)
    if seconds is None and text and not text.replace(".", "").isdigit():  # a bare number names no unit
        try:
            seconds = int(go_duration_seconds(text)) or None
        except ValueError:
            seconds = None
    if seconds is not None:
        return now - timedelta(seconds=seconds)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration ago (30m, 2h, 1h30m, 2d, 1w) nor an RFC 3339 timestamp "
                         f"with its offset (2026-12-01T12:00:00Z)") from None
