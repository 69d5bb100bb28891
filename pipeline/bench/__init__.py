"""`pipeline bench ingest | e2e | stage | growth | startup | enrich | score | arbitrate | watch | remediate | analyze | readmodel | scale`: measurements against a baseline in the same run
(`rebuild` is the earlier name of `readmodel`)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["ingest", "e2e", "stage", "growth", "startup", "enrich", "score", "arbitrate", "watch",
                                     "remediate", "analyze", "readmodel", "scale", "rebuild", "all"])
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per variant")
    p.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (ingest, scale)")
    p.add_argument("--alerts-per-request", type=int, default=2)
    p.add_argument("--messages", type=int, default=50_000, help="records to process (stage, scale)")
    p.add_argument("--samples", type=int, default=300, help="alerts to time end to end (e2e)")
    p.add_argument("--pods", type=int, default=500, help="pods whose status changes at once (watch)")
    p.add_argument("--workflows", type=int, default=50, help="Deployments and dry-run workflows (remediate)")
    p.add_argument("--interval-ms", type=float, default=100.0, help="one decision every so often, steady (remediate)")
    p.add_argument("--sizes", default="1,100,1000,10000", help="alerts per incident, comma-separated (growth)")
    p.add_argument("--incidents", type=int, default=100_000, help="incidents in the history (readmodel)")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")


def main(args: argparse.Namespace) -> int:
    from pipeline.bench.harness import run

    return run(args)
