"""LOG_FORMAT as a user meets it, on real `pipeline` processes: unset, a terminal gets the console renderer (in
colour unless NO_COLOR) and a pipe gets JSON lines; a chosen format is kept either way, and the console renderer
writes no colour codes into a pipe. Whatever ends a process or a thread, or warns through `warnings`, is one JSON
line too, its traceback in `exception`."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def _unreachable() -> str:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{free.getsockname()[1]}"  # nothing listens on it once closed


def _env(**env: str | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "NO_COLOR")}
    out.update(HOST="127.0.0.1", KAFKA_BOOTSTRAP_SERVERS=_unreachable(), KAFKA_REQUEST_TIMEOUT_MS="3000")
    for name, value in env.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def correlate_on_a_terminal(**env: str | None) -> list[str]:
    """`pipeline stage correlate` against a broker that is not there (one `failed` line, exit 1), its stderr a
    pseudo-terminal; the lines it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "stage", "correlate"], env=_env(**env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    data = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
        assert proc.wait(60) == 1, data.decode(errors="replace")[-2000:]
    return [line for line in data.decode(errors="replace").replace("\r\n", "\n").splitlines() if line.strip()]


def correlate_on_a_pipe(**env: str | None) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "stage", "correlate"], env=_env(**env),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if line.strip()]


def _json(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def test_unset_a_terminal_gets_the_console_renderer_in_colour() -> None:
    lines = correlate_on_a_terminal()
    failed = [line for line in lines if " failed " in COLOUR.sub("", line)]
    assert len(failed) == 1, lines
    assert "\x1b[" in failed[0]  # coloured: it is a terminal
    assert "KAFKA_BOOTSTRAP_SERVERS" in failed[0] and "[pipeline.compose.process]" in COLOUR.sub("", failed[0])
    assert all(_json(line) is None for line in lines), lines


def test_no_color_and_a_chosen_format_are_kept_on_a_terminal() -> None:
    plain = correlate_on_a_terminal(NO_COLOR="1")
    assert any(" failed " in line for line in plain) and not any("\x1b[" in line for line in plain), plain
    chosen = correlate_on_a_terminal(LOG_FORMAT="json")
    records = [_json(line) for line in chosen]
    assert records and all(r is not None for r in records), chosen
    assert [r["event"] for r in records if r is not None].count("failed") == 1


def test_unset_a_pipe_gets_json_and_the_console_renderer_writes_no_colour_codes_into_one() -> None:
    lines = correlate_on_a_pipe()
    records = [_json(line) for line in lines]
    assert records and all(r is not None and {"timestamp", "level", "logger", "event"} <= r.keys() for r in records), lines
    console = correlate_on_a_pipe(LOG_FORMAT="console")
    assert any(" failed " in line for line in console) and not any("\x1b[" in line for line in console), console


def test_an_uncaught_exception_a_dying_thread_and_a_warning_are_one_json_line_each() -> None:
    code = (
        "import threading, warnings\n"
        "from pipeline.compose.process import configure_logs\n"
        "from pipeline.config import load_settings\n"
        "configure_logs(load_settings())\n"
        "warnings.warn('a deprecated call', DeprecationWarning, stacklevel=1)\n"
        "worker = threading.Thread(target=lambda: 1 / 0, name='worker')\n"
        "worker.start(); worker.join()\n"
        "raise RuntimeError('the end')\n"
    )
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], env=_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    records = [_json(line) for line in done.stderr.splitlines() if line.strip()]
    assert len(records) == 3 and all(r is not None for r in records), done.stderr
    warning, thread, crash = (r for r in records if r is not None)
    assert warning["logger"] == "py.warnings" and "a deprecated call" in warning["event"]
    assert thread["level"] == "error" and thread["thread"] == "worker"
    assert "ZeroDivisionError" in thread["exception"] and "Traceback" in thread["exception"]
    assert crash["level"] == "critical" and crash["event"] == "uncaught exception"
    assert crash["exception"].startswith("Traceback") and crash["exception"].endswith("RuntimeError: the end")
