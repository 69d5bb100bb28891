"""`pipeline ml serve` as a subprocess on 127.0.0.1, for the benchmarks and the tests (restartable on the
same port, so an outage can be staged)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline.embedded.process import ServerProcess, free_port, new_workdir

READY_PATH = "/v1/models/anomaly-detector"


class ReferenceMLServer(ServerProcess):
    """The reference ML service in its own process; the first start on a new machine trains the model."""

    name = "reference ML service"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.dir = new_workdir(workdir, "ml-")
        self.log_path = self.dir / "ml.log"
        self.port = free_port()

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", "ml", "serve", "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, timeout: float = 300) -> ReferenceMLServer:
        if not self.running:
            self._spawn()
            self._wait_ready(time.monotonic() + timeout, READY_PATH)
        return self
