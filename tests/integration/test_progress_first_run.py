"""Slow first-run steps show how far they have come. The reference model's first training: on a log (stderr a
pipe, as in a pod or CI) JSON lines like every other log line, at its start, every tenth and its end; on a
terminal (stderr a real pty) one bar redrawn in place, and no log line for it. The Kafka jars from Maven Central:
the files Maven fetched, counted in JSON lines."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

TASK = "training the reference ML model"


def train(model_dir: Path, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "ml", "train", "--model-dir", str(model_dir)],
                            stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, "LOG_FORMAT": "json"})


def test_training_on_a_log_writes_json_progress_lines(tmp_path: Path) -> None:
    proc = train(tmp_path / "model", subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert json.loads(out)["model_dir"] == str(tmp_path / "model")
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]  # every line is JSON
    shown = [line for line in lines if line["event"] == TASK]
    assert shown[0]["done"] == 0 and shown[0]["percent"] == 0 and shown[0]["total"] == 5
    assert shown[-1]["finished"] is True and shown[-1]["percent"] == 100 and shown[-1]["detail"] == "fitting"
    percents = [line["percent"] for line in shown]
    assert percents == sorted(percents) and any(0 < p < 100 for p in percents)
    assert {line["logger"] for line in shown} == {"pipeline.progress"}
    assert any(line.get("detail", "").startswith("history 1/4: ") for line in shown)


def test_training_on_a_terminal_draws_a_bar(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal 120 columns wide
    try:
        proc = train(tmp_path / "model", follower)
    finally:
        os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed, the process has exited
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert proc.wait(timeout=300) == 0, drawn.decode(errors="replace")[-3000:]
    text = drawn.decode(errors="replace")
    frames = [frame for line in text.splitlines() for frame in line.split("\r") if frame.startswith(TASK)]
    assert len(frames) > 2, text[-3000:]  # redrawn in place as it went
    assert frames[-1].startswith(f"{TASK}: 100%") and "5/5" in frames[-1] and "fitting" in frames[-1]
    assert max(len(frame) for frame in frames) <= 120  # within the terminal's width
    assert f'"event": "{TASK}"' not in text


# jars of the broker's runtime closure that the test's local Maven repository lacks: Maven fetches exactly these
REFETCHED = ("jopt-simple-5.0.4.jar", "lz4-java-1.8.0.jar", "argparse4j-0.7.0.jar")


def test_resolving_the_kafka_jars_logs_the_files_maven_fetches(tmp_path: Path) -> None:
    """`ensure_kafka` into an empty cache whose Maven repository lacks three jars (a copy of the machine's, so only
    those come from Maven Central): a JSON line at the start and at the end, counting the files fetched."""
    shared = Path(os.environ["PIPELINE_CACHE_DIR"]) / "m2"
    assert shared.is_dir(), f"{shared} missing: run scripts/setup (it resolves the Kafka jars once)"
    cache = tmp_path / "cache"
    shutil.copytree(shared, cache / "m2")
    removed = []
    for name in REFETCHED:
        [jar] = (cache / "m2").rglob(name)
        removed.append(jar.stat().st_size)
        jar.unlink()
        jar.with_name(name + ".sha1").unlink(missing_ok=True)
    script = ("from pathlib import Path; from pipeline.observability import configure_logging; "
              "from pipeline.embedded.kafka import ensure_kafka; configure_logging(); "
              f"print(ensure_kafka(cache_dir=Path({str(cache)!r})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()) == cache / "kafka" / "4.1.1" / "libs"
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # every line is JSON
    shown = [line for line in lines if line["event"].startswith("resolving Apache Kafka 4.1.1 jars from Maven Central")]
    assert shown[0]["done"] == 0 and shown[0]["total"] is None and "percent" not in shown[0]
    last = shown[-1]
    assert last["finished"] is True and (last["done"], last["unit"]) == (len(REFETCHED), "files")
    assert last["detail"] == f"{sum(removed) / 1e6:.1f} MB"
    assert any(line["event"].startswith("Kafka 4.1.1 ready: ") for line in lines)
