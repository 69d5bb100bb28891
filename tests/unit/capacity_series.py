"""Series the capacity tests fit: lines with noise and a crash loop's saw-tooth, at realistic unix times."""

from __future__ import annotations

import random

from pipeline.domain import capacity as cap

DAY = cap.SECONDS_PER_DAY
HOUR = 3600.0
MiB = 1024**2
GiB = 1024**3
T0 = 1_700_000_000.0  # realistic unix seconds: precision must survive them


def line(slope_per_day: float, start: float, n: int, step: float = 60.0, noise: float = 0.0, seed: int = 1):
    rng = random.Random(seed)
    return [(T0 + i * step, start + slope_per_day * i * step / DAY + rng.gauss(0, noise)) for i in range(n)]


def sawtooth(
    n: int, step: float = 60.0, period: int = 5, low: float = 40.0, high: float = 440.0, steady: float = 180.0
) -> list[tuple[float, float]]:
    """A crash loop's working set, as in the generated history: steady at `steady` for the first two thirds,
    then restarting every `period` samples, growing from `low` towards `high` each time. The teeth sit
    above the steady level, so the line through it all has a "significant" slope it does not describe."""
    start = 2 * n // 3
    return [
        (T0 + i * step, steady if i < start else low + (high - low) * ((i - start) % period) / period)
        for i in range(n)
    ]
