"""Logs during a broker outage: `pipeline stage correlate` (a real process) on its own real broker, which is
stopped and started again. Every line on stderr is one JSON object, whoever logged it (aiokafka included);
repeated warnings are bounded by the repeat window; the outage is one "unavailable" and one "recovered" line."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.embedded.kafka import LocalKafka
from tests.support import eventually

pytestmark = pytest.mark.timeout(300)

WINDOW_S = 2.0


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if line.strip()]


async def logged(path: Path, text: str) -> bool:
    return any(text in line for line in lines(path))


async def test_a_broker_outage_logs_json_with_bounded_repeats_and_one_line_per_state_change(
    settings: Settings, tmp_path: Path
) -> None:
    broker = LocalKafka(tmp_path / "own-kafka")  # this test's own broker: it is stopped mid-test
    bootstrap = await asyncio.to_thread(broker.start)
    own = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
    await apply(own)
    stderr = tmp_path / "correlate.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TOPIC_PREFIX": own.topic_prefix,
           "LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "LOG_REPEAT_WINDOW_S": str(WINDOW_S),
           "BROKER_WATCH_INTERVAL_S": "0.5", "METRICS_PORT": "0", "DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    pipeline = Path(sys.executable).with_name("pipeline")
    with stderr.open("w") as err:
        process = subprocess.Popen([str(pipeline), "stage", "correlate"], env=env, stderr=err,
                                   stdout=subprocess.DEVNULL)  # fmt: skip
    started = time.monotonic()
    try:
        await eventually(lambda: logged(stderr, '"event": "ready"'), timeout=120)
        await asyncio.to_thread(broker.stop)
        await eventually(lambda: logged(stderr, "broker unavailable since"), timeout=60)
        await asyncio.sleep(4 * WINDOW_S)  # the clients keep reconnecting meanwhile: what would flood
        await asyncio.to_thread(broker.start)
        await eventually(lambda: logged(stderr, "broker recovered after"), timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        await asyncio.to_thread(broker.stop)
    elapsed = time.monotonic() - started

    records = []
    for line in lines(stderr):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line[:300]}")
        assert isinstance(record, dict) and "event" in record and "level" in record, line
        records.append(record)
    assert any(r.get("logger", "").startswith("aiokafka") for r in records)  # theirs are JSON too

    # each logger + message at warning or above: at most one line per window (plus the first)
    def key(r: dict) -> tuple[str, str, str]:
        return (r.get("logger", ""), r["level"], re.sub(r"\d+", "N", str(r["event"])))

    repeated = Counter(key(r) for r in records if r["level"] in ("warning", "error", "critical"))
    bound = math.ceil(elapsed / WINDOW_S) + 1
    assert repeated and max(repeated.values()) <= bound, (bound, repeated.most_common(5))
    assert any(r.get("repeats_suppressed", 0) > 0 for r in records)  # there was a flood, and it was counted

    down = [r for r in records if str(r["event"]).startswith("broker unavailable since")]
    up = [r for r in records if str(r["event"]).startswith("broker recovered after")]
    assert len(down) == 1 and len(up) == 1, (down, up)
    assert records.index(down[0]) < records.index(up[0])
    assert up[0]["down_seconds"] > 0 and up[0]["since"] == down[0]["since"]
