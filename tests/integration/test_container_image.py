"""The container image as an operator gets it: `scripts/build-image` builds it here from the Containerfile (no
registry, no Docker daemon; the Debian base it makes once is reused from ~/.cache/pipeline/image), and podman
runs it with runc, against the session's real Kafka broker where a command needs one.

This module takes 1.5 to 2 min on a warm cache (the base, the wheelhouse and the dependency layers reused; the
code changed), about 4.5 min on an empty one (docs/deploy.md, "The image")."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline import __version__
from pipeline.adapters.rules import load_rules
from pipeline.bus.topics import load_specs
from tests.support import INSTALLED_PACKAGE_PROBE, repository_data

ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
BUILD_TIMEOUT_S = 1500  # an empty cache: the base (mmdebstrap), every wheel downloaded, both variants

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)


@dataclass(frozen=True)
class Image:
    name: str  # in the local container storage, e.g. localhost/pipeline:0.1.0
    archive: Path | None  # the OCI archive the script wrote


def as_root(*args: str | Path) -> list[str]:
    """buildah's and podman's storage is root's (/var/lib/containers)."""
    return [*([] if os.geteuid() == 0 else ["sudo", "-n"]), *(str(a) for a in args)]


def build(*flags: str, archive: Path | None) -> Image:
    output = ["--out", str(archive)] if archive else ["--no-archive"]
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image"), *flags, *output],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    assert done.returncode == 0, f"scripts/build-image {' '.join(flags)} exited {done.returncode}:\n{done.stderr}"
    return Image(done.stdout.strip().splitlines()[-1], archive)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build(archive=tmp_path_factory.mktemp("image") / "pipeline.oci.tar")


@pytest.fixture(scope="module")
def ml_image() -> Image:
    return build("--ml", archive=None)  # the same export as the plain image's: not checked twice


def limit(kind: int, at_most: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return at_most if hard == resource.RLIM_INFINITY else min(hard, at_most)


def podman_run(image: str, *args: str, options: tuple[str, ...] = ()) -> list[str]:
    """`podman run` with runc (crun cannot run containers where cgroups are in hybrid mode) and limits no higher
    than this process's own (podman's default file limit is above what an unprivileged host allows)."""
    return as_root(
        "podman", "run", "--rm", "--runtime", "runc",
        "--ulimit", f"nofile={limit(resource.RLIMIT_NOFILE, 65536)}",
        "--ulimit", f"nproc={limit(resource.RLIMIT_NPROC, 4096)}",
        *options, image, *args,
    )


def run(image: str, *args: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(podman_run(image, *args, options=options), capture_output=True, text=True, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# ================================================================================================ the image
def test_the_image_runs_pipeline_as_a_non_root_user_even_read_only_and_under_any_uid(image: Image) -> None:
    assert ok(run(image.name, "--version")).strip() == f"pipeline {__version__}"
    assert ok(run(image.name, "-u", options=("--entrypoint", "id"))).strip() == "10001"
    # As the chart runs it (readOnlyRootFilesystem), and as OpenShift does (an arbitrary UID, group 0).
    read_only = run(image.name, "--version", options=("--read-only", "--user", "1000740000:0"))
    assert ok(read_only).strip() == f"pipeline {__version__}"


def test_the_installed_package_finds_every_topic_spec_and_the_rules_it_shipped(image: Image) -> None:
    found = json.loads(ok(run(image.name, "-c", INSTALLED_PACKAGE_PROBE, options=("--entrypoint", "python"))))
    package = f"{SITE_PACKAGES}/pipeline"
    assert found["package"] == package
    assert found["topics_dir"] == f"{package}/topics"
    assert found["rules_path"] == f"{package}/rules/remediation.yaml"
    assert found["topics"] == sorted(spec.name for spec in load_specs(ROOT / "topics"))
    assert found["actions"] == sorted(load_rules(ROOT / "rules" / "remediation.yaml").actions)
    assert found["data"] == repository_data(), "the wheel in the image does not carry topics/ and rules/ as they are"


def test_the_image_applies_and_lists_its_topics_on_a_real_broker(image: Image, kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    options = ("--network", "host", "-e", f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}", "-e", f"TOPIC_PREFIX={prefix}")
    specs = load_specs(ROOT / "topics")

    applied = ok(run(image.name, "topics", "apply", options=options))
    assert dict(line.split(maxsplit=1) for line in applied.splitlines()) == {
        f"{prefix}{spec.name}": "created" for spec in specs
    }
    listed = ok(run(image.name, "topics", "list", options=options))
    rows = {line.split()[0]: line for line in listed.splitlines()}
    for spec in specs:
        assert f"partitions={spec.partitions}" in rows[f"{prefix}{spec.name}"], listed


def test_without_the_ml_extra_pipeline_ml_says_how_to_install_it(image: Image) -> None:
    done = run(image.name, "ml", "serve")
    assert done.returncode == 2, done.stderr
    assert "pip install 'pipeline[ml]'" in done.stderr


def test_the_archive_carries_the_name_the_chart_deploys_and_the_image_metadata(image: Image) -> None:
    assert image.archive is not None
    with tarfile.open(image.archive) as archive:
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
    (manifest,) = index["manifests"]
    # The chart's default image (values image.repository, tag appVersion: tests/unit/test_image_version.py).
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == f"pipeline:{__version__}"

    inspected = json.loads(ok(subprocess.run(as_root("skopeo", "inspect", f"oci-archive:{image.archive}"),
                                             capture_output=True, text=True, timeout=120)))
    labels = inspected["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head
    config = json.loads(ok(subprocess.run(as_root("skopeo", "inspect", "--config", f"oci-archive:{image.archive}"),
                                          capture_output=True, text=True, timeout=120)))["config"]
    assert config["User"] == "10001:10001" and config["Entrypoint"] == ["pipeline"]

    # The archive alone is a runnable image (as it is after a copy to another machine).
    assert ok(run(f"oci-archive:{image.archive}", "--version")).strip() == f"pipeline {__version__}"


# ============================================================================================== the ml variant
@pytest.fixture
def model_dir(tmp_path: Path) -> Iterator[Path]:
    """The reference model trained here (cached in PIPELINE_CACHE_DIR), copied where the container user reads it."""
    from pipeline.ml.model import default_model_dir, train_or_load

    train_or_load()
    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(), copy)
    yield copy


async def test_the_ml_image_serves_the_reference_model_trained_here(ml_image: Image, model_dir: Path) -> None:
    from pipeline.ml.model import ReferenceModel

    model = ReferenceModel.load(model_dir)
    name = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(
        podman_run(ml_image.name, "ml", "serve", "--port", "0", "--model-dir", "/model",
                   options=("--name", name, "--network", "host", "-v", f"{model_dir}:/model:ro")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), timeout=120)
        assert line, f"ml serve exited {server.wait()}: {server.stderr.read() if server.stderr else ''}"
        ready = json.loads(line)
        assert ready["model_version"] == model.version
        vectors: list[list[float | None]] = [model.medians.tolist(), [float(i) for i in range(45)]]
        async with httpx.AsyncClient(base_url=ready["url"], timeout=30.0, trust_env=False) as client:
            response = await client.post("/v1/models/anomaly-detector:predict", json={"instances": vectors})
        assert response.status_code == 200, response.text
        answer = response.json()
        here = model.predict(vectors)  # the same model with the same scikit-learn here: the same answers
        assert answer["predictions"] == [p.prediction for p in here]
        assert answer["scores"] == pytest.approx([p.score for p in here])
    finally:
        subprocess.run(as_root("podman", "stop", "--time", "10", name), capture_output=True, timeout=60)
        server.wait(timeout=30)
