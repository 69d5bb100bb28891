"""The broker-side benchmarks run to completion on small inputs and report their ratio to the baseline
measured in the same run (the figures themselves are not checked here: `pipeline bench` is where they are
measured; this keeps the commands from rotting between measurements)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [
    ["ingest", "--seconds", "1", "--clients", "4"],
    ["stage", "--messages", "400"],
    ["arbitrate", "--messages", "300", "--seconds", "1"],
    ["growth", "--messages", "200", "--sizes", "1,10"],
    ["readmodel", "--incidents", "300"],
    ["scale", "--seconds", "1", "--messages", "400", "--clients", "8"],
])
def test_the_bench_runs_and_reports_a_ratio(kafka_bootstrap: str, args: list[str]) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", *args, "--json"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ratios = [row["ratio"] for row in rows if row.get("ratio") is not None]
    assert rows and ratios, done.stdout
    assert all(math.isfinite(r) and r > 0 for r in ratios), rows
    if args[0] == "ingest":  # every ceiling ran beside the webhook, and no webhook failed
        names = [row["name"] for row in rows]
        assert "HTTP server + raw produce (stack ceiling), 4 clients" in names, names
        assert [row["failed"] for row in rows if row["name"] == "webhook, 4 clients"] == [0], rows
    if args[0] == "scale":  # every count of both ran: 1, 2 and 4 processes of ingest and of correlate
        assert [row["name"] for row in rows] == [f"{part} x {n}" for part in ("ingest", "correlate") for n in (1, 2, 4)]
        assert all(row.get("failed", 0) == 0 for row in rows), rows
    if args[0] == "readmodel":  # the gateway rebuilt from snapshots answers what the one that read the log does
        assert [row["identical"] for row in rows if row["name"].startswith("answers")] == ["yes"], rows
