"""What an operator sees when a start goes wrong, from the real `pipeline` command: `--version`; an invalid
environment variable is one line on stderr naming it, its value and its default (exit 2, no traceback); a port
in use is one `failed` line naming PORT (exit 1); an unreachable broker says which variable to fix, and no client
is left unclosed. Against the session's real broker where one is needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from pipeline import __version__


def _pipeline(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, "HOST": "127.0.0.1", **env},
                          capture_output=True, text=True, timeout=120, check=False)


def _failed(stderr: str) -> dict[str, object]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return next(line for line in lines if line.get("event") == "failed")


def test_version() -> None:
    done = _pipeline("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"pipeline {__version__}"


def test_an_invalid_variable_is_one_line_naming_it() -> None:
    done = _pipeline("gateway", PORT="abc", KAFKA_SECURITY_PROTOCOL="TLS", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert "PORT='abc'" in line and "default (8080)" in line
    assert "KAFKA_SECURITY_PROTOCOL='TLS'" in line and "'SASL_SSL'" in line


def test_a_port_in_use_is_one_line_naming_port(kafka_bootstrap: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": f"clierr{port}."}
        assert _pipeline("topics", "apply", **env).returncode == 0
        done = _pipeline("gateway", PORT=str(port), **env)
    assert done.returncode == 1, done.stderr[-2000:]
    failed = _failed(done.stderr)
    assert f"cannot listen on 127.0.0.1:{port} (PORT, HOST)" in str(failed["error"])
    assert "Traceback" not in done.stderr


def test_an_unreachable_broker_names_the_variable_to_fix() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens on it once closed
    done = _pipeline("stage", "correlate", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", KAFKA_REQUEST_TIMEOUT_MS="3000")
    assert done.returncode == 1
    failed = _failed(done.stderr)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(failed["fix"]) and f"127.0.0.1:{port}" in str(failed["fix"])
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr


def test_without_the_ml_extra_the_model_commands_say_how_to_install_it() -> None:
    """scikit-learn made unimportable in the child (a stand-in for an install without `pipeline[ml]`)."""
    code = ("import sys; sys.modules['sklearn'] = None; from pipeline.cli import main; "
            "sys.exit(main(['ml', 'serve', '--port', '0']))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HOST": "127.0.0.1"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == ("pipeline: the reference ML model needs the `ml` extra (scikit-learn): "
                                   "pip install 'pipeline[ml]'")
