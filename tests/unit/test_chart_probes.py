"""Every Deployment the chart renders (the real `helm template`) is probed, so a stuck or dead process is
restarted: the HTTP components on their API port, every other component on its metrics port's /healthz
(liveness) and /readyz (startup and readiness), which `pipeline stage …` serves (compose/health.py)."""

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
