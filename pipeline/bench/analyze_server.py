"""The server side of `pipeline bench analyze`, run as its own process so its CPU can be measured alone.

It serves two routes over the same Prometheus client and the same reference model:

* `POST /api/v1/anomalies/analyze`: the gateway's real route (`pipeline.gateway.anomalies`);
* `POST /bench/anchor/analyze`: the anchor (Go) engine's approach reproduced as the baseline (R19 and §3
  of the anchor contract): per base metric an instant query for the value, then four `[5m:]` subqueries
  and two `offset` queries (which Prometheus rejects), all sequential; a metric whose value query finds
  nothing falls back to defaults without further queries; then the three enriched-signal queries and one
  KServe predict call with the 45 values, scored by the engine's weighted sum of the current values.

`GET /bench/stats` returns the Prometheus queries issued so far by each route.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.adapters.prometheus import PrometheusClient, PrometheusError
from pipeline.adapters.scorer import ScoringUnavailable, scorer_from_settings
from pipeline.api import errors
from pipeline.bench.enrich import ANCHOR_BASE
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES, Scope
from pipeline.gateway.anomalies import router as anomalies_router
from pipeline.web.server import server

_DEFAULTS = (0.5, 0.5, 0.1, 0.3, 0.7, 0.5, 0.5, 0.0, 0.0)
_WEIGHTS = (0.2, 0.2, 0.2, 0.25, 0.15)


def anchor_base_queries(scope: Scope) -> list[str]:
    matchers = ",".join(scope.pod_matchers())
    return [t.format(s=f",{matchers}" if matchers else "", s0=matchers) for t in ANCHOR_BASE.values()]


def anchor_enriched_queries(scope: Scope) -> list[str]:
    matchers = "".join(f",{m}" for m in scope.pod_matchers())
    return [
        f'sum(rate(container_cpu_cfs_throttled_seconds_total{{container!=""{matchers}}}[5m])) / '
        f'sum(rate(container_cpu_cfs_periods_total{{container!=""{matchers}}}[5m]))',
        'sum(rate(container_http_requests_total{status=~"5.."}[5m])) / sum(rate(container_http_requests_total[5m]))',
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[5m])) by (le))",
    ]


class AnchorAnalysis:
    """The baseline: the engine's sequential instant queries, first series only, defaults on failure."""

    def __init__(self, prometheus: PrometheusClient, scorer: Any) -> None:
        self.prometheus = prometheus
        self.scorer = scorer
        self.queries = 0

    async def _first(self, expr: str, at: float) -> float | None:
        self.queries += 1
        try:
            series = await self.prometheus.query(expr, at)
        except PrometheusError:
            return None
        return series[0].last if series else None

    async def analyze(self, body: dict[str, Any]) -> dict[str, Any]:
        scope = Scope(namespace=body.get("namespace"), deployment=body.get("deployment"), pod=body.get("pod"))
        at = time.time()
        values: list[float] = []
        for base in anchor_base_queries(scope):
            value = await self._first(base, at)
            if value is None:
                values.extend(_DEFAULTS)
                continue
            derived = [await self._first(f"{fn}(({base})[5m:])", at)
                       for fn in ("avg_over_time", "stddev_over_time", "min_over_time", "max_over_time")]
            lags = [await self._first(f"({base}) offset {m}", at) for m in ("1m", "5m")]
            mean, std, low, high = (d if d is not None else (0.0 if i == 1 else value) for i, d in enumerate(derived))
            lag_1, lag_5 = (lag if lag is not None else value for lag in lags)
            diff = value - lag_1
            values.extend((value, mean, std, low, high, lag_1, lag_5, diff, diff / lag_1 if lag_1 else 0.0))
        enriched = [await self._first(q, at) for q in anchor_enriched_queries(scope)]
        try:
            verdict = await self.scorer.score(values)
            anomalous = verdict.prediction == -1
        except ScoringUnavailable:
            anomalous = False
        current = [values[i * 9] for i in range(5)]
        score = round(min(1.0, max(0.0, sum(w * v for w, v in zip(_WEIGHTS, current, strict=True)))), 2)
        now = datetime.now(UTC).isoformat()
        anomalies = [{"timestamp": now, "severity": "critical" if score >= 0.9 else "warning" if score >= 0.7 else "info",
                      "anomaly_score": score, "confidence": 0.87,
                      "metrics": dict(zip(ANCHOR_BASE, current, strict=True))}] if anomalous and score >= 0.7 else []
        out: dict[str, Any] = {
            "status": "success", "time_range": body.get("time_range", "1h"), "anomalies_detected": len(anomalies),
            "anomalies": anomalies,
            "summary": {"max_score": score, "average_score": statistics.fmean([score]), "metrics_analyzed": 5,
                        "features_generated": len(FEATURE_NAMES)},
            "features": {"total_features": len(FEATURE_NAMES), "feature_names": list(FEATURE_NAMES)},
        }
        if enriched[0] is not None:
            out["enriched_signals"] = {"cpu_throttle_rate": enriched[0], "throttling_detected": enriched[0] > 0.25}
        return out


def build(prometheus_url: str, ml_url: str) -> FastAPI:
    settings = Settings(prometheus_url=prometheus_url, embedded_ml_url=ml_url)
    prometheus = PrometheusClient(settings)
    baseline_client = PrometheusClient(settings.model_copy(update={"prometheus_retry_attempts": 1}))
    scorer = scorer_from_settings(settings, environ={})
    anchor = AnchorAnalysis(baseline_client, scorer)
    app = FastAPI()
    errors.install(app)
    app.include_router(anomalies_router(settings, prometheus, scorer))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bench/anchor/analyze")
    async def anchor_analyze(request: Request) -> JSONResponse:
        return JSONResponse(await anchor.analyze(await request.json()))

    @app.get("/bench/stats")
    async def stats() -> dict[str, int]:
        return {"ours": prometheus.queries, "anchor": anchor.queries}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--ml-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(server(build(args.prometheus, args.ml_url), "127.0.0.1", args.port).serve())


if __name__ == "__main__":
    main()
