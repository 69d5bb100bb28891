"""How an operator names a point in the log (`--since`, `--from`, `--to` of the forensic commands)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.bus.log import parse_when

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
    ("2026-11-30T10:00:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),
])
def test_a_duration_ago_or_a_time(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "0m", "5y", "30", "", "-5m"])
def test_anything_else_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration ago"):
        parse_when(text, NOW)
