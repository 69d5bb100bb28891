"""One version wherever the image is named: the package, pyproject.toml, the Containerfile's default version
label, and the chart's appVersion, which is its default image tag (`pipeline:<appVersion>`, what
scripts/build-image names the image)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from pipeline import __version__

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "pipeline"


def test_the_image_the_chart_deploys_by_default_is_the_one_built_from_this_version() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__
    default = re.search(r"^ARG VERSION=(\S+)$", (ROOT / "Containerfile").read_text(), re.MULTILINE)
    assert default is not None and default.group(1) == __version__, "the Containerfile's ARG VERSION"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    assert chart["appVersion"] == __version__, "Chart.yaml's appVersion is the default image tag"
    assert (values["repository"], values["tag"]) == ("pipeline", ""), "the name scripts/build-image gives the image"
