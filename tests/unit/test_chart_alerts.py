"""The chart's PrometheusRule (the real `helm template`, prometheusRule.enabled) is valid for Prometheus itself:
`promtool check rules` on its groups finds every expression and template sound, and it has the alerts an
operator needs: a stage stuck, dead letters, a breaker open, lag growing, ingest refusing webhooks, and
decisions slower than the Python engine's runbook allows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.unit.test_chart_audit import _render


def test_the_alert_rules_pass_promtool_and_cover_what_an_operator_watches(tmp_path: Path) -> None:
    (rule,) = [o for o in _render("prometheusRule.enabled=true") if o and o.get("kind") == "PrometheusRule"]
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert set(alerts) == {"PipelineStageStuck", "PipelineRecordsDeadLettered", "PipelineCircuitBreakerOpen",
                           "PipelineConsumerLagGrowing", "PipelineIngestUnavailable", "PipelineResolutionSlow"}
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Prometheus's rule checker) not found: run scripts/setup"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in done.stdout + done.stderr
