"""The reference model's first training shows how far it has come: on a log (stderr a pipe, as in a pod or CI)
JSON lines like every other log line, at its start, every tenth and its end; on a terminal (stderr a real pty)
one bar redrawn in place, and no log line for it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
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
    assert {line["logger_name"] for line in shown} == {"pipeline.progress"}
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
