"""Shared by the embedded components (Kafka, Prometheus) and the tests' ones: binaries and ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

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


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (callers retry start on the small race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
