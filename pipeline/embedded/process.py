"""Shared by the embedded components (Kafka, Prometheus) and the tests' ones: binaries and ports."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self

import httpx

INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-components.sh"

# Debian installs Alertmanager as `prometheus-alertmanager`; upstream tarballs call it `alertmanager`.
_BINARY_ALIASES: dict[str, tuple[str, ...]] = {
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "prometheus-alertmanager": ("prometheus-alertmanager", "alertmanager"),
}


class ComponentMissingError(RuntimeError):
    """A real component binary is not installed. Run scripts/install-components.sh."""


def require_binary(name: str) -> str:
    """Return the absolute path of ``name`` (or a known alias) or raise ComponentMissingError."""
    for candidate in _BINARY_ALIASES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    tried = " or ".join(repr(c) for c in _BINARY_ALIASES.get(name, (name,)))
    raise ComponentMissingError(
        f"{tried} not found on PATH. Install the real components with:\n"
        f"    bash {INSTALL_SCRIPT}\n"
        "(as root, or as a user with sudo; it installs Debian's prometheus and prometheus-alertmanager)."
    )


def new_workdir(parent: str | Path, prefix: str) -> Path:
    """A fresh directory for one server instance under `parent` (created if needed)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (callers retry start on the small race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, wait `grace` seconds, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class ServerProcess:
    """A real server binary run as a subprocess on 127.0.0.1: spawn, readiness, log tail, stop.

    Subclasses set `name`, `dir`, `log_path`, `port` and give `_argv()`. Output goes to `log_path`
    (never a pipe); `log_tail()` shows the current run's error lines first (logfmt `level=error|fatal`).
    """

    name = "server"
    dir: Path
    log_path: Path
    port: int

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._finalizer: weakref.finalize[..., None] | None = None
        self._client: httpx.Client | None = None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n=== starting: {' '.join(self._argv())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the parent, which stops us
            )
        # Kill the child even if the caller forgets stop() (runs at garbage collection or interpreter exit).
        self._finalizer = weakref.finalize(self, terminate, self._proc, 5.0)  # type: ignore[arg-type]

    def _check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self._proc.returncode} before becoming ready "
                f"(log {self.log_path}):\n{self.log_tail()}"
            )

    def _wait_ready(self, deadline: float, path: str = "/-/ready") -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as probe:
            while True:
                self._check_alive()
                try:
                    if probe.get(f"{self.url}{path}").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready at {self.url} in time (log {self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def _died_on_port(self) -> bool:
        """After a failed start: did the process exit because its port was taken?"""
        died = self._proc is not None and self._proc.poll() is not None
        self.stop()
        return died and "address already in use" in self.log_tail().lower()

    @property
    def client(self) -> httpx.Client:
        """A synchronous client for the server's HTTP API."""
        if not self.running:
            raise RuntimeError(f"{self.name} is not running (log {self.log_path}):\n{self.log_tail()}")
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30.0, trust_env=False)
        return self._client

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None:
            terminate(self._proc)
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            self._proc = None

    def start(self, timeout: float = 60) -> Self:
        raise NotImplementedError

    def _spawn_until_ready(self, deadline: float, path: str | None = None, *,
                           on_port_lost: Callable[[], None], attempts: int = 3) -> None:
        """Spawn and wait until ready. When the process died because its port was taken meanwhile (the race
        between `free_port()` and its bind), `on_port_lost` picks new ports and it is tried again."""
        for attempt in range(attempts):
            if attempt:
                on_port_lost()
            self._spawn()
            try:
                if path is None:
                    self._wait_ready(deadline)
                else:
                    self._wait_ready(deadline, path)
                return
            except RuntimeError:
                if self._died_on_port() and attempt < attempts - 1:
                    continue
                raise

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # What an error line looks like in this server's log (logfmt by default).
    error_line: ClassVar[re.Pattern[str]] = re.compile(r"level=(error|fatal)")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the current run's log, preceded by its (last 20) earlier error lines."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "<no log>"
        all_lines = text.splitlines()
        tail = all_lines[-lines:]
        head = [ln for ln in all_lines[:-lines] if self.error_line.search(ln)][-20:]
        return "\n".join([*head, "..."] if head else []) + ("\n" if head else "") + "\n".join(tail)
