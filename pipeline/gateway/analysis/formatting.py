"""Numbers as the engine's JSON shows them: ISO times, rounded figures, millicores, byte sizes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pipeline.domain import capacity as cap


# ------------------------------------------------------------------------------------------ formatting
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def iso_day(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def percent_of(part: float | None, whole: float | None) -> float | None:
    return rounded(part / whole * 100, 2) if part is not None and whole else None


def millicores(cores: float | None) -> str | None:
    return f"{int(cores * 1000)}m" if cores is not None else None


def cpu_amount(label: str, cores: float | None, whole: float | None) -> dict[str, Any] | None:
    """`{"<label>": "250m", "<label>_numeric": 0.25, "percent": …}` of `whole`; None when unknown."""
    if cores is None:
        return None
    return {label: millicores(cores), f"{label}_numeric": rounded(cores, 6), "percent": percent_of(cores, whole)}


def memory_amount(label: str, size: float | None, whole: float | None) -> dict[str, Any] | None:
    """`{"<label>": "1.5Gi", "<label>_bytes": …, "percent": …}` of `whole`; None when unknown."""
    if size is None:
        return None
    return {label: cap.format_bytes(size), f"{label}_bytes": int(size), "percent": percent_of(size, whole)}


def drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


