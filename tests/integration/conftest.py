"""Fixtures shared by the integration tests that read a real Prometheus.

Module scope on purpose: the generated history ends "now" when a module starts, and routes evaluate at
the current time like on a live cluster; Prometheus answers instant queries only up to 5 minutes past a
series' last sample, so each module gets its own history (a module may override `history`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.config import Settings
from pipeline.embedded.history import History, generate_history
from pipeline.embedded.prometheus import PrometheusServer


@pytest.fixture(scope="module")
def history() -> History:
    """The generated scenario cluster (shop: leaky + cart x2; payments: crashy + throttled), ending now."""
    return generate_history()


@pytest.fixture(scope="module")
def prom(history: History, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus serving `history`."""
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), history) as running:
        yield running


@pytest.fixture(scope="module")
async def prometheus(prom: PrometheusServer) -> AsyncIterator[PrometheusClient]:
    """The pipeline's client of `prom`."""
    client = PrometheusClient(Settings(prometheus_url=prom.url))
    yield client
    await client.aclose()
