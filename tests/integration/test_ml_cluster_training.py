"""`pipeline ml train --prometheus URL`: the reference model trained on a cluster's history pulled with
prometheus-api-client, against a real Prometheus serving the generated default history (ending now), then
served by `pipeline ml serve --model-dir`.

Nothing on a real cluster is labelled; the generated history is, so it shows the rules of
`pipeline.ml.cluster` pick exactly the (scope, time)s the generated labels call normal, and that the
vectors it learns from are the ones the enrich stage collects.

Needs the binaries from scripts/install-components.sh; fails (never skips) without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipeline.adapters.features import FeatureCollector
from pipeline.adapters.prometheus import PrometheusClient
from pipeline.config import Settings
from pipeline.embedded.history import History
from pipeline.embedded.process import free_port
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.ml import cluster
from pipeline.ml.model import MODEL_NAME, ReferenceModel
from pipeline.ml.training import WARMUP_S, is_anomalous, targets

SICK_PODS = (
    "shop/leaky-6c9d8-abcde",
    "payments/crashy-7f9c6d5b8-m4n7q",
    "payments/throttled-84c5d7f96-p2r5s",
)


@pytest.fixture(scope="module")
async def collector(prom: PrometheusServer) -> AsyncIterator[FeatureCollector]:
    client = PrometheusClient(Settings(prometheus_url=prom.url))
    yield FeatureCollector(client)
    await client.aclose()


def pipeline_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_the_rules_keep_exactly_the_normal_rows_with_the_enrich_stages_vectors(
    prom: PrometheusServer, history: History, collector: FeatureCollector
) -> None:
    data = cluster.collect(prom.url, since_s=3 * 3600, every_s=300, now=history.end)
    times = np.arange(data.start + WARMUP_S, data.end + 1, 300).tolist()
    kept: dict[str, set[float]] = {}
    for _, name, at in data.rows:
        kept.setdefault(name, set()).add(at)
    expected = {t.name: {at for at in times if not is_anomalous(history, t, at)} for t in targets()}
    assert kept == {
        name: ts for name, ts in expected.items() if ts
    }  # cart throughout, crashy before its loop
    assert data.scopes == {"pod": 5, "deployment": 4, "namespace": 2, "node": 2, "cluster": 1}
    assert data.skipped == {"pod": 2, "deployment": 2, "namespace": 2, "node": 2, "cluster": 1}
    by_name = {t.name: t for t in targets()}
    for i in range(0, len(data.rows), 9):
        _, name, at = data.rows[i]
        collected = await collector.collect(by_name[name].scope, at)
        assert data.vectors[i].tolist() == pytest.approx(collected.vector.values, rel=1e-12, abs=1e-15), (
            name,
            at,
        )


async def test_pipeline_ml_train_from_prometheus_writes_a_model_that_ml_serve_serves(
    prom: PrometheusServer, history: History, collector: FeatureCollector, tmp_path: Path
) -> None:
    model_dir = tmp_path / "from-prometheus"
    done = pipeline_cli(
        "ml", "train", "--prometheus", prom.url, "--since", "3h", "--model-dir", str(model_dir)
    )
    assert done.returncode == 0, done.stderr
    # progress on stderr: JSON log lines here (a bar on a terminal), the last one when all 5 scopes are collected
    progress = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    collecting = [p for p in progress if p["event"] == "collecting vectors"]
    assert (collecting[-1]["done"], collecting[-1]["total"], collecting[-1]["percent"]) == (5, 5, 100)
    assert collecting[-1]["finished"] is True
    metadata = json.loads((model_dir / "model.json").read_text())
    training = metadata["training"]
    assert training["source"] == "prometheus" and training["prometheus"] == prom.url
    assert set(training["rows_per_kind"]) == {"pod", "deployment"}  # no namespace, node or cluster is healthy
    assert set(training["rows_per_scope"]) == {
        "pod shop/cart-5c7d9f8b6-x2k8p",
        "pod shop/cart-5c7d9f8b6-q9w4z",
        "pod payments/crashy-7f9c6d5b8-m4n7q",
        "deployment shop/cart",
        "deployment payments/crashy",
    }
    assert training["missing_values"] == {}
    report = done.stdout
    assert f"trained {MODEL_NAME} {metadata['version']} on {prom.url}" in report
    assert "  namespace         0 rows  0/2 scopes" in report and "missing values: none" in report
    assert f"written to {model_dir}" in report

    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "ml",
            "serve",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert serve.stdout is not None
        started = json.loads(serve.stdout.readline())
        assert started["model_version"] == metadata["version"]  # served as trained: not retrained as stale
        by_name = {t.name: t for t in targets()}
        rows = [
            (await collector.collect(by_name[name].scope, history.end)).vector.values for name in SICK_PODS
        ]
        async with httpx.AsyncClient(base_url=started["url"], timeout=30.0, trust_env=False) as http:
            answer = (await http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": rows})).json()
        assert answer["model_version"] == metadata["version"]
        assert answer["predictions"] == [-1, -1, -1]  # leak, crash loop, throttling: never in its normal rows
        local = ReferenceModel.load(model_dir).predict(rows)
        assert answer["scores"] == pytest.approx([p.score for p in local], abs=1e-12)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert (model_dir / "model.json").read_text() == json.dumps(metadata, indent=2, sort_keys=True)


def test_nothing_is_written_when_prometheus_cannot_answer_or_holds_nothing_normal(
    prom: PrometheusServer, tmp_path: Path
) -> None:
    model_dir = tmp_path / "none"
    unreachable = pipeline_cli(
        "ml", "train", "--prometheus", f"http://127.0.0.1:{free_port()}", "--model-dir", str(model_dir)
    )
    assert (
        unreachable.returncode == 1 and "cannot reach Prometheus at http://127.0.0.1:" in unreachable.stderr
    )
    only_sick = pipeline_cli(
        "ml",
        "train",
        "--prometheus",
        prom.url,
        "--since",
        "1h",
        "--namespace",
        "payments",
        "--model-dir",
        str(model_dir),
    )  # the last hour of payments: the throttled pod throughout, crashy crash looping
    assert only_sick.returncode == 1 and "nothing to train on" in only_sick.stderr
    assert not model_dir.exists()
    early = pipeline_cli(
        "ml",
        "train",
        "--prometheus",
        prom.url,
        "--since",
        "3h",
        "--namespace",
        "payments",
        "--every",
        "1h",
        "--model-dir",
        str(model_dir),
    )  # crashy is normal before its loop; nodes and the cluster are left out with --namespace
    assert early.returncode == 0, early.stderr
    assert set(json.loads((model_dir / "model.json").read_text())["training"]["rows_per_scope"]) == {
        "pod payments/crashy-7f9c6d5b8-m4n7q",
        "deployment payments/crashy",
    }
    assert "  node" not in early.stdout and "  namespace         0 rows  0/1 scopes" in early.stdout
    bad = pipeline_cli(
        "ml", "train", "--prometheus", prom.url, "--since", "10m", "--model-dir", str(tmp_path / "x")
    )
    assert bad.returncode == 1 and "--since must be at least 20 minutes" in bad.stderr
    assert not (tmp_path / "x").exists()
    wrong = pipeline_cli("ml", "train", "--since", "3h")
    assert wrong.returncode != 0 and "need --prometheus URL" in wrong.stderr
