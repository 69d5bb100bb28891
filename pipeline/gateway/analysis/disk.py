"""R20 `GET /api/v1/predict/disk-exhaustion`: days until each filesystem is full."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pipeline.adapters.prometheus import PrometheusClient, Series
from pipeline.api.contract import Body, maybe_absent
from pipeline.domain import capacity as cap
from pipeline.domain.names import (
    promql_string,
)
from pipeline.gateway.analysis.formatting import drop_none, iso, iso_day
from pipeline.gateway.analysis.queries import (
    DISK_WINDOW,
    POINTS_PER_SERIES,
    WINDOWS,
    fetch_history,
    finite_last,
    gather,
    label_eq,
)


# ------------------------------------------------------------------------------------------ the answers
class FilesystemForecast(Body):
    """One filesystem's free space over the last 7 days, and when it runs out at that rate."""

    node: str = Field(description="empty in `aggregate` without a `node` filter")
    mountpoint: str
    device: str = maybe_absent("absent in `aggregate`")
    fstype: str = maybe_absent("absent in `aggregate`")
    available_bytes: float
    total_bytes: float = maybe_absent("absent when the filesystem's size is unknown")
    used_percent: float = maybe_absent("the used share, 0..1 (the engine's name); absent without the size",
                                       ge=0, le=1)
    daily_fill_rate_bytes: float = Field(description="negative when space is being freed")
    days_until_full: int = Field(description="whole days, rounded up; -1 when it is not filling up")
    urgency: cap.Urgency = Field(description="critical under 7 days, warning under 30, info beyond; stable when "
                                             "not filling up; unknown without enough history")
    projected_full_date: date = maybe_absent("absent when it is not filling up")
    r_squared: float = maybe_absent("how well a line fits the free space; absent without a fit")
    confidence: float = Field(ge=0, le=1)
    samples: int


class DiskExhaustion(Body):
    """Days until each filesystem is full (R20): one row per filesystem, soonest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "timestamp": "2026-12-06T17:53:18Z", "window": "7d",
        "results": [{"node": "node-a", "mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4",
                     "available_bytes": 40796854742.0, "total_bytes": 107374182400.0, "used_percent": 0.62,
                     "daily_fill_rate_bytes": 17136956028.0, "days_until_full": 3, "urgency": "critical",
                     "projected_full_date": "2026-12-09", "r_squared": 1.0, "confidence": 0.51, "samples": 183}],
        "critical_count": 1, "warning_count": 0,
        "aggregate": {"node": "", "mountpoint": "", "available_bytes": 40796854742.0,
                      "total_bytes": 107374182400.0, "used_percent": 0.62, "daily_fill_rate_bytes": 17136956028.0,
                      "days_until_full": 3, "urgency": "critical", "projected_full_date": "2026-12-09",
                      "r_squared": 1.0, "confidence": 0.51, "samples": 183}}]})
    status: Literal["success"]
    timestamp: datetime
    scope: str = maybe_absent("the `node` asked for")
    mountpoint: str = maybe_absent("the `mountpoint` asked for")
    window: Literal["7d"] = Field(description="the history the fill rate is fitted over (the engine's)")
    results: list[FilesystemForecast]
    critical_count: int
    warning_count: int
    aggregate: FilesystemForecast = maybe_absent("the engine's single row, the average filesystem; absent "
                                                 "without any")


# ------------------------------------------------------------------------------------------ R20 disk
def _node_of(labels: Mapping[str, str]) -> str:
    return labels.get("node") or labels.get("instance", "").rsplit(":", 1)[0]


def _disk_json(node: str, mountpoint: str, f: cap.DiskForecast, labels: Mapping[str, str]) -> dict[str, Any]:
    return drop_none(
        {
            "node": node,
            "mountpoint": mountpoint,
            "device": labels.get("device"),
            "fstype": labels.get("fstype"),
            "available_bytes": f.available_bytes,
            "total_bytes": f.total_bytes,
            "used_percent": f.used_fraction,
            "daily_fill_rate_bytes": f.daily_fill_rate_bytes,
            "days_until_full": f.days_until_full,
            "urgency": f.urgency,
            "projected_full_date": iso_day(f.projected_full_date),
            "r_squared": f.r_squared,
            "confidence": f.confidence,
            "samples": f.samples,
        }
    )


async def disk_report(
    prom: PrometheusClient, node: str | None, mountpoint: str | None
) -> dict[str, Any]:
    now = time.time()
    base = 'fstype!~"tmpfs|squashfs|overlay"' + label_eq("mountpoint", mountpoint)

    def selected(metric: str) -> str:
        if node is None:
            return f"{metric}{{{base}}}"
        # node-exporter labels the node as `node` (kube-prometheus relabelling) or `instance` (<node>:<port>).
        instance = re.escape(node) + "(:[0-9]+)?"
        return (
            f"{metric}{{{base}{label_eq('node', node)}}} or {metric}{{{base},instance=~{promql_string(instance)}}}"
        )

    avail, sizes = await gather(
        fetch_history(
            prom,
            lambda _: selected("node_filesystem_avail_bytes"),
            WINDOWS[DISK_WINDOW],
            POINTS_PER_SERIES,
            now,
        ),
        prom.query(selected("node_filesystem_size_bytes"), now),
    )

    def key(s: Series) -> frozenset[tuple[str, str]]:
        return frozenset((k, v) for k, v in s.labels.items() if k != "__name__")

    size_of = {key(s): finite_last(s) for s in sizes}

    def compute() -> list[tuple[Series, cap.DiskForecast]]:
        rows = [(s, cap.forecast_disk(s.samples, size_of.get(key(s)))) for s in avail]
        return [(s, f) for s, f in rows if f is not None]

    forecasts = await asyncio.to_thread(compute)
    results = [
        _disk_json(_node_of(s.labels), s.labels.get("mountpoint", ""), f, s.labels) for s, f in forecasts
    ]
    results.sort(key=lambda r: (r["days_until_full"] < 0, r["days_until_full"], r["node"], r["mountpoint"]))
    aggregate = await asyncio.to_thread(
        _disk_aggregate, [f for _, f in forecasts], [s for s, _ in forecasts], size_of, key
    )
    return drop_none(
        {
            "status": "success",
            "timestamp": iso(datetime.fromtimestamp(now, UTC)),
            "scope": node,
            "mountpoint": mountpoint,
            "window": DISK_WINDOW,
            "results": results,
            "critical_count": sum(r["urgency"] == "critical" for r in results),
            "warning_count": sum(r["urgency"] == "warning" for r in results),
            "aggregate": _disk_json(node or "", mountpoint or "", aggregate, {}) if aggregate else None,
        }
    )


def _disk_aggregate(
    forecasts: list[cap.DiskForecast],
    series: list[Series],
    size_of: Mapping[frozenset[tuple[str, str]], float | None],
    key: Callable[[Series], frozenset[tuple[str, str]]],
) -> cap.DiskForecast | None:
    """The engine's single row: the average filesystem (mean free space over time, mean size)."""
    if not series:
        return None
    by_time: dict[float, list[float]] = defaultdict(list)
    for s in series:
        for t, v in s.samples:
            if math.isfinite(v):
                by_time[t].append(v)
    mean = [(t, math.fsum(vs) / len(vs)) for t, vs in sorted(by_time.items())]
    sizes = [size for s in series if (size := size_of.get(key(s))) is not None]
    return cap.forecast_disk(mean, math.fsum(sizes) / len(sizes) if sizes else None)


