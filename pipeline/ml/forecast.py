"""``POST /api/v1/prediction/predict``: a least-squares line per series, extrapolated ``predict_ahead``.
Pure: no HTTP."""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import BaseModel, Field

from pipeline.ml.series import MetricSample, duration_s, group, iso, linear_fit, series_name

RISK_HIGH, RISK_MEDIUM = 0.9, 0.75  # for ratio series (every value in 0..1)


class PredictRequest(BaseModel):
    historical_metrics: list[MetricSample] = Field(min_length=1)
    predict_ahead: str = Field(default="1h", pattern=r"^[1-9][0-9]{0,5}[smhd]$")
    include_confidence: bool = True  # accepted; confidence is always returned



def forecast(request: PredictRequest) -> dict[str, Any]:
    """Per series: the least-squares line, ``predict_ahead`` past the last point.

    confidence = R² x min(1, points / 10) (0 for one point); trend = stable when R² < 0.3 or the line moves
    less than 1 % of the mean over the horizon; risk (ratio series only) from the predicted value.
    """
    ahead = duration_s(request.predict_ahead)
    predictions = []
    for key, points in group(request.historical_metrics).items():
        last_ts, last_value = points[-1]
        line = linear_fit(points)
        values = [v for _, v in points]
        if line is None:
            predicted, confidence_, trend = last_value, 0.0, "insufficient_data"
        else:
            predicted = line.intercept + line.slope * ahead
            confidence_ = line.r2 * min(1.0, len(points) / 10)
            change = line.slope * ahead
            moving = line.r2 >= 0.3 and abs(change) >= 0.01 * max(abs(statistics.fmean(values)), 1e-12)
            trend = ("increasing" if change > 0 else "decreasing") if moving else "stable"
        entry: dict[str, Any] = {
            "metric_name": series_name(key),
            "predicted_value": predicted,
            "confidence": confidence_,
            "timestamp": iso(last_ts + ahead),
            "trend": trend,
        }
        if all(0.0 <= v <= 1.0 for v in values):
            entry["risk"] = (
                "high" if predicted >= RISK_HIGH else "medium" if predicted >= RISK_MEDIUM else "low"
            )
        predictions.append(entry)
    overall = statistics.fmean(p["confidence"] for p in predictions)
    return {
        "predictions": predictions,
        "summary": {
            "time_range": request.predict_ahead,
            "metrics_count": len(predictions),
            "overall_confidence": overall,
        },
    }
