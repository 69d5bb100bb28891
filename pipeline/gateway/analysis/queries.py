"""PromQL text and the Prometheus fan-out the analysis routes share: selectors, tagged `or` queries,
history at a bounded number of points, and picking values out of the series."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.adapters.prometheus import PrometheusClient, PrometheusError, Series
from pipeline.domain import capacity as cap
from pipeline.domain.names import (
    promql_string,
)
from pipeline.gateway.dependencies import prometheus_error

WINDOWS = {"7d": 7 * 86_400, "14d": 14 * 86_400, "30d": 30 * 86_400, "90d": 90 * 86_400}
DISK_WINDOW = "7d"  # the engine's deriv() window for fill rates
LEAK_WINDOW_S = 86_400  # the engine's 24 h regression window for memory leaks
PREDICT_LOOKBACK_S = 28 * 86_400  # four weeks: two or more samples of every hour of the week
# Range queries fetch at most about this many points per series; when the history is much shorter than
# the window (a new cluster, short retention), the query is repeated over the data's own span.
POINTS_PER_SERIES = 336
PREDICT_POINTS = 672  # hourly over four weeks
MIN_STEP_S = 60
MIN_RATE_RANGE_S = 120  # rate() needs at least two scrapes in its range
CRASH_LOOP_WINDOW = "1h"  # crash loops as the anomaly analysis counts them: restarts in the last hour
MAX_PREDICT_BODY = 64 * 1024
SYSTEM_NAMESPACE_PREFIXES = ("kube-", "openshift-")  # the engine leaves these and `default` out of summaries

CONTAINERS = 'container!="",container!="POD"'
IDS = ("namespace", "pod", "container")

# ------------------------------------------------------------------------------------------ PromQL text
def label_eq(label: str, value: str | None) -> str:
    return f",{label}={promql_string(value)}" if value is not None else ""


def label_prefix(label: str, value: str | None) -> str:
    """`label=~"<value>.*"` with the value's regex metacharacters escaped (the engine's pod prefix match)."""
    return f",{label}=~{promql_string(re.escape(value) + '.*')}" if value is not None else ""


def tagged(expr: str, label: str, value: str) -> str:
    """Add a constant label, so several results can travel in one query joined with `or`."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def duration(seconds: float) -> str:
    return f"{int(seconds)}s"


def rate_range(step: int) -> int:
    """The range of the usage queries' rate()/avg_over_time() at a step: the step, at least two scrapes."""
    return max(step, MIN_RATE_RANGE_S)


def usage_expr(selector: str, step: int) -> str:
    """Cores and working-set bytes in scope, averaged over each step, tagged `resource=cpu|memory`."""
    r = duration(rate_range(step))
    cpu = f"sum(rate(container_cpu_usage_seconds_total{{{CONTAINERS}{selector}}}[{r}]))"
    memory = f"sum(avg_over_time(container_memory_working_set_bytes{{{CONTAINERS}{selector}}}[{r}]))"
    return f"{tagged(cpu, 'resource', 'cpu')} or {tagged(memory, 'resource', 'memory')}"


def pod_count_expr(selector: str, by: str = "") -> str:
    """Running + Pending pods; every known pod where kube-state-metrics exports no phases."""
    group = f" by ({by})" if by else ""
    phases = f'sum{group} (kube_pod_status_phase{{phase=~"Running|Pending"{selector}}})'
    return f"({phases} or count{group} (kube_pod_info{{{selector.lstrip(',')}}}))"


# ------------------------------------------------------------------------------------------ Prometheus
async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """Run the queries concurrently; the first failure becomes the response (pipeline.gateway.dependencies),
    once all of them are done."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, PrometheusError):
            raise prometheus_error(result) from result
        if isinstance(result, BaseException):
            raise result
    return results


@dataclass(frozen=True, slots=True)
class Grid:
    """What a range query returned, and the grid it was asked for (start, now, step)."""

    series: list[Series]
    start: float
    end: float
    step: int


async def fetch_grid(
    prom: PrometheusClient, build: Callable[[int], str], window_s: float, points: int, now: float
) -> Grid:
    """A range query over the window at about `points` steps; repeated at a finer step when the data
    covers under a quarter of the window (so a young history still gets enough samples to fit)."""
    step = max(MIN_STEP_S, int(window_s // points))
    # Whole steps back from `now`, so the last point is the current value.
    start = now - math.ceil(window_s / step) * step
    series = await prom.query_range(build(step), start, now, step)
    first = min((s.samples[0][0] for s in series if s.samples), default=None)
    if first is not None and now - first < window_s / 4:
        span = now - first + step
        fine = max(MIN_STEP_S, int(span // points))
        if fine < step:
            start, step = now - math.ceil(span / fine) * fine, fine
            series = await prom.query_range(build(step), start, now, step)
    return Grid(series, start, now, step)


async def fetch_history(
    prom: PrometheusClient, build: Callable[[int], str], window_s: float, points: int, now: float
) -> list[Series]:
    return (await fetch_grid(prom, build, window_s, points, now)).series


def usage_history(grid: Grid) -> dict[str, list[tuple[float, float]]]:
    """The `usage_expr` series by resource, CPU without its rate() warm-up (cap.drop_warmup): where the
    data begins inside the range, the first points' rate windows reach back before it and ramp up."""
    history = {s.labels.get("resource", ""): s.samples for s in grid.series}
    if "cpu" in history:
        history["cpu"] = cap.drop_warmup(history["cpu"], grid.start, rate_range(grid.step))
    return history


def finite_last(series: Series) -> float | None:
    v = series.last
    return v if math.isfinite(v) else None


def by_labels(series: Iterable[Series], *labels: str) -> dict[tuple[str, ...], Series]:
    return {tuple(s.labels.get(label, "") for label in labels): s for s in series}


def scalar_of(series: Iterable[Series], **labels: str) -> float | None:
    for s in series:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return finite_last(s)
    return None


