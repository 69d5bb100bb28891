"""Capacity, prediction and rightsizing routes, computed from Prometheus history.

The engine's R8 (`POST /api/v1/predict`), R17/R18 (capacity), R20-R22 (disk exhaustion, memory leaks,
rightsizing) and the MCP server's `GET /api/v1/capacity/trends`. Per-object rows (one per filesystem, per
container) replace the engine's single aggregated row, which is kept as `aggregate`.

Every input is validated before it gets near PromQL: names against the Kubernetes DNS label/subdomain
rules, `window` against its enum, `mountpoint` against a strict path pattern; label values are still
quoted and regex-escaped when a query is built. Where the MCP server promises namespace wildcards
(`POST /api/v1/predict`, `GET /api/v1/capacity/trends`), a namespace may be a glob of label characters and
`*`/`?`, translated to an anchored regex matcher (pipeline.domain.names.glob_pattern). Independent queries run concurrently; the numbers are
computed by `pipeline.domain.capacity` in a worker thread, so the event loop never waits on arithmetic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pipeline.adapters.prometheus import (
    NotConfigured,
    PrometheusClient,
    PrometheusUnavailable,
    QueryError,
    Series,
)
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.config import Settings
from pipeline.domain import capacity as cap
from pipeline.domain.analysis import CRASH_LOOP_RESTARTS
from pipeline.domain.names import (
    DNS_LABEL_MAX,
    DNS_SUBDOMAIN_MAX,
    glob_pattern,
    is_dns_label,
    is_dns_subdomain,
    is_glob,
    is_namespace_glob,
    promql_regex,
    promql_string,
)

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
RETRY_AFTER_S = "10"
MAX_PREDICT_BODY = 64 * 1024
SYSTEM_NAMESPACE_PREFIXES = ("kube-", "openshift-")  # the engine leaves these and `default` out of summaries

_MOUNTPOINT = re.compile(r"/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?")
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
_CONTAINERS = 'container!="",container!="POD"'
_IDS = ("namespace", "pod", "container")


# ------------------------------------------------------------------------------------------ validation
def _invalid(field: str, message: str, code: str = "INVALID_QUERY") -> ApiError:
    return ApiError(400, code, message, field=field)


def _name(value: str | None, field: str, *, subdomain: bool, code: str = "INVALID_QUERY") -> str | None:
    """A Kubernetes name (RFC 1123 label ≤ 63, or subdomain ≤ 253), None when absent or empty."""
    if value is None or value == "":
        return None
    valid, limit, kind = (
        (is_dns_subdomain, DNS_SUBDOMAIN_MAX, "DNS subdomain")
        if subdomain
        else (is_dns_label, DNS_LABEL_MAX, "DNS label")
    )
    if not valid(value):
        raise _invalid(
            field, f"{field} must be a Kubernetes name (RFC 1123 {kind}, at most {limit} characters)", code
        )
    return value


@dataclass(frozen=True, slots=True)
class Namespaces:
    """A namespace, or a glob of them (`shop*`), as the client asked for it."""

    value: str

    @property
    def glob(self) -> bool:
        return is_glob(self.value)

    @property
    def selector(self) -> str:
        """`,namespace="shop"` or, for a glob, `,namespace=~"^(?:shop[-a-z0-9]*)$"`."""
        if self.glob:
            return f",namespace=~{promql_regex(glob_pattern(self.value))}"
        return _eq("namespace", self.value)


def _namespaces(
    value: str | None, field: str = "namespace", code: str = "INVALID_QUERY"
) -> Namespaces | None:
    """A namespace name or a namespace glob (label characters plus `*` and `?`); None when absent."""
    if value is None or value == "":
        return None
    if is_glob(value):
        if not is_namespace_glob(value):
            raise _invalid(
                field,
                f"{field} must be a Kubernetes name or a glob of one ('*' and '?' as wildcards, at most "
                f"{DNS_LABEL_MAX} characters of a-z, 0-9, '-')",
                code,
            )
        return Namespaces(value)
    return Namespaces(_name(value, field, subdomain=False, code=code) or value)


def _ns_selector(namespaces: Namespaces | None) -> str:
    return namespaces.selector if namespaces is not None else ""


def _window(value: str | None, default: str) -> str:
    value = default if value is None or value == "" else value
    if value not in WINDOWS:
        raise _invalid("window", f"window must be one of: {', '.join(WINDOWS)}")
    return value


def _mountpoint(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 256 or not _MOUNTPOINT.fullmatch(value) or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise _invalid("mountpoint", "mountpoint must be an absolute path of letters, digits, '.', '_', '-'")
    return value


def _bool(value: str | None, field: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if value.lower() not in _BOOLS:
        raise _invalid(field, f"{field} must be true or false")
    return _BOOLS[value.lower()]


# ------------------------------------------------------------------------------------------ PromQL text
def _eq(label: str, value: str | None) -> str:
    return f",{label}={promql_string(value)}" if value is not None else ""


def _prefix(label: str, value: str | None) -> str:
    """`label=~"<value>.*"` with the value's regex metacharacters escaped (the engine's pod prefix match)."""
    return f",{label}=~{promql_string(re.escape(value) + '.*')}" if value is not None else ""


def _tag(expr: str, label: str, value: str) -> str:
    """Add a constant label, so several results can travel in one query joined with `or`."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s"


def _rate_range(step: int) -> int:
    """The range of the usage queries' rate()/avg_over_time() at a step: the step, at least two scrapes."""
    return max(step, MIN_RATE_RANGE_S)


def _usage_expr(selector: str, step: int) -> str:
    """Cores and working-set bytes in scope, averaged over each step, tagged `resource=cpu|memory`."""
    r = _duration(_rate_range(step))
    cpu = f"sum(rate(container_cpu_usage_seconds_total{{{_CONTAINERS}{selector}}}[{r}]))"
    memory = f"sum(avg_over_time(container_memory_working_set_bytes{{{_CONTAINERS}{selector}}}[{r}]))"
    return f"{_tag(cpu, 'resource', 'cpu')} or {_tag(memory, 'resource', 'memory')}"


def _pod_count_expr(selector: str, by: str = "") -> str:
    """Running + Pending pods; every known pod where kube-state-metrics exports no phases."""
    group = f" by ({by})" if by else ""
    phases = f'sum{group} (kube_pod_status_phase{{phase=~"Running|Pending"{selector}}})'
    return f"({phases} or count{group} (kube_pod_info{{{selector.lstrip(',')}}}))"


# ------------------------------------------------------------------------------------------ Prometheus
def _unavailable(detail: str) -> ApiError:
    return ApiError(
        503,
        "PROMETHEUS_UNAVAILABLE",
        "Prometheus not available",
        details=detail,
        headers={"Retry-After": RETRY_AFTER_S},
    )


async def _all(*calls: Awaitable[Any]) -> list[Any]:
    """Run the queries concurrently; the first failure becomes the response (all of them are awaited)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, PrometheusUnavailable):
            raise _unavailable(str(result))
        if isinstance(result, QueryError):
            raise ApiError(
                502, "PROMETHEUS_QUERY_FAILED", "Prometheus rejected the query", details=str(result)
            )
        if isinstance(result, NotConfigured):
            raise ApiError(503, "PROMETHEUS_UNAVAILABLE", "Prometheus not available", details=str(result))
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


async def _history_grid(
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


async def _history(
    prom: PrometheusClient, build: Callable[[int], str], window_s: float, points: int, now: float
) -> list[Series]:
    return (await _history_grid(prom, build, window_s, points, now)).series


def _usage_history(grid: Grid) -> dict[str, list[tuple[float, float]]]:
    """The `_usage_expr` series by resource, CPU without its rate() warm-up (cap.drop_warmup): where the
    data begins inside the range, the first points' rate windows reach back before it and ramp up."""
    history = {s.labels.get("resource", ""): s.samples for s in grid.series}
    if "cpu" in history:
        history["cpu"] = cap.drop_warmup(history["cpu"], grid.start, _rate_range(grid.step))
    return history


def _value(series: Series) -> float | None:
    v = series.last
    return v if math.isfinite(v) else None


def _by(series: Iterable[Series], *labels: str) -> dict[tuple[str, ...], Series]:
    return {tuple(s.labels.get(label, "") for label in labels): s for s in series}


def _scalar(series: Iterable[Series], **labels: str) -> float | None:
    for s in series:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return _value(s)
    return None


# ------------------------------------------------------------------------------------------ formatting
def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _day(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _pct(part: float | None, whole: float | None) -> float | None:
    return _r(part / whole * 100, 2) if part is not None and whole else None


def _millicores(cores: float | None) -> str | None:
    return f"{int(cores * 1000)}m" if cores is not None else None


def _cpu_amount(label: str, cores: float | None, whole: float | None) -> dict[str, Any] | None:
    """`{"<label>": "250m", "<label>_numeric": 0.25, "percent": …}` of `whole`; None when unknown."""
    if cores is None:
        return None
    return {label: _millicores(cores), f"{label}_numeric": _r(cores, 6), "percent": _pct(cores, whole)}


def _memory_amount(label: str, size: float | None, whole: float | None) -> dict[str, Any] | None:
    """`{"<label>": "1.5Gi", "<label>_bytes": …, "percent": …}` of `whole`; None when unknown."""
    if size is None:
        return None
    return {label: cap.format_bytes(size), f"{label}_bytes": int(size), "percent": _pct(size, whole)}


def _drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


# ------------------------------------------------------------------------------------------ the router
def router(settings: Settings, prometheus: PrometheusClient | None) -> APIRouter:
    """The analysis routes. Without a Prometheus client (PROMETHEUS_URL unset) every route answers 503."""
    api = APIRouter(tags=["analysis"])

    def prom() -> PrometheusClient:
        if prometheus is None:
            raise ApiError(
                503,
                "PROMETHEUS_UNAVAILABLE",
                "Prometheus client not available",
                details="PROMETHEUS_URL is not set",
            )
        return prometheus

    @api.post(
        "/api/v1/predict", summary="Forecast CPU and memory at an hour of the week (statistical baseline)"
    )
    async def predict(request: Request) -> JSONResponse:
        req = await _predict_request(request)
        return JSONResponse(await _predict(prom(), req))

    @api.get(
        "/api/v1/capacity/namespace/{namespace}",
        summary="Quota, usage, availability and trend of a namespace",
    )
    async def namespace_capacity(namespace: str, request: Request) -> JSONResponse:
        q = request.query_params
        ns = _name(namespace, "namespace", subdomain=False)
        if ns is None:
            raise _invalid("namespace", "namespace is required")
        trending = _bool(q.get("include_trending"), "include_trending", True)
        infrastructure = _bool(q.get("include_infrastructure"), "include_infrastructure", False)
        window = _window(q.get("window"), "7d")
        return JSONResponse(await _namespace_capacity(prom(), ns, trending, infrastructure, window))

    @api.get("/api/v1/capacity/cluster", summary="Node capacity, cluster usage and per-namespace usage")
    async def cluster_capacity() -> JSONResponse:
        return JSONResponse(await _cluster_capacity(prom()))

    @api.get("/api/v1/capacity/trends", summary="Capacity forecast of a namespace (or the cluster)")
    async def capacity_trends(request: Request) -> JSONResponse:
        q = request.query_params
        namespaces = _namespaces(q.get("namespace"))
        window = _window(q.get("window"), "7d")
        return JSONResponse(await _capacity_trends(prom(), namespaces, window))

    @api.get("/api/v1/predict/disk-exhaustion", summary="Days until each filesystem is full")
    async def disk_exhaustion(request: Request) -> JSONResponse:
        q = request.query_params
        node = _name(q.get("node"), "node", subdomain=True)
        mountpoint = _mountpoint(q.get("mountpoint"))
        return JSONResponse(await _disk_exhaustion(prom(), node, mountpoint))

    @api.get("/api/v1/predict/memory-leak", summary="Containers whose working set grows like a leak")
    async def memory_leak(request: Request) -> JSONResponse:
        ns = _name(request.query_params.get("namespace"), "namespace", subdomain=False)
        return JSONResponse(await _memory_leaks(prom(), ns))

    @api.get("/api/v1/recommendations/rightsizing", summary="Requests and limits from P95 usage")
    async def rightsizing(request: Request) -> JSONResponse:
        q = request.query_params
        ns = _name(q.get("namespace"), "namespace", subdomain=False)
        pod = _name(q.get("pod"), "pod", subdomain=True)
        window = _window(q.get("window"), "30d")
        return JSONResponse(await _rightsizing(prom(), ns, pod, window))

    return api


# ------------------------------------------------------------------------------------------ R8 predict
SCOPES = ("pod", "deployment", "namespace", "cluster")


@dataclass(frozen=True, slots=True)
class PredictRequest:
    hour: int
    day_of_week: int
    scope: str
    namespace: str | None
    deployment: str | None
    pod: str | None
    model: str

    @property
    def target(self) -> str:
        if self.scope == "pod":
            return f"{self.namespace}/{self.pod}"
        if self.scope == "deployment":
            return f"{self.namespace}/{self.deployment}"
        if self.scope == "namespace":
            return self.namespace or "all-namespaces"
        return "cluster"

    @property
    def namespaces(self) -> Namespaces | None:
        return Namespaces(self.namespace) if self.namespace is not None else None

    @property
    def selector(self) -> str:
        """The PromQL matchers of the scope; a namespace glob becomes a regex matcher."""
        namespace = _ns_selector(self.namespaces)
        if self.scope == "pod":
            return namespace + _eq("pod", self.pod)
        if self.scope == "deployment":
            # A Deployment's pods are named <deployment>-<replicaset hash>-<suffix>.
            assert self.deployment is not None
            pods = re.escape(self.deployment) + "-[a-z0-9]+-[a-z0-9]+"
            return namespace + f",pod=~{promql_string(pods)}"
        if self.scope == "namespace":
            return namespace
        return ""


def _bad_request(message: str, field: str, details: str | None = None) -> ApiError:
    error = ApiError(400, "INVALID_REQUEST", message, field=field)
    if details:
        error.extra["details"] = details
    return error


async def _predict_request(request: Request) -> PredictRequest:
    """R8's validation, in R8's order and with its messages; then the names (ours)."""
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.lower().startswith("application/json"):
        raise _bad_request("Content-Type must be application/json", "Content-Type")
    try:
        body = await read_json(request, MAX_PREDICT_BODY)
    except ApiError as exc:
        if exc.status != 400:
            raise
        raise _bad_request("Invalid request format", "body", exc.message) from None
    if not isinstance(body, dict):
        raise _bad_request("Invalid request format", "body", "the body must be a JSON object")

    def integer(key: str) -> int:
        # A missing hour or day is 0, as the engine's Go decoding made it (MCP always sends both).
        value = body.get(key, 0)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_request("Invalid request format", key, f"{key} must be an integer")
        return value

    def text(key: str) -> str | None:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad_request("Invalid request format", key, f"{key} must be a string")
        return value or None

    hour, day = integer("hour"), integer("day_of_week")
    namespace, deployment, pod = text("namespace"), text("deployment"), text("pod")
    scope, model = text("scope"), text("model") or "predictive-analytics"
    if not 0 <= hour <= 23:
        raise _bad_request("hour must be between 0-23", "hour")
    if not 0 <= day <= 6:
        raise _bad_request("day_of_week must be between 0-6 (0=Monday, 6=Sunday)", "day_of_week")
    if scope is None:
        scope = "pod" if pod else "deployment" if deployment else "namespace" if namespace else "cluster"
    if scope not in SCOPES:
        raise _bad_request("scope must be one of: pod, deployment, namespace, cluster", "scope")
    if scope in ("pod", "deployment"):
        if (pod if scope == "pod" else deployment) is None:
            raise _bad_request(f"{scope} name is required when scope is '{scope}'", scope)
        if namespace is None:
            raise _bad_request(f"namespace is required when scope is '{scope}'", "namespace")
    if len(model) > 253:
        raise _bad_request("model must be at most 253 characters", "model")
    return PredictRequest(
        hour=hour,
        day_of_week=day,
        scope=scope,
        namespace=(ns.value if (ns := _namespaces(namespace, code="INVALID_REQUEST")) is not None else None),
        deployment=_name(deployment, "deployment", subdomain=True, code="INVALID_REQUEST"),
        pod=_name(pod, "pod", subdomain=True, code="INVALID_REQUEST"),
        model=model,
    )


async def _predict(prom: PrometheusClient, req: PredictRequest) -> dict[str, Any]:
    now = time.time()
    moment = datetime.fromtimestamp(now, UTC)
    target = cap.next_occurrence(moment, req.day_of_week, req.hour)
    scoped = req.selector
    capacity_expr = (
        _tag(
            'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"})',
            "basis",
            "allocatable",
        )
        if req.scope == "cluster"
        else _tag(
            f'sum by (resource) (kube_pod_container_resource_limits{{resource=~"cpu|memory"{scoped}}})',
            "basis",
            "limits",
        )
        + " or "
        + _tag(
            'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"})', "basis", "allocatable"
        )
    )
    globbed = req.scope != "cluster" and req.namespaces is not None and req.namespaces.glob
    if globbed:
        # Which namespaces the glob matched, in the same instant query.
        capacity_expr += " or " + _tag(
            f"count by (namespace) (kube_pod_info{{{_ns_selector(req.namespaces).lstrip(',')}}})",
            "basis",
            "namespace",
        )
    usage, capacity = await _all(
        _history_grid(prom, lambda step: _usage_expr(scoped, step), PREDICT_LOOKBACK_S, PREDICT_POINTS, now),
        prom.query(capacity_expr, now),
    )
    series = _usage_history(usage)
    forecasts = await asyncio.to_thread(
        lambda: {r: cap.forecast_usage(points, target.timestamp()) for r, points in series.items() if r}
    )
    cpu, memory = forecasts.get("cpu"), forecasts.get("memory")
    if cpu is None and memory is None:
        raise ApiError(404, "NO_DATA", f"no CPU or memory usage history for {req.target}", target=req.target)

    def basis(resource: str) -> tuple[str | None, float | None]:
        for kind in ("limits", "allocatable"):
            value = _scalar(capacity, resource=resource, basis=kind)
            if value:
                return kind, value
        return None, None

    (cpu_basis, cpu_cap), (mem_basis, mem_cap) = basis("cpu"), basis("memory")
    if not cpu_cap and not mem_cap:
        raise ApiError(
            404, "NO_DATA", f"no capacity (limits or allocatable) known for {req.target}", target=req.target
        )

    def percent(value: float | None, whole: float | None) -> float | None:
        return _r(min(100.0, max(0.0, value / whole * 100)), 2) if value is not None and whole else None

    cpu_pct = percent(cpu.value if cpu else None, cpu_cap)
    mem_pct = percent(memory.value if memory else None, mem_cap)
    trend = cap.combined_trend(*((f.trend, f.daily_change_percent) for f in (cpu, memory) if f is not None))
    confidence = min(f.confidence for f in (cpu, memory) if f is not None)
    span = max(f.span_s for f in (cpu, memory) if f is not None)

    def detail(
        f: cap.UsageForecast | None, kind: str | None, whole: float | None, unit: str
    ) -> dict[str, Any] | None:
        if f is None:
            return None
        return {
            f"predicted_{unit}": _r(f.value, 6),
            f"capacity_{unit}": _r(whole, 6),
            "capacity_basis": kind,
            "method": f.method,
            "confidence": f.confidence,
            "trend": f.trend,
            "daily_change_percent": f.daily_change_percent,
            "samples": f.samples,
        }

    matched = sorted(s.labels.get("namespace", "") for s in capacity if s.labels.get("basis") == "namespace")
    return {
        "status": "success",
        "scope": req.scope,
        "target": req.target,
        **({"matched_namespaces": matched} if globbed else {}),
        "predictions": {"cpu_percent": cpu_pct, "memory_percent": mem_pct},
        "current_metrics": {
            "cpu_rolling_mean": percent(cpu.rolling_mean if cpu else None, cpu_cap),
            "memory_rolling_mean": percent(memory.rolling_mean if memory else None, mem_cap),
            "timestamp": _iso(moment),
            "time_range": "24h",
        },
        "model_info": {
            "name": "statistical-baseline",
            "version": "1",
            "confidence": confidence,
            "method": "additive profile (hour of week, else hour of day) + least-squares trend",
            "requested_model": req.model,
            "history_hours": _r(span / 3600, 1),
        },
        "target_time": {"hour": req.hour, "day_of_week": req.day_of_week, "iso_timestamp": _iso(target)},
        "trend": trend,
        "recommendation": cap.usage_recommendation(cpu_pct, mem_pct, trend),
        "forecast": {
            "cpu": detail(cpu, cpu_basis, cpu_cap, "cores"),
            "memory": detail(memory, mem_basis, mem_cap, "bytes"),
        },
    }


# ------------------------------------------------------------------------------------------ R17, trends
@dataclass(frozen=True, slots=True)
class NamespaceState:
    """One instant query's worth of a namespace (or a glob of them, or the cluster): quotas, limits,
    allocatable, usage, pods, the namespaces matched and the containers crash-looping."""

    quotas: dict[str, dict[str, float]]  # namespace -> resource -> the tightest hard quota
    limits: dict[str, float]
    allocatable: dict[str, float]
    usage: dict[str, float]
    pods: int
    namespaces: tuple[str, ...] = ()  # namespaces with pods (the scope's matches)
    restarts: dict[tuple[str, str, str], float] = dataclasses.field(default_factory=dict)

    @property
    def quota(self) -> dict[str, float]:
        """The quotas of every namespace in scope, summed per resource."""
        total: dict[str, float] = defaultdict(float)
        for resources in self.quotas.values():
            for resource, value in resources.items():
                total[resource] += value
        return dict(total)

    def _quota_of(self, resource: str) -> float | None:
        """The summed quota for a resource, when every namespace in scope has one (a quota on some of
        them does not bound the others' usage)."""
        scope = set(self.namespaces) | set(self.quotas)
        values = []
        for ns in scope:
            quota = self.quotas.get(ns, {})
            value = quota.get(f"limits.{resource}") or quota.get(resource)
            if not value:
                return None
            values.append(value)
        return math.fsum(values) if values else None

    def capacity(self, resource: str) -> tuple[str | None, float | None]:
        """The capacity a resource is measured against: the quota, else the summed container limits
        (which grow with replicas), else the cluster's allocatable."""
        quota = self._quota_of(resource)
        if quota:
            return "quota", quota
        if self.limits.get(resource):
            return "limits", self.limits[resource]
        if self.allocatable.get(resource):
            return "allocatable", self.allocatable[resource]
        return None, None


def _state_expr(selector: str, namespaced: bool) -> str:
    ns = selector
    parts = [
        _tag(
            'sum by (resource) (kube_node_status_allocatable{resource=~"cpu|memory"})',
            "kind",
            "allocatable",
        ),
        _tag(
            _tag(f"sum(rate(container_cpu_usage_seconds_total{{{_CONTAINERS}{ns}}}[5m]))", "resource", "cpu"),
            "kind",
            "usage",
        ),
        _tag(
            _tag(f"sum(container_memory_working_set_bytes{{{_CONTAINERS}{ns}}})", "resource", "memory"),
            "kind",
            "usage",
        ),
        _tag(_pod_count_expr(ns), "kind", "pods"),
        # Crash loops (the anomaly analysis' rule): they make replicas pointless, whatever the forecast.
        _tag(
            "sum by (namespace, pod, container) (increase(kube_pod_container_status_restarts_total"
            f'{{container!=""{ns}}}[{CRASH_LOOP_WINDOW}])) >= {CRASH_LOOP_RESTARTS}',
            "kind",
            "restarts",
        ),
    ]
    if namespaced:
        # Several quotas in one namespace all apply: the tightest one binds.
        parts.append(
            _tag(f'min by (namespace, resource) (kube_resourcequota{{type="hard"{ns}}})', "kind", "quota")
        )
        parts.append(
            _tag(
                f'sum by (resource) (kube_pod_container_resource_limits{{resource=~"cpu|memory"{ns}}})',
                "kind",
                "limits",
            )
        )
        parts.append(_tag(f"count by (namespace) (kube_pod_info{{{ns.lstrip(',')}}})", "kind", "namespace"))
    return " or ".join(parts)


def _state(series: list[Series]) -> NamespaceState:
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    quotas: dict[str, dict[str, float]] = defaultdict(dict)
    restarts: dict[tuple[str, str, str], float] = {}
    namespaces: set[str] = set()
    pods = 0
    for s in series:
        value = _value(s)
        if value is None:
            continue
        kind = s.labels.get("kind", "")
        if kind == "pods":
            pods = int(value)
        elif kind == "quota":
            quotas[s.labels.get("namespace", "")][s.labels.get("resource", "")] = value
        elif kind == "restarts":
            restarts[
                (s.labels.get("namespace", ""), s.labels.get("pod", ""), s.labels.get("container", ""))
            ] = value
        elif kind == "namespace":
            namespaces.add(s.labels.get("namespace", ""))
        else:
            groups[kind][s.labels.get("resource", "")] = value
    return NamespaceState(
        dict(quotas),
        groups["limits"],
        groups["allocatable"],
        groups["usage"],
        pods,
        tuple(sorted(namespaces)),
        restarts,
    )


def _containers_expr(selector: str, step: int) -> str:
    """Each container's working set (averaged over each step) and memory limit, for the leak check."""
    r = _duration(_rate_range(step))
    group = "max by (namespace, pod, container)"
    usage = f"{group} (avg_over_time(container_memory_working_set_bytes{{{_CONTAINERS}{selector}}}[{r}]))"
    limit = f'{group} (kube_pod_container_resource_limits{{resource="memory",{_CONTAINERS}{selector}}})'
    return f"{_tag(usage, 'kind', 'usage')} or {_tag(limit, 'kind', 'limit')}"


def _needs_decomposition(memory: cap.ResourceTrend | None) -> bool:
    """Memory is forecast to run out because it grows: whether the growth is a leak (or a crash loop's
    saw-tooth) changes the forecast."""
    return (
        memory is not None
        and memory.capacity is not None
        and memory.base_growth_per_day > 0
        and memory.days_until_85_percent is not None
        and memory.days_until_85_percent > 0
    )


def _decompose(
    grid: Grid, now: float, crash_loops: list[cap.WorkloadIssue]
) -> tuple[list[cap.WorkloadIssue], list[tuple[float, float]]]:
    """Per container over the grid: the leaks (cap.assess_memory_leak over the last 24 h), the crash loops
    with their peak working set, and the summed working set of all the other containers."""
    usage = _by((s for s in grid.series if s.labels.get("kind") == "usage"), *_IDS)
    limits = {
        k: _value(s)
        for k, s in _by((s for s in grid.series if s.labels.get("kind") == "limit"), *_IDS).items()
    }
    crashing = {(i.namespace, i.pod, i.container): i for i in crash_loops}
    issues: list[cap.WorkloadIssue] = []
    rest: dict[float, float] = defaultdict(float)
    for key, s in sorted(usage.items()):
        recent = [(t, v) for t, v in s.samples if t > now - LEAK_WINDOW_S and math.isfinite(v)]
        if key in crashing and recent:
            issues.append(dataclasses.replace(crashing.pop(key), peak_bytes=max(v for _, v in recent)))
            continue
        assessment = cap.assess_memory_leak(recent, limits.get(key))
        if assessment is not None and assessment.leak_detected:
            issues.append(cap.leak_issue(*key, assessment))
            continue
        for t, v in s.samples:
            if math.isfinite(v):
                rest[t] += v
    return [*crashing.values(), *issues], sorted(rest.items())


async def _outlook(
    prom: PrometheusClient, namespaces: Namespaces | None, window: str, now: float
) -> tuple[NamespaceState, cap.CapacityOutlook, dict[str, str | None]]:
    selector = _ns_selector(namespaces)
    state_series, usage = await _all(
        prom.query(_state_expr(selector, namespaces is not None), now),
        _history_grid(
            prom,
            lambda step: _usage_expr(selector, step),
            WINDOWS[window],
            POINTS_PER_SERIES,
            now,
        ),
    )
    state = _state(state_series)
    history = _usage_history(usage)
    bases = {r: state.capacity(r) for r in ("cpu", "memory")}
    issues = [
        cap.crash_loop_issue(ns, pod, container, restarts, CRASH_LOOP_WINDOW)
        for (ns, pod, container), restarts in sorted(state.restarts.items())
    ]
    cpu, memory = await asyncio.to_thread(
        lambda: (
            cap.resource_trend(history.get("cpu", []), bases["cpu"][1]),
            cap.resource_trend(history.get("memory", []), bases["memory"][1]),
        )
    )
    if _needs_decomposition(memory):
        # The same grid as the usage, so the containers' sums line up with the total's timestamps.
        (containers,) = await _all(
            prom.query_range(_containers_expr(selector, usage.step), usage.start, now, usage.step)
        )
        grid = Grid(containers, usage.start, now, usage.step)
        issues, rest = await asyncio.to_thread(_decompose, grid, now, issues)
        memory = cap.bound_defects(memory, rest, issues)

    def compute() -> cap.CapacityOutlook:
        kinds = {kind for kind, _ in bases.values()}
        return cap.capacity_outlook(
            cpu,
            memory,
            today=datetime.fromtimestamp(now, UTC).date(),
            replicas=state.pods,
            per_replica_capacity=kinds == {"limits"},
            capacity_basis=next((k for k in ("quota", "allocatable") if k in kinds), None),
            issues=issues,
        )

    return state, await asyncio.to_thread(compute), {r: kind for r, (kind, _) in bases.items()}


def _trend_json(t: cap.ResourceTrend | None, basis: str | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "daily_change_percent": t.daily_change_percent,
        "weekly_change_percent": t.weekly_change_percent,
        "direction": t.direction,
        "reason": t.reason,
        "r_squared": t.r_squared,
        "current": _r(t.current, 6),
        "capacity": _r(t.capacity, 6),
        "capacity_basis": basis,
        "utilisation_percent": _pct(t.current, t.capacity),
        "days_until_85_percent": cap.whole_days(t.days_until_85_percent),
        "days_until_full": cap.whole_days(t.days_until_full),
        "confidence": t.confidence,
        "samples": t.samples,
    }


def _issue_json(i: cap.WorkloadIssue) -> dict[str, Any]:
    return {
        "kind": i.kind,
        "namespace": i.namespace,
        "pod": i.pod,
        "container": i.container,
        "detail": i.detail,
    }


def _outlook_json(o: cap.CapacityOutlook, bases: Mapping[str, str | None], window: str) -> dict[str, Any]:
    return _drop_none(
        {
            "cpu": _trend_json(o.cpu, bases["cpu"]),
            "memory": _trend_json(o.memory, bases["memory"]),
            "days_until_85_percent": o.days_until_85_percent,
            "projected_exhaustion_date": _day(o.projected_exhaustion_date),
            "confidence": o.confidence,
            "forecasted_exhaustion_days": o.forecasted_exhaustion_days,
            "exhausting_resource": o.exhausting_resource,
            "recommended_replica_increase": o.recommended_replica_increase,
            "replica_advice": o.replica_advice,
            "workload_issues": [_issue_json(i) for i in o.issues],
            "window": window,
        }
    )


async def _capacity_trends(
    prom: PrometheusClient, namespaces: Namespaces | None, window: str
) -> dict[str, Any]:
    now = time.time()
    state, outlook, bases = await _outlook(prom, namespaces, window, now)
    body = {
        "status": "success",
        "namespace": namespaces.value if namespaces is not None else "",
        "timestamp": _iso(datetime.fromtimestamp(now, UTC)),
        **_outlook_json(outlook, bases, window),
    }
    if namespaces is not None and namespaces.glob:
        body["matched_namespaces"] = list(state.namespaces)
    return body


def _infrastructure_expr() -> str:
    parts = {
        "etcd_objects": "sum(etcd_object_counts) or sum(apiserver_storage_objects)",
        "etcd_db_fraction": "max(etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes)",
        "api_qps": "sum(rate(apiserver_request_total[5m]))",
        "scheduler_pending": "sum(scheduler_pending_pods)",
        "etcd_with_leader": "min(etcd_server_has_leader)",
    }
    return " or ".join(_tag(f"({expr})", "measure", name) for name, expr in parts.items())


def _infrastructure(series: list[Series]) -> dict[str, Any]:
    values = {s.labels.get("measure", ""): _value(s) for s in series}
    leader = values.get("etcd_with_leader")
    fraction = values.get("etcd_db_fraction")
    objects = values.get("etcd_objects")
    pending = values.get("scheduler_pending")
    return {
        "etcd_object_count": int(objects) if objects is not None else None,
        # etcd's limit is its backend quota in bytes (not an object count): database size / quota.
        "etcd_capacity_percent": _r(fraction * 100, 2) if fraction is not None else None,
        "api_server_qps": _r(values.get("api_qps"), 2),
        "scheduler_queue_length": int(pending) if pending is not None else None,
        "control_plane_health": "unknown" if leader is None else "healthy" if leader >= 1 else "degraded",
    }


async def _namespace_capacity(
    prom: PrometheusClient, namespace: str, trending: bool, infrastructure: bool, window: str
) -> dict[str, Any]:
    now = time.time()
    calls: list[Awaitable[Any]] = [
        _outlook(prom, Namespaces(namespace), window, now)
        if trending
        else prom.query(_state_expr(_eq("namespace", namespace), True), now)
    ]
    if infrastructure:
        calls.append(prom.query(_infrastructure_expr(), now))
    results = await _all(*calls)
    if trending:
        state, outlook, bases = results[0]
    else:
        state, outlook, bases = _state(results[0]), None, {}
    quota_cpu = state.quota.get("limits.cpu") or state.quota.get("cpu")
    quota_mem = state.quota.get("limits.memory") or state.quota.get("memory")
    quota_pods = state.quota.get("pods")
    used_cpu, used_mem = state.usage.get("cpu"), state.usage.get("memory")

    def available(used: float | None, limit: float | None) -> float | None:
        return max(0.0, limit - (used or 0.0)) if limit else None

    free_cpu, free_mem = available(used_cpu, quota_cpu), available(used_mem, quota_mem)
    body: dict[str, Any] = {
        "status": "success",
        "namespace": namespace,
        "timestamp": _iso(datetime.fromtimestamp(now, UTC)),
        "quota": _drop_none(
            {
                "cpu": {"limit": _millicores(quota_cpu), "limit_numeric": quota_cpu} if quota_cpu else None,
                "memory": {"limit": cap.format_bytes(quota_mem), "limit_bytes": int(quota_mem)}
                if quota_mem
                else None,
                "pod_count_limit": int(quota_pods) if quota_pods else 0,
                "has_quota": bool(state.quota),
            }
        ),
        "current_usage": {
            "cpu": _cpu_amount("used", used_cpu, quota_cpu),
            "memory": _memory_amount("used", used_mem, quota_mem),
            "pod_count": state.pods,
        },
        "available": _drop_none(
            {
                "cpu": _cpu_amount("available", free_cpu, quota_cpu),
                "memory": _memory_amount("available", free_mem, quota_mem),
                "pod_slots": max(0, int(quota_pods) - state.pods) if quota_pods else None,
            }
        ),
    }
    if outlook is not None:
        body["trending"] = _outlook_json(outlook, bases, window)
    if infrastructure:
        body["infrastructure_impact"] = _infrastructure(results[1])
    return body


# ------------------------------------------------------------------------------------------ R18 cluster
def _nodes_expr() -> str:
    parts = [
        _tag('kube_node_status_allocatable{resource=~"cpu|memory"}', "kind", "allocatable"),
        _tag('kube_node_status_capacity{resource=~"cpu|memory"}', "kind", "capacity"),
        # node-exporter, where kube-state-metrics has no capacity: CPUs and MemTotal per node.
        _tag(
            _tag('count by (node) (node_cpu_seconds_total{mode="idle"})', "resource", "cpu"),
            "kind",
            "hardware",
        ),
        _tag(_tag("max by (node) (node_memory_MemTotal_bytes)", "resource", "memory"), "kind", "hardware"),
        _tag('max by (node) (kube_node_role{role=~"master|control-plane"})', "kind", "control_plane"),
        _tag("min(etcd_server_has_leader)", "kind", "etcd"),
        _tag(_pod_count_expr(""), "kind", "pods"),
    ]
    return " or ".join(parts)


def _namespaces_expr() -> str:
    parts = [
        _tag(
            f"sum by (namespace) (rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[5m]))",
            "kind",
            "cpu",
        ),
        _tag(f"sum by (namespace) (container_memory_working_set_bytes{{{_CONTAINERS}}})", "kind", "memory"),
        _tag(_pod_count_expr("", by="namespace"), "kind", "pods"),
    ]
    return " or ".join(parts)


async def _cluster_capacity(prom: PrometheusClient) -> dict[str, Any]:
    now = time.time()
    node_series, ns_series = await _all(prom.query(_nodes_expr(), now), prom.query(_namespaces_expr(), now))
    nodes: dict[str, dict[str, float]] = defaultdict(dict)
    control_plane: set[str] = set()
    etcd, pods = None, 0
    for s in node_series:
        kind, value = s.labels.get("kind"), _value(s)
        if value is None:
            continue
        if kind == "control_plane":
            control_plane.add(s.labels.get("node", ""))
        elif kind == "etcd":
            etcd = value
        elif kind == "pods":
            pods = int(value)
        elif s.labels.get("node"):
            nodes[s.labels["node"]][f"{kind}_{s.labels.get('resource')}"] = value
    workers = {n: v for n, v in nodes.items() if n not in control_plane}

    def total(key: str, fallback: str | None = None) -> float | None:
        values = [v.get(key, v.get(fallback or "")) for v in workers.values()]
        known = [v for v in values if v is not None]
        return math.fsum(known) if known else None

    alloc_cpu, alloc_mem = total("allocatable_cpu"), total("allocatable_memory")
    total_cpu, total_mem = total("capacity_cpu", "hardware_cpu"), total("capacity_memory", "hardware_memory")
    per_ns: dict[str, dict[str, float]] = defaultdict(dict)
    for s in ns_series:
        value = _value(s)
        if value is not None and s.labels.get("namespace"):
            per_ns[s.labels["namespace"]][s.labels.get("kind", "")] = value
    used_cpu = math.fsum(v.get("cpu", 0.0) for v in per_ns.values())
    used_mem = math.fsum(v.get("memory", 0.0) for v in per_ns.values())
    summaries = [
        {
            "name": name,
            "cpu_percent": _pct(v.get("cpu", 0.0), alloc_cpu),
            "memory_percent": _pct(v.get("memory", 0.0), alloc_mem),
            "pod_count": int(v.get("pods", 0)),
            "cpu_cores": _r(v.get("cpu"), 6),
            "memory_bytes": int(v["memory"]) if "memory" in v else None,
        }
        for name, v in sorted(per_ns.items())
        if name != "default" and not name.startswith(SYSTEM_NAMESPACE_PREFIXES)
    ]
    return {
        "status": "success",
        "scope": "cluster",
        "timestamp": _iso(datetime.fromtimestamp(now, UTC)),
        "cluster_capacity": {
            "total_cpu": _millicores(total_cpu),
            "total_memory": cap.format_bytes(total_mem),
            "allocatable_cpu": _millicores(alloc_cpu),
            "allocatable_memory": cap.format_bytes(alloc_mem),
            "total_cpu_cores": _r(total_cpu, 3),
            "total_memory_bytes": int(total_mem) if total_mem is not None else None,
            "allocatable_cpu_cores": _r(alloc_cpu, 3),
            "allocatable_memory_bytes": int(alloc_mem) if alloc_mem is not None else None,
            "worker_nodes": len(workers),
            "control_plane_nodes_excluded": len(control_plane & set(nodes)),
        },
        "cluster_usage": {
            "cpu": _cpu_amount("used", used_cpu, alloc_cpu),
            "memory": _memory_amount("used", used_mem, alloc_mem),
            "pod_count": pods,
        },
        "namespaces": summaries,
        "nodes": [
            {
                "name": name,
                "control_plane": name in control_plane,
                "cpu_capacity_cores": _r(v.get("capacity_cpu", v.get("hardware_cpu")), 3),
                "cpu_allocatable_cores": _r(v.get("allocatable_cpu"), 3),
                "memory_capacity_bytes": _r(v.get("capacity_memory", v.get("hardware_memory")), 0),
                "memory_allocatable_bytes": _r(v.get("allocatable_memory"), 0),
            }
            for name, v in sorted(nodes.items())
        ],
        "infrastructure": {
            # Not measured: usage on control-plane nodes is not attributed (the engine always sent 0).
            "control_plane_cpu_percent": None,
            "control_plane_memory_percent": None,
            "etcd_health": "unknown" if etcd is None else "healthy" if etcd >= 1 else "degraded",
        },
    }


# ------------------------------------------------------------------------------------------ R20 disk
def _node_of(labels: Mapping[str, str]) -> str:
    return labels.get("node") or labels.get("instance", "").rsplit(":", 1)[0]


def _disk_json(node: str, mountpoint: str, f: cap.DiskForecast, labels: Mapping[str, str]) -> dict[str, Any]:
    return _drop_none(
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
            "projected_full_date": _day(f.projected_full_date),
            "r_squared": f.r_squared,
            "confidence": f.confidence,
            "samples": f.samples,
        }
    )


async def _disk_exhaustion(
    prom: PrometheusClient, node: str | None, mountpoint: str | None
) -> dict[str, Any]:
    now = time.time()
    base = 'fstype!~"tmpfs|squashfs|overlay"' + _eq("mountpoint", mountpoint)

    def selected(metric: str) -> str:
        if node is None:
            return f"{metric}{{{base}}}"
        # node-exporter labels the node as `node` (kube-prometheus relabelling) or `instance` (<node>:<port>).
        instance = re.escape(node) + "(:[0-9]+)?"
        return (
            f"{metric}{{{base}{_eq('node', node)}}} or {metric}{{{base},instance=~{promql_string(instance)}}}"
        )

    avail, sizes = await _all(
        _history(
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

    size_of = {key(s): _value(s) for s in sizes}

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
    return _drop_none(
        {
            "status": "success",
            "timestamp": _iso(datetime.fromtimestamp(now, UTC)),
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


# ------------------------------------------------------------------------------------------ R21 leaks
def _leak_json(namespace: str, pod: str, container: str, a: cap.LeakAssessment) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "current_memory_bytes": a.current_bytes,
        "daily_growth_bytes": a.daily_growth_bytes,
        "growth_r_squared": a.r_squared,
        "leak_detected": a.leak_detected,
        "confidence": a.confidence,
        "memory_limit_bytes": a.limit_bytes,
        "days_until_limit": a.days_until_limit,
        "projected_limit_time": _iso(a.limit_reached_at) if a.limit_reached_at else None,
        "monotonicity": a.monotonicity,
        "restarts": a.restarts,
        "samples": a.samples,
        "reason": a.reason,
    }


async def _memory_leaks(prom: PrometheusClient, namespace: str | None) -> dict[str, Any]:
    now = time.time()
    scope = f"{_CONTAINERS}{_eq('namespace', namespace)}"
    group = "max by (namespace, pod, container)"
    working_sets, limits = await _all(
        _history(
            prom,
            lambda _: f"{group} (container_memory_working_set_bytes{{{scope}}})",
            LEAK_WINDOW_S,
            POINTS_PER_SERIES,
            now,
        ),
        prom.query(f'{group} (kube_pod_container_resource_limits{{resource="memory",{scope}}})', now),
    )
    limit_of = {k: _value(s) for k, s in _by(limits, "namespace", "pod", "container").items()}

    def compute() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        rows = []
        for (ns, pod, container), s in sorted(_by(working_sets, "namespace", "pod", "container").items()):
            assessment = cap.assess_memory_leak(s.samples, limit_of.get((ns, pod, container)))
            if assessment is not None:
                rows.append(_leak_json(ns, pod, container, assessment))
        rows.sort(key=lambda r: not r["leak_detected"])
        total: dict[float, float] = defaultdict(float)
        for s in working_sets:
            for t, v in s.samples:
                if math.isfinite(v):
                    total[t] += v
        known_limits = [v for v in limit_of.values() if v is not None]
        overall = cap.assess_memory_leak(
            sorted(total.items()), math.fsum(known_limits) if known_limits else None
        )
        aggregate = _leak_json(namespace or "", "(aggregated)", "(aggregated)", overall) if overall else None
        return rows, aggregate

    results, aggregate = await asyncio.to_thread(compute)
    return _drop_none(
        {
            "status": "success",
            "timestamp": _iso(datetime.fromtimestamp(now, UTC)),
            "namespace": namespace,
            "window": "24h",
            "results": results,
            "leak_count": sum(r["leak_detected"] for r in results),
            "aggregate": aggregate,
        }
    )


# ------------------------------------------------------------------------------------------ R22 rightsizing
def _rightsizing_json(r: cap.Rightsizing) -> dict[str, Any]:
    u = r.usage
    body: dict[str, Any] = {
        "namespace": u.namespace,
        "pod": u.pod,
        "container": u.container,
        "current_cpu_request": cap.format_cores(u.cpu_request),
        "current_cpu_limit": cap.format_cores(u.cpu_limit),
        "p95_cpu_usage_cores": _r(u.p95_cpu_cores, 3),
        "recommended_cpu_request": cap.format_cores(r.recommended_cpu_request),
        "recommended_cpu_limit": cap.format_cores(r.recommended_cpu_limit),
        "current_memory_request": cap.format_bytes(u.memory_request),
        "current_memory_limit": cap.format_bytes(u.memory_limit),
        "p95_memory_usage_bytes": _r(u.p95_memory_bytes, 0),
        "recommended_memory_request": cap.format_bytes(r.recommended_memory_request),
        "recommended_memory_limit": cap.format_bytes(r.recommended_memory_limit),
        "cpu_sizing": r.cpu_sizing,
        "memory_sizing": r.memory_sizing,
        "throttle_rate_pct": _r(u.throttle_fraction * 100, 2) if u.throttle_fraction is not None else None,
        "current_cpu_request_cores": _r(u.cpu_request, 6),
        "current_cpu_limit_cores": _r(u.cpu_limit, 6),
        "recommended_cpu_request_cores": _r(r.recommended_cpu_request, 6),
        "recommended_cpu_limit_cores": _r(r.recommended_cpu_limit, 6),
        "current_memory_request_bytes": _r(u.memory_request, 0),
        "current_memory_limit_bytes": _r(u.memory_limit, 0),
        "recommended_memory_request_bytes": _r(r.recommended_memory_request, 0),
        "recommended_memory_limit_bytes": _r(r.recommended_memory_limit, 0),
        "reasons": list(r.reasons),
    }
    if body["throttle_rate_pct"] is None:
        del body["throttle_rate_pct"]  # the engine omits it without CFS metrics
    return body


async def _rightsizing(
    prom: PrometheusClient, namespace: str | None, pod: str | None, window: str
) -> dict[str, Any]:
    now = time.time()
    scope = _eq("namespace", namespace) + _prefix("pod", pod)
    group = "max by (namespace, pod, container)"
    ids = ("namespace", "pod", "container")
    cpu, memory, resources, throttle = await _all(
        prom.query(
            f"{group} (quantile_over_time(0.95, "
            f"rate(container_cpu_usage_seconds_total{{{_CONTAINERS}{scope}}}[5m])[{window}:5m]))",
            now,
        ),
        prom.query(
            f"{group} (quantile_over_time(0.95, container_memory_working_set_bytes{{{_CONTAINERS}{scope}}}[{window}]))",
            now,
        ),
        prom.query(
            "max by (__name__, namespace, pod, container, resource) ("
            f'{{__name__=~"kube_pod_container_resource_(requests|limits)",resource=~"cpu|memory",'
            f'container!=""{scope}}})',
            now,
        ),
        prom.query(
            # A true fraction over the window: throttled CFS periods / all periods.
            f"sum by (namespace, pod, container) "
            f"(increase(container_cpu_cfs_throttled_periods_total{{{_CONTAINERS}{scope}}}[{window}])) / "
            f"sum by (namespace, pod, container) "
            f"(increase(container_cpu_cfs_periods_total{{{_CONTAINERS}{scope}}}[{window}]))",
            now,
        ),
    )
    p95_cpu = {k: _value(s) for k, s in _by(cpu, *ids).items()}
    p95_mem = {k: _value(s) for k, s in _by(memory, *ids).items()}
    throttled = {k: _value(s) for k, s in _by(throttle, *ids).items()}
    declared = {k: _value(s) for k, s in _by(resources, "__name__", "resource", *ids).items()}

    def spec(kind: str, resource: str, k: tuple[str, ...]) -> float | None:
        return declared.get((f"kube_pod_container_resource_{kind}", resource, *k))

    usages = [
        cap.ContainerUsage(
            namespace=k[0],
            pod=k[1],
            container=k[2],
            p95_cpu_cores=p95_cpu.get(k),
            p95_memory_bytes=p95_mem.get(k),
            cpu_request=spec("requests", "cpu", k),
            cpu_limit=spec("limits", "cpu", k),
            memory_request=spec("requests", "memory", k),
            memory_limit=spec("limits", "memory", k),
            throttle_fraction=throttled.get(k),
        )
        for k in sorted(set(p95_cpu) | set(p95_mem))
    ]
    recs = [cap.recommend(u) for u in usages]
    verdicts = [cap.verdict(r) for r in recs]
    return _drop_none(
        {
            "status": "success",
            "timestamp": _iso(datetime.fromtimestamp(now, UTC)),
            "namespace": namespace,
            "pod": pod,
            "analysis_window": window,
            "recommendations": [_rightsizing_json(r) for r in recs],
            "over_provisioned_count": verdicts.count("over-provisioned"),
            "under_provisioned_count": verdicts.count("under-provisioned"),
            "right_sized_count": verdicts.count("right-sized"),
            "unknown_count": verdicts.count("unknown"),
            "aggregate": _rightsizing_json(cap.recommend(_mean_usage(usages, namespace, pod)))
            if usages
            else None,
        }
    )


def _mean_usage(
    usages: list[cap.ContainerUsage], namespace: str | None, pod: str | None
) -> cap.ContainerUsage:
    """The engine's single row: every figure averaged over the containers that have it."""

    def mean(values: Iterable[float | None]) -> float | None:
        known = [v for v in values if v is not None and math.isfinite(v)]
        return math.fsum(known) / len(known) if known else None

    return cap.ContainerUsage(
        namespace or "",
        pod or "",
        "(aggregated)",
        p95_cpu_cores=mean(u.p95_cpu_cores for u in usages),
        p95_memory_bytes=mean(u.p95_memory_bytes for u in usages),
        cpu_request=mean(u.cpu_request for u in usages),
        cpu_limit=mean(u.cpu_limit for u in usages),
        memory_request=mean(u.memory_request for u in usages),
        memory_limit=mean(u.memory_limit for u in usages),
        throttle_fraction=mean(u.throttle_fraction for u in usages),
    )
