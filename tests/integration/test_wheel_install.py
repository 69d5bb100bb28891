"""The wheel built from the checkout carries the topic specs and the remediation rules, and an installed (not
editable) package finds them: what a container image, or anyone who runs `pip install pipeline`, gets.

The wheel is built offline with the environment's setuptools (the test extra) from a copy of the sources the
Containerfile copies, and installed into a fresh venv with `--no-deps`; its dependencies come from this
environment through a `.pth` file, so the package itself is only the wheel's (the checkout is not on the path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pipeline import __version__
from pipeline.adapters.rules import load_rules
from pipeline.bus.topics import load_specs
from tests.support import INSTALLED_PACKAGE_PROBE, repository_data

ROOT = Path(__file__).resolve().parents[2]
# What the Containerfile's build stage copies: the wheel is built from these alone.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "pipeline", "topics", "rules")


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command with neither the checkout nor this environment's package on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{' '.join(map(str, args))[:300]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():  # symlinks kept: pipeline/topics -> ../topics, as in a checkout
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
        "--check-build-dependencies", "--wheel-dir", dist, src, cwd=dist)
    (found,) = dist.glob("pipeline-*.whl")
    return found


def test_the_wheel_carries_every_topic_spec_and_the_rules(wheel: Path) -> None:
    assert wheel.name == f"pipeline-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        data = {name: archive.read(name) for name in archive.namelist()
                if name.startswith(("pipeline/topics/", "pipeline/rules/"))}
    expected = repository_data()
    assert sorted(data) == sorted(expected), "the wheel's data files differ from topics/ and rules/"
    for name, content in data.items():
        assert content == (ROOT / name.removeprefix("pipeline/")).read_bytes(), name


def test_installed_from_the_wheel_the_package_runs_and_loads_its_default_topics_and_rules(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=tmp_path)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # after the venv's own

    assert run(venv / "bin" / "pipeline", "--version", cwd=tmp_path).stdout.strip() == f"pipeline {__version__}"

    found = json.loads(run(python, "-c", INSTALLED_PACKAGE_PROBE, cwd=tmp_path).stdout)
    package = site / "pipeline"
    assert found["package"] == str(package), "the package was not imported from the wheel's install"
    assert found["topics_dir"] == str(package / "topics")
    assert found["rules_path"] == str(package / "rules" / "remediation.yaml")
    assert found["topics"] == sorted(spec.name for spec in load_specs(ROOT / "topics"))
    assert found["actions"] == sorted(load_rules(ROOT / "rules" / "remediation.yaml").actions)
    assert found["data"] == repository_data()
