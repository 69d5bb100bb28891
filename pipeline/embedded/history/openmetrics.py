"""The OpenMetrics text of a history, for ``promtool tsdb create-blocks-from openmetrics``."""

from __future__ import annotations

import math
from collections.abc import Mapping

from pipeline.embedded.history.cluster import FAMILIES, Sample, SeriesKey


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_ts(ts: float) -> str:
    return str(int(ts)) if float(ts).is_integer() else repr(float(ts))


def render_openmetrics(samples: Mapping[SeriesKey, list[Sample]]) -> str:
    """OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``: one block per metric family
    (``# HELP``/``# TYPE``, counters declared without ``_total``), each series' samples contiguous and
    ascending, values via ``repr()`` (exact round trip), timestamps in seconds, ending with ``# EOF``."""
    by_name: dict[str, list[SeriesKey]] = {}
    for key in samples:
        by_name.setdefault(key[0], []).append(key)
    out: list[str] = []
    for name in sorted(by_name):
        family, kind, help_text = FAMILIES[name]
        out.append(f"# HELP {family} {help_text}\n")
        out.append(f"# TYPE {family} {kind}\n")
        for key in sorted(by_name[name], key=lambda k: sorted(k[1])):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(key[1]))
            prefix = f"{name}{{{label_text}}} " if label_text else f"{name} "
            previous = -math.inf
            for ts, value in samples[key]:
                if ts <= previous:
                    raise ValueError(f"samples of {key} not strictly ascending at {ts}")
                previous = ts
                out.append(f"{prefix}{value!r} {_format_ts(ts)}\n")
    out.append("# EOF\n")
    return "".join(out)
