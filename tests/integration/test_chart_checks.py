"""The Helm chart passes deploy/check-chart.sh in full: `helm lint --strict`, every values file and component
subset rendered with the expected objects and settings, and the rendered RBAC applied to a real kube-apiserver
with SubjectAccessReviews of what each component can and cannot do. helm comes from scripts/setup's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_chart_passes_its_checks() -> None:
    helm_dir = Settings().cache_dir / "helm-v3.16.4"
    assert (helm_dir / "helm").is_file(), f"helm not in {helm_dir}: run scripts/setup"
    env = {**os.environ, "PATH": f"{helm_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CHECK_CHART_REQUIRE_HELM": "1", "CHECK_CHART_REQUIRE_KUBE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", str(ROOT / "deploy" / "check-chart.sh")], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "chart OK" in done.stdout
