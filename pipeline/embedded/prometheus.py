"""A real Prometheus (Debian ``prometheus`` 2.42) holding generated history, for integration tests.

It stands in for Thanos Querier / the in-cluster Prometheus: same HTTP query API. The history comes from
:func:`pipeline.embedded.history.generate_history`; it is written as OpenMetrics and imported with
``promtool tsdb create-blocks-from openmetrics`` before Prometheus starts. No scrape targets are
configured, so the imported samples are the only data.

Install the binaries with ``scripts/install-components.sh``. Tests never skip when they are missing:
:func:`require_binary` raises :class:`ComponentMissingError` so the test fails with instructions.

Usage::

    history = generate_history()            # ends at "now" rounded down to 15 s
    with PrometheusServer(tmp_path, history) as prom:
        httpx.get(f"{prom.url}/api/v1/query", params={"query": "up", "time": history.end})
        prom.stop()    # outage: connections are refused
        prom.start()   # same data, same port

Instant queries only see a series for 5 minutes (``--query.lookback-delta``) after its last sample, i.e.
up to and including ``history.end + 300``: pass ``time=history.end`` (or a time within that window), or generate the
history right before the test with ``end`` = now.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from pipeline.embedded.history import History
from pipeline.embedded.process import (
    ComponentMissingError,
    ServerProcess,
    free_port,
    new_workdir,
    require_binary,
)

__all__ = ["PrometheusServer", "ComponentMissingError", "require_binary", "free_port"]


class PrometheusServer(ServerProcess):
    """A real Prometheus subprocess on 127.0.0.1 serving ``history`` (imported once, kept across restarts).

    ``timings`` (seconds): ``generate_s`` (from the history), ``write_s`` (OpenMetrics file),
    ``import_s`` (promtool), ``start_s`` (first start: spawn → ``/-/ready`` and the imported series
    visible), ``ready_s`` (first start: spawn → ``/-/ready``), ``restart_s`` (the latest later start).
    """

    max_block_duration = "24h"
    retention = "30d"
    log_level = "info"

    name = "prometheus"

    def __init__(self, workdir: Path, history: History) -> None:
        super().__init__()
        self.binary = require_binary("prometheus")
        self.promtool_binary = require_binary("promtool")
        self.history = history
        self.dir = new_workdir(workdir, "prometheus-")
        self.data_path = self.dir / "data"
        self.openmetrics_path = self.dir / "history.om.txt"
        self.config_path = self.dir / "prometheus.yml"
        self.log_path = self.dir / "prometheus.log"
        self.import_log_path = self.dir / "promtool-import.log"
        self.port = free_port()
        self.timings: dict[str, float] = {"generate_s": history.generate_s}
        self._imported = False
        self._started_once = False
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        """No scrape targets: the imported history is the only data."""
        return {
            "global": {"scrape_interval": f"{self.history.step_s}s", "evaluation_interval": "1m"},
            "scrape_configs": [],
        }

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_path}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            f"--log.level={self.log_level}",
        ]

    # ------------------------------------------------------------------ import
    def import_history(self) -> None:
        """Write the OpenMetrics file and turn it into TSDB blocks in ``data_path`` (once)."""
        if self._imported:
            return
        t0 = time.perf_counter()
        self.openmetrics_path.write_text(self.history.openmetrics)
        self.timings["write_s"] = time.perf_counter() - t0
        self.data_path.mkdir(parents=True, exist_ok=True)
        argv = [
            self.promtool_binary,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            f"--max-block-duration={self.max_block_duration}",
            str(self.openmetrics_path),
            str(self.data_path),
        ]
        t0 = time.perf_counter()
        with open(self.import_log_path, "wb") as log:
            log.write(f"=== {' '.join(argv)}\n".encode())
            log.flush()
            rc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                timeout=300,
            ).returncode
        self.timings["import_s"] = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(
                f"promtool import exited with {rc} (log {self.import_log_path}):\n"
                f"{self.import_log_path.read_text(errors='replace')[-4000:]}"
            )
        self._imported = True

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60) -> PrometheusServer:
        """Import (first time only), start the process, and wait until ``/-/ready`` answers 200 and an
        instant query at ``history.end`` sees every imported series. A restart keeps the port."""
        if self.running:
            return self
        self.import_history()
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        for attempt in range(5):
            if attempt and not self._started_once:
                self.port = free_port()  # lost the race for the port: try another one
                self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            self._spawn()
            try:
                self._wait_ready(deadline)
                ready = time.perf_counter() - t0
                self._wait_data(deadline)
            except RuntimeError:
                if self._died_on_port() and attempt < 4:
                    if self._started_once:
                        time.sleep(0.5)  # the port must stay the same: wait for it to be released
                    continue
                raise
            if self._started_once:
                self.timings["restart_s"] = time.perf_counter() - t0
            else:
                self.timings["ready_s"] = ready
                self.timings["start_s"] = time.perf_counter() - t0
                self._started_once = True
            return self
        raise AssertionError("unreachable")

    def _wait_data(self, deadline: float) -> None:
        """Every generated series has a sample at ``history.end``: wait until all of them are visible."""
        expected = len(self.history.samples)
        seen: Any = None
        with httpx.Client(timeout=5.0, trust_env=False) as probe:
            while True:
                self._check_alive()
                try:
                    resp = probe.get(
                        f"{self.url}/api/v1/query",
                        params={"query": 'count({__name__=~".+"})', "time": self.history.end},
                    )
                    seen = resp.json()["data"]["result"] if resp.status_code == 200 else resp.text
                    if isinstance(seen, list) and seen and int(float(seen[0]["value"][1])) >= expected:
                        return
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"prometheus at {self.url} does not show the {expected} imported series at "
                        f"{self.history.end} (last answer {seen!r}; log {self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    # ------------------------------------------------------------------ HTTP API helpers (sync)
    def _data(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.get(path, params=params)
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"GET {path} {params} -> {resp.status_code}: {resp.text}")
        data: dict[str, Any] = body["data"]
        return data

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """``/api/v1/query`` at ``at`` (default ``history.end``); returns ``data.result``."""
        at = self.history.end if at is None else at
        result: list[dict[str, Any]] = self._data("/api/v1/query", {"query": promql, "time": at})["result"]
        return result

    def query_range(
        self, promql: str, start: float | None = None, end: float | None = None, step: float | None = None
    ) -> list[dict[str, Any]]:
        """``/api/v1/query_range`` (defaults: the whole history at its step); returns ``data.result``."""
        result: list[dict[str, Any]] = self._data(
            "/api/v1/query_range",
            {
                "query": promql,
                "start": self.history.start if start is None else start,
                "end": self.history.end if end is None else end,
                "step": self.history.step_s if step is None else step,
            },
        )["result"]
        return result

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PrometheusServer {self.url} {state} dir={self.dir}>"
