"""`pipeline topics apply|list` and `pipeline schemas export --check` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from aiokafka.admin import NewTopic

from pipeline.bus import kafka
from pipeline.config import Settings


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_apply_creates_missing_topics_is_idempotent_and_reports_drift(settings: Settings) -> None:
    # An operator created `incidents` by hand with the wrong partition count.
    admin = kafka.admin(settings)
    await admin.start()
    await admin.create_topics([NewTopic(settings.topic("incidents"), 2, 1)])
    await admin.close()

    first = cli(settings, "topics", "apply")
    assert first.returncode == 2, first.stderr  # drift is an error for scripts
    lines = dict(line.split(maxsplit=1) for line in first.stdout.splitlines())
    assert lines[settings.topic("signals")] == "created"
    assert lines[settings.topic("correlate.state")] == "created"
    assert lines[settings.topic("incidents")].startswith("drift")
    assert "partitions: spec 6, cluster 2" in lines[settings.topic("incidents")]

    second = cli(settings, "topics", "apply")
    lines = dict(line.split(maxsplit=1) for line in second.stdout.splitlines())
    assert lines[settings.topic("signals")] == "ok"  # nothing created twice

    listing = cli(settings, "topics", "list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert "partitions=6" in rows[settings.topic("signals")]
    assert "high_water=[0, 0, 0, 0, 0, 0]" in rows[settings.topic("signals")]
    assert "partitions=2" in rows[settings.topic("incidents")]


def test_schemas_check_passes_on_the_committed_files(settings: Settings) -> None:
    result = cli(settings, "schemas", "export", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
