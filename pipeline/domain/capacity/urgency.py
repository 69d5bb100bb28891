"""How soon is soon: the urgency classes of an exhaustion forecast and the date it falls on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

# The MCP server tells users critical = full within 7 days, warning = within 30 days; the engine used 3/7.
# The clients win (COMPATIBILITY.md): its messages must be true of what we classify. "Within" is inclusive,
# so the classes agree with the rounded-up `days_until_full` (critical ⇔ days_until_full ≤ 7).
URGENCY_CRITICAL_DAYS = 7
URGENCY_WARNING_DAYS = 30

Urgency = Literal["critical", "warning", "info", "stable", "unknown"]


def urgency(days: float | None, *, known: bool = True) -> Urgency:
    """critical (within 7 days), warning (within 30), info (later), stable (never), unknown (too little data)."""
    if not known:
        return "unknown"
    if days is None:
        return "stable"
    if days <= URGENCY_CRITICAL_DAYS:
        return "critical"
    if days <= URGENCY_WARNING_DAYS:
        return "warning"
    return "info"


def date_after(last_sample: float, days: float | None) -> date | None:
    """The UTC calendar date `days` after `last_sample` (None for never)."""
    if days is None:
        return None
    return (datetime.fromtimestamp(last_sample, UTC) + timedelta(days=days)).date()
