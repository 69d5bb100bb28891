"""Shared fixtures: one real Kafka broker for the session, unique topics per test, an in-process pipeline.

The broker is the project's own embedded Apache Kafka (`pipeline.embedded.kafka`), or the cluster named by
KAFKA_BOOTSTRAP_SERVERS. A component that cannot start fails the test with its log; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.embedded.kube import KubeAPIServer
from pipeline.embedded.kube_cluster import KubeCluster
from pipeline.embedded.process import free_port
from pipeline.observability import configure_logging
from tests.components.kafka import session_broker
from tests.components.kube import session_kube_apiserver, session_kube_cluster
from tests.support import PipelineUnderTest

configure_logging("WARNING")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker: external, testcontainers or embedded (see tests/components/kafka.py)."""
    with session_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    """The session's real kube-apiserver + etcd, started by the first test that asks (tests/components/kube.py)."""
    with session_kube_apiserver(tmp_path_factory.mktemp("kube")) as kube:
        yield kube


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The session's cluster with controllers (kcm, scheduler, kwok; audit log on), separate from
    `kube_apiserver`, started by the first test that asks (tests/components/kube.py)."""
    with session_kube_cluster(tmp_path_factory.mktemp("kube-cluster")) as cluster:
        yield cluster


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings with this test's own topics (a unique prefix) on the session broker, loopback only."""
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        host="127.0.0.1",
        port=free_port(),
        data_dir=tmp_path / "data",
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=500,
        ingest_produce_timeout_s=3.0,
        gateway_write_timeout_s=10.0,
        stage_batch_timeout_ms=20,
    )


@pytest.fixture
async def pipeline(settings: Settings) -> AsyncIterator[PipelineUnderTest]:
    """Ingest, correlate and the gateway in this process, as `pipeline run` wires them."""
    async with PipelineUnderTest(settings) as running:
        yield running


@pytest.fixture
async def http(pipeline: PipelineUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.url, timeout=15.0, trust_env=False) as client:
        yield client


def pytest_configure(config: Any) -> None:
    os.environ.setdefault("PIPELINE_CACHE_DIR", str(Path.home() / ".cache" / "pipeline"))
