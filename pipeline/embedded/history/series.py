"""A generated history as data: the samples of every series, and queries over them like Prometheus'."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pipeline.embedded.history.cluster import DEFAULT_STEP_S, LOOKBACK_DELTA_S, Sample, SeriesKey


def aligned_now(step_s: int = DEFAULT_STEP_S) -> float:
    """The current unix time rounded down to a multiple of ``step_s`` (whole seconds)."""
    now = int(time.time())
    return float(now - now % int(step_s))


def series_key(name: str, **labels: str) -> SeriesKey:
    return name, frozenset((k, str(v)) for k, v in labels.items())


def _matches(key: SeriesKey, name: str, labels: Mapping[str, str]) -> bool:
    if key[0] != name:
        return False
    items = dict(key[1])
    return all(items.get(k, "") == str(v) for k, v in labels.items())


@dataclass(frozen=True)
class History:
    """Generated history. ``samples`` maps ``(metric_name, frozenset(labels.items()))`` to
    ``[(ts_seconds, value), ...]`` ascending; ``openmetrics`` is the same data for promtool."""

    end: float
    duration_s: int
    step_s: int
    seed: int
    samples: dict[SeriesKey, list[Sample]]
    openmetrics: str
    crashy_restart_times: tuple[float, ...]  # empty when crashy is healthy
    generate_s: float  # wall time spent generating samples and rendering the text
    healthy: frozenset[str] = frozenset()  # scenarios replaced by healthy behaviour (see the module doc)

    @property
    def start(self) -> float:
        return self.end - self.duration_s

    @property
    def timestamps(self) -> list[float]:
        return [self.start + i * self.step_s for i in range(self.duration_s // self.step_s + 1)]

    @property
    def sample_count(self) -> int:
        return sum(len(v) for v in self.samples.values())

    def select(self, name: str, **labels: str) -> dict[SeriesKey, list[Sample]]:
        """All series of ``name`` whose labels include ``labels`` (equality matchers only)."""
        return {k: v for k, v in self.samples.items() if _matches(k, name, labels)}

    def series(self, name: str, **labels: str) -> list[Sample]:
        """The samples of the single series of ``name`` matching ``labels``; KeyError unless exactly one."""
        found = self.select(name, **labels)
        if len(found) != 1:
            raise KeyError(
                f"{len(found)} series match {name}{labels}: {sorted(dict(k[1]).items() for k in found)}"
            )
        return next(iter(found.values()))

    def instant(self, name: str, at: float, **labels: str) -> float | None:
        """What a Prometheus instant query of the single matching series returns at ``at``: the last
        sample at or before ``at`` and at most 5 minutes older (Prometheus 2.x's lookback window
        ``[at - 5m, at]`` is closed on both ends), else None."""
        value = None
        for ts, v in self.series(name, **labels):
            if ts > at:
                break
            if ts >= at - LOOKBACK_DELTA_S:
                value = v
        return value

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self.samples)
