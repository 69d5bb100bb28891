"""Every Deployment the chart renders (the real `helm template`) is probed, so a stuck or dead process is
restarted: the HTTP components on their API port, every other component on its metrics port's /healthz
(liveness) and /readyz (startup and readiness), which `pipeline stage …` serves (compose/health.py); and each
has a PodDisruptionBudget, so a drain takes its pods one at a time."""

from __future__ import annotations

from tests.unit.test_chart_audit import _render


def test_every_deployment_has_startup_liveness_and_readiness_probes() -> None:
    deployments = [o for o in _render() if o and o.get("kind") == "Deployment"]
    assert len(deployments) >= 10
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"] for p in container["ports"]}
        probes = {kind: container.get(f"{kind}Probe") for kind in ("startup", "liveness", "readiness")}
        assert all(probes.values()), (name, probes)
        paths = {kind: (p["httpGet"]["port"], p["httpGet"]["path"]) for kind, p in probes.items()}
        if "http" in ports:
            assert paths["liveness"] == ("http", "/health") and paths["readiness"] == ("http", "/api/v1/health")
        else:
            assert paths == {"startup": ("metrics", "/readyz"), "liveness": ("metrics", "/healthz"),
                             "readiness": ("metrics", "/readyz")}, name


def test_every_deployment_has_a_disruption_budget_selecting_its_pods() -> None:
    objects = [o for o in _render() if o]
    deployments = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Deployment"}
    budgets = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "PodDisruptionBudget"}
    assert set(budgets) == set(deployments)
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1  # a drain takes one pod at a time and is never blocked
        assert budget["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
    off = [o for o in _render("podDisruptionBudget.enabled=false") if o and o.get("kind") == "PodDisruptionBudget"]
    assert off == []
