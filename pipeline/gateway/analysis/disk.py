"""R20 `GET /api/v1/predict/disk-exhaustion`: days until each filesystem is full."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.adapters.prometheus import PrometheusClient, Series
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


