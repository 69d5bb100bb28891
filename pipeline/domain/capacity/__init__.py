"""Capacity and usage analysis: trend fits, exhaustion forecasts, leak detection, rightsizing, forecasts.

Pure functions over `(unix seconds, value)` samples; no I/O, no clock reads (a `now` or `today` comes in).
Every threshold is a named constant with the reason for its value. Inputs may hold NaN or ±Inf (Prometheus
sends them): such samples are dropped on entry, and no non-finite number ever leaves this package (an
unknown value is `None`).

Days are counted from the last observed sample: "in 3 days" means 3 days after the data we have.

One module per concern, all names exported here (`from pipeline.domain.capacity import fit_line`):

* `samples` — the sample type and the guards against non-finite values;
* `fit` — least-squares lines, days until a threshold, direction and confidence;
* `trend` — the trend gate: when a line may be extrapolated;
* `urgency` — critical / warning / info by days until exhaustion;
* `disk` — filesystem exhaustion (R20);
* `leaks` — memory-leak verdicts (R21);
* `rightsizing` — requests and limits from P95 usage (R22);
* `growth` — a resource's trend against its capacity (R17);
* `outlook` — CPU and memory combined, workload defects and replica advice (R17);
* `forecast` — the statistical usage forecast and its advice (R8).
"""

from pipeline.domain.capacity.disk import (
    DiskForecast,
    forecast_disk,
)
from pipeline.domain.capacity.fit import (
    DIRECTION_THRESHOLD_PERCENT_PER_DAY,
    MIN_FIT_POINTS,
    TREND_SIGNIFICANCE,
    Direction,
    LinearFit,
    daily_change_percent,
    days_until,
    direction,
    fit_line,
    history_coverage,
    trend_confidence,
    whole_days,
)
from pipeline.domain.capacity.forecast import (
    DAILY_PROFILE_MIN_SPAN_S,
    ROLLING_MEAN_S,
    WEEKLY_PROFILE_MIN_SPAN_S,
    TrendWord,
    UsageForecast,
    combined_trend,
    forecast_usage,
    next_occurrence,
    usage_recommendation,
)
from pipeline.domain.capacity.growth import (
    CAPACITY_WARNING_FRACTION,
    BoundedGrowth,
    ResourceTrend,
    bounded_days_until,
    resource_trend,
)
from pipeline.domain.capacity.leaks import (
    LEAK_MIN_DAILY_GROWTH_FRACTION,
    LEAK_MIN_MONOTONICITY,
    LEAK_MIN_POINTS,
    LEAK_MIN_R_SQUARED,
    LEAK_MIN_SPAN_S,
    LEAK_MONOTONICITY_BUCKETS,
    RESTART_DROP_FRACTION,
    LeakAssessment,
    assess_memory_leak,
    monotonicity,
    split_at_restarts,
)
from pipeline.domain.capacity.outlook import (
    SCALE_OUT_HORIZON_DAYS,
    TARGET_UTILISATION,
    CapacityOutlook,
    IssueKind,
    WorkloadIssue,
    bound_defects,
    capacity_outlook,
    crash_loop_issue,
    leak_issue,
)
from pipeline.domain.capacity.rightsizing import (
    LIMIT_HEADROOM,
    MEMORY_LIMIT_PRESSURE,
    OVER_PROVISIONED_RATIO,
    REQUEST_HEADROOM,
    THROTTLING_FRACTION,
    UNDER_PROVISIONED_RATIO,
    ContainerUsage,
    Rightsizing,
    Sizing,
    format_bytes,
    format_cores,
    recommend,
    sizing,
    verdict,
)
from pipeline.domain.capacity.samples import (
    MAX_FORECAST_DAYS,
    MAX_MAGNITUDE,
    SECONDS_PER_DAY,
    Point,
    finite_points,
)
from pipeline.domain.capacity.trend import (
    MIN_TREND_POINTS,
    MIN_TREND_R_SQUARED,
    MIN_TREND_SPAN_S,
    TrendAssessment,
    TrendDirection,
    assess_trend,
    drop_warmup,
)
from pipeline.domain.capacity.urgency import (
    URGENCY_CRITICAL_DAYS,
    URGENCY_WARNING_DAYS,
    Urgency,
    date_after,
    urgency,
)

__all__ = [
    "BoundedGrowth",
    "CAPACITY_WARNING_FRACTION",
    "CapacityOutlook",
    "ContainerUsage",
    "DAILY_PROFILE_MIN_SPAN_S",
    "DIRECTION_THRESHOLD_PERCENT_PER_DAY",
    "Direction",
    "DiskForecast",
    "IssueKind",
    "LEAK_MIN_DAILY_GROWTH_FRACTION",
    "LEAK_MIN_MONOTONICITY",
    "LEAK_MIN_POINTS",
    "LEAK_MIN_R_SQUARED",
    "LEAK_MIN_SPAN_S",
    "LEAK_MONOTONICITY_BUCKETS",
    "LIMIT_HEADROOM",
    "LeakAssessment",
    "LinearFit",
    "MAX_FORECAST_DAYS",
    "MAX_MAGNITUDE",
    "MEMORY_LIMIT_PRESSURE",
    "MIN_FIT_POINTS",
    "MIN_TREND_POINTS",
    "MIN_TREND_R_SQUARED",
    "MIN_TREND_SPAN_S",
    "OVER_PROVISIONED_RATIO",
    "Point",
    "REQUEST_HEADROOM",
    "RESTART_DROP_FRACTION",
    "ROLLING_MEAN_S",
    "ResourceTrend",
    "Rightsizing",
    "SCALE_OUT_HORIZON_DAYS",
    "SECONDS_PER_DAY",
    "Sizing",
    "TARGET_UTILISATION",
    "THROTTLING_FRACTION",
    "TREND_SIGNIFICANCE",
    "TrendAssessment",
    "TrendDirection",
    "TrendWord",
    "UNDER_PROVISIONED_RATIO",
    "URGENCY_CRITICAL_DAYS",
    "URGENCY_WARNING_DAYS",
    "Urgency",
    "UsageForecast",
    "WEEKLY_PROFILE_MIN_SPAN_S",
    "WorkloadIssue",
    "assess_memory_leak",
    "assess_trend",
    "bound_defects",
    "bounded_days_until",
    "capacity_outlook",
    "combined_trend",
    "crash_loop_issue",
    "daily_change_percent",
    "date_after",
    "days_until",
    "direction",
    "drop_warmup",
    "finite_points",
    "fit_line",
    "forecast_disk",
    "forecast_usage",
    "format_bytes",
    "format_cores",
    "history_coverage",
    "leak_issue",
    "monotonicity",
    "next_occurrence",
    "recommend",
    "resource_trend",
    "sizing",
    "split_at_restarts",
    "trend_confidence",
    "urgency",
    "usage_recommendation",
    "verdict",
    "whole_days",
]
