"""How people name times: a point in the log for the forensic commands (`--since`, `--from`, `--to`), the REST
routes' `since`, and durations (`pipeline ml train --since/--every`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.domain.times import parse_duration, parse_rfc3339, parse_when

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("90s", NOW - timedelta(seconds=90)),
    ("15m", NOW - timedelta(minutes=15)),
    ("1h30m", NOW - timedelta(minutes=90)),
    ("2d", NOW - timedelta(days=2)),
    ("1w", NOW - timedelta(days=7)),
    ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, tzinfo=UTC)),
    ("2026-11-30T11:00:00+01:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),
])
def test_a_point_is_a_duration_ago_or_a_timestamp(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "0m", "5y", "30", "", "-5m", "2026-11-30", "2026-11-30T10:00:00"])
def test_anything_else_says_what_is_accepted(text: str) -> None:
    """A bare number names no unit, and a time without its offset is ambiguous: both refused, as is the rest."""
    with pytest.raises(ValueError, match="neither a duration ago"):
        parse_when(text, NOW)


def test_rfc3339_needs_date_time_and_offset() -> None:
    assert parse_rfc3339("2026-12-01T14:00:00+02:00") == NOW
    for bad in ("2026-12-01T12:00:00", "2026-12-01", "noon"):
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_rfc3339(bad)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "5m", "6h", "2d", "1w")] == [90, 300, 21600, 172800, 604800]
    assert [parse_duration(t) for t in ("0m", "5", "1h30m", "y")] == [None, None, None, None]
