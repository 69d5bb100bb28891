"""The Helm chart's copy of the remediation rules and its remediation defaults match the app's."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.adapters.rules import load_rules
from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "pipeline"


def test_helm_chart_carries_the_same_remediation_rules() -> None:
    """The chart mounts its own copy of rules/remediation.yaml; the copy must not drift."""
    copy = CHART / "files" / "rules" / "remediation.yaml"
    assert copy.is_file(), "run: cp rules/remediation.yaml deploy/helm/pipeline/files/rules/remediation.yaml"
    assert copy.read_text() == (ROOT / "rules" / "remediation.yaml").read_text(), (
        "run: cp rules/remediation.yaml deploy/helm/pipeline/files/rules/remediation.yaml"
    )
    load_rules(copy)


def test_helm_chart_remediation_defaults_are_the_app_defaults() -> None:
    """values.yaml's remediation block gives the settings' defaults, so the chart changes nothing by itself."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())["remediation"]
    settings = Settings()
    assert values["killSwitch"] == settings.remediation_kill_switch
    assert values["protectedNamespaces"] == settings.remediation_protected_namespaces
    assert values["cooldownSeconds"] == settings.remediation_cooldown_s
    assert values["namespaceBudget"] == settings.remediation_namespace_budget
    assert values["actionTimeoutSeconds"] == settings.remediation_action_timeout_s
    assert values["confidenceThreshold"] == settings.confidence_threshold
    assert values["decidedMemory"] == settings.remediation_decided_memory
    assert values["approval"] is None and settings.remediation_approval is None
    assert values["rules"] == ""
