"""Anomaly analysis rules for `POST /api/v1/anomalies/analyze`, pure and explainable.

Until an ML model scores the 45-feature vector (a later issue), anomalies come from per-pod rules over
the requested time range, each with the numbers that triggered it:
* memory leak (trend_anomaly): the working-set/limit ratio grows steadily (least-squares slope > 0 with
  R^2 >= 0.8 over the range) and is projected to reach the limit within 24 h, or is already above 0.9;
* crash loop (threshold_exceeded): at least 3 container restarts within the range;
* CPU throttling (threshold_exceeded): throttled CFS periods / periods > 0.25 over the last 5 minutes;
* CPU outlier (statistical_outlier): the current CPU is more than 4 robust deviations (1.4826 * MAD)
  and at least 25 % away from the range's median, on at least 10 points.
The anomaly score maps each rule's strength onto 0..1; an anomaly is reported when score >= threshold.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.capacity import fit_line

TIME_RANGES: dict[str, int] = {"1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800}
DEFAULT_THRESHOLD = 0.7
LEAK_MIN_R2 = 0.8
LEAK_HORIZON_S = 24 * 3600
MEMORY_NEAR_LIMIT = 0.9
CRASH_LOOP_RESTARTS = 3
THROTTLED_FRACTION = 0.25
OUTLIER_DEVIATIONS = 4.0
OUTLIER_MIN_CHANGE = 0.25  # and at least 25 % away from the median: a steady pod's tiny wiggle is no anomaly
HTTP_ERROR_RATE_DEGRADED = 0.05
HTTP_P99_DEGRADED_MS = 1000.0
RULES_MODEL = "statistical-baseline"

_LABEL_KEY = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# What `label_selector_matchers` accepts, as one pattern (what the API contract declares): comma-separated
# `key=value`, `key==value` or `key!=value`, blanks around them and empty requirements ignored, at least one
# requirement. Keys as Kubernetes allows them (prefix ≤ 253, name ≤ 63 characters; the parser only bounds the
# whole key, at 317), values ≤ 63 characters.
_SELECTOR_KEY = r"(?:[a-z0-9A-Z](?:[-a-z0-9A-Z_.]{0,251}[a-z0-9A-Z])?/)?[a-zA-Z0-9](?:[-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?"
_SELECTOR_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_REQUIREMENT = rf"{_SELECTOR_KEY}\s*(?:==|=|!=)\s*{_SELECTOR_VALUE}"
LABEL_SELECTOR = rf"(?:\s*,)*\s*{_REQUIREMENT}\s*(?:,\s*(?:{_REQUIREMENT}\s*)?)*"


class InvalidSelector(ValueError):
    """A label selector we cannot translate safely (set-based, or not Kubernetes label syntax)."""


def braces(*matchers: str) -> str:
    """`{a,b}`, or empty when there is nothing to match (a bare metric name selects every series)."""
    return "{" + ",".join(matchers) + "}" if matchers else ""


def rule_queries(pods: Sequence[str], range_label: str) -> tuple[dict[str, str], dict[str, str]]:
    """The rules' inputs for the pods matched by `pods` (PromQL matchers, already validated): per-pod series
    over the range (`memory`: working set / limit; `cpu`: cores), and per-pod values at its end
    (`restarts` over the range, `throttle`: throttled CFS periods / periods over 5 minutes)."""
    containers = braces('container!=""', *pods)
    limits = braces('resource="memory"', *pods)
    by_pod = "sum by (namespace, pod)"
    over_range = {
        "memory": (f"{by_pod} (container_memory_working_set_bytes{containers}) / "
                   f"{by_pod} (kube_pod_container_resource_limits{limits})"),
        "cpu": f"{by_pod} (rate(container_cpu_usage_seconds_total{containers}[5m]))",
    }
    at_end = {
        "restarts": f"{by_pod} (increase(kube_pod_container_status_restarts_total{braces(*pods)}[{range_label}]))",
        "throttle": (f"{by_pod} (rate(container_cpu_cfs_throttled_periods_total{containers}[5m])) / "
                     f"{by_pod} (rate(container_cpu_cfs_periods_total{containers}[5m]))"),
    }
    return over_range, at_end


Samples = Sequence[tuple[float, float]]
Answers = Mapping[str, Sequence[tuple[Mapping[str, str], Samples]]]  # per query key: (labels, samples)


def _each(parts: Answers, key: str) -> Iterator[tuple[str, str, Samples]]:
    for labels, samples in parts.get(key, ()):
        if samples:
            yield labels.get("namespace", ""), labels.get("pod", ""), samples


def rule_findings(over_range: Answers, at_end: Answers, range_label: str) -> list[Finding]:
    """Every rule over the answers of `rule_queries` (absent keys are skipped), strongest first."""
    each = _each
    found = [memory_leak(ns, pod, samples) for ns, pod, samples in each(over_range, "memory")]
    found += [cpu_outlier(ns, pod, samples) for ns, pod, samples in each(over_range, "cpu")]
    found += [crash_loop(ns, pod, samples[-1][1], range_label) for ns, pod, samples in each(at_end, "restarts")]
    found += [throttling(ns, pod, samples[-1][1]) for ns, pod, samples in each(at_end, "throttle")]
    return sorted((f for f in found if f is not None), key=lambda f: (-f.anomaly_score, f.namespace, f.pod, f.metric))


def baseline_step(range_s: int) -> int:
    """At most ~360 points per series over the range, never finer than a minute."""
    return max(60, range_s // 360)


def label_selector_matchers(selector: str) -> list[str]:
    """`app=flask,tier!=db` -> PromQL matchers on kube_pod_labels (`label_app="flask"`, ...).

    Only equality-based requirements (`=`, `==`, `!=`) are supported; keys become kube-state-metrics'
    `label_<key>` with every character outside [a-zA-Z0-9_] turned into `_`.
    """
    matchers = []
    for requirement in filter(None, (r.strip() for r in selector.split(","))):
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", requirement)
        if not m:
            raise InvalidSelector(f"unsupported requirement {requirement!r}: use key=value or key!=value")
        key, op, value = m.groups()
        if not _LABEL_KEY.match(key) or len(key) > 317 or not _LABEL_VALUE.match(value) or len(value) > 63:
            raise InvalidSelector(f"{requirement!r} is not a Kubernetes label requirement")
        name = "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
        matchers.append(f'{name}{"!=" if op == "!=" else "="}"{value}"')
    if not matchers:
        raise InvalidSelector("label selector is empty")
    return matchers


@dataclass
class Finding:
    """One anomaly, in the fields the MCP server reads."""

    metric: str
    type: str
    anomaly_score: float
    value: float
    expected_min: float
    expected_max: float
    namespace: str
    pod: str
    explanation: str
    recommended_action: str
    metrics: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.95  # direct measurements against a threshold; fits use their R²
    model: str = RULES_MODEL  # what found it: the rules, or the anomaly model's name
    target: str = ""  # who it is about, for people ("ns/pod" when empty)
    message: str = ""  # the alert text for people (`explanation` when empty)

    @property
    def subject(self) -> str:
        return self.target or "/".join(p for p in (self.namespace, self.pod) if p) or "the cluster"

    @property
    def severity(self) -> str:
        return "critical" if self.anomaly_score >= 0.9 else "high" if self.anomaly_score >= 0.8 else "medium"


def memory_leak(namespace: str, pod: str, ratios: Sequence[tuple[float, float]]) -> Finding | None:
    fit = fit_line(ratios)
    if fit is None or not ratios:
        return None
    now, current = ratios[-1]
    if not math.isfinite(current):
        return None
    growing = fit.slope > 0 and fit.r_squared >= LEAK_MIN_R2
    hours_to_limit = (1.0 - current) / fit.slope / 3600 if fit.slope > 0 and current < 1 else 0.0
    if not (growing and (hours_to_limit * 3600 <= LEAK_HORIZON_S or current >= MEMORY_NEAR_LIMIT)):
        return None
    urgency = max(0.0, 1.0 - hours_to_limit / 24.0)
    score = round(min(1.0, 0.7 + 0.3 * max(urgency, current)), 2)
    first = ratios[0][1]
    return Finding(
        metric="pod_memory_usage",
        type="trend_anomaly",
        anomaly_score=score,
        value=round(current, 4),
        expected_min=round(min(first, current), 4),
        expected_max=round(max(first, current), 4),
        namespace=namespace,
        pod=pod,
        explanation=(
            f"{namespace}/{pod}: memory at {current:.0%} of its limit and growing steadily "
            f"({fit.slope * 3600:.1%} of the limit per hour, R²={fit.r_squared:.2f}); "
            f"limit reached in about {hours_to_limit:.1f} h"
        ),
        recommended_action="investigate_memory_leak",
        metrics={"memory_limit_ratio": round(current, 4), "growth_per_hour": round(fit.slope * 3600, 6),
                 "r2": round(fit.r_squared, 4), "hours_to_limit": round(hours_to_limit, 2)},
        confidence=round(fit.r_squared, 4),
    )


def crash_loop(namespace: str, pod: str, restarts: float, range_label: str) -> Finding | None:
    if not math.isfinite(restarts) or restarts < CRASH_LOOP_RESTARTS:
        return None
    score = round(min(1.0, 0.7 + 0.03 * restarts), 2)
    return Finding(
        metric="container_restart_count",
        type="threshold_exceeded",
        anomaly_score=score,
        value=round(restarts, 2),
        expected_min=0.0,
        expected_max=float(CRASH_LOOP_RESTARTS - 1),
        namespace=namespace,
        pod=pod,
        explanation=f"{namespace}/{pod}: {restarts:.0f} container restarts in the last {range_label} (crash loop)",
        recommended_action="restart_pod",
        metrics={"restarts": round(restarts, 2)},
    )


def throttling(namespace: str, pod: str, fraction: float) -> Finding | None:
    if not math.isfinite(fraction) or fraction <= THROTTLED_FRACTION:
        return None
    return Finding(
        metric="cpu_throttle_rate",
        type="threshold_exceeded",
        anomaly_score=round(min(1.0, 0.7 + 0.3 * fraction), 2),
        value=round(fraction, 4),
        expected_min=0.0,
        expected_max=THROTTLED_FRACTION,
        namespace=namespace,
        pod=pod,
        explanation=f"{namespace}/{pod}",  # the MCP's get-throttled-pods reads "ns/pod" here
        recommended_action="increase_cpu_limit",
        # `throttle_rate_pct` is a fraction because the MCP multiplies it by 100; the percent is for people.
        metrics={"throttle_rate_pct": round(fraction, 4), "throttle_rate_percent": round(fraction * 100, 2)},
        message=(f"{namespace}/{pod}: CPU throttled in {fraction:.0%} of its CFS periods over the last 5 minutes "
                 f"(more than {THROTTLED_FRACTION:.0%}); its CPU limit is too low for its load"),
    )


def cpu_outlier(namespace: str, pod: str, cores: Sequence[tuple[float, float]]) -> Finding | None:
    values = [v for _, v in cores if math.isfinite(v)]
    if len(values) < 10:
        return None
    current, history = values[-1], values[:-1]
    median = statistics.median(history)
    spread = 1.4826 * statistics.median(abs(v - median) for v in history)
    if spread == 0:
        return None
    deviations = abs(current - median) / spread
    if deviations <= OUTLIER_DEVIATIONS or abs(current - median) < OUTLIER_MIN_CHANGE * abs(median):
        return None
    return Finding(
        metric="pod_cpu_usage",
        type="statistical_outlier",
        anomaly_score=round(deviations / (deviations + 1.5), 2),
        value=round(current, 4),
        expected_min=round(max(0.0, median - OUTLIER_DEVIATIONS * spread), 4),
        expected_max=round(median + OUTLIER_DEVIATIONS * spread, 4),
        namespace=namespace,
        pod=pod,
        explanation=f"{namespace}/{pod}: CPU {current:.3f} cores, {deviations:.1f} robust deviations from its median",
        recommended_action="schedule_review",
        metrics={"cpu_cores": round(current, 4), "median": round(median, 4), "deviations": round(deviations, 2)},
    )


def recommendations(findings: Sequence[Finding]) -> list[str]:
    texts = {
        "investigate_memory_leak": "Investigate a memory leak in {ns}/{pod}; raise its limit only as a stopgap",
        "restart_pod": "Inspect the logs of {ns}/{pod} and its last termination reason; it is crash looping",
        "increase_cpu_limit": "Raise the CPU limit of {ns}/{pod} or remove it; it is throttled",
        "schedule_review": "Review the CPU usage change of {ns}/{pod}",
        "immediate_investigation": "Investigate {target} now: the anomaly model flags its metrics",
        "review_anomaly": "Review {target}: the anomaly model finds its metrics unusual",
    }
    out = [texts[f.recommended_action].format(ns=f.namespace, pod=f.pod, target=f.subject) for f in findings]
    return out or ["No anomalies detected. System operating normally."]


def alerts(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    kinds = {"pod_memory_usage": "memory_issue", "container_restart_count": "availability_issue",
             "cpu_throttle_rate": "resource_exhaustion", "pod_cpu_usage": "resource_exhaustion",
             "feature_vector": "ml_anomaly"}
    return [
        {"type": kinds[f.metric], "message": f.message or f.explanation, "severity": f.severity,
         "action_required": f.severity in ("critical", "high")}
        for f in findings
    ]
