"""The chart's optional audit component, rendered by the real `helm template`: off by default; on, one writer
(`pipeline stage audit`, one replica, Recreate) on a PersistentVolumeClaim, with every topic spec mounted and the
settings' own names and defaults."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "pipeline"


def _helm() -> str:
    """The helm scripts/setup builds into the cache (scripts/build-kube-apiserver.sh), else one on PATH."""
    cached = Settings().cache_dir / "helm-v3.16.4" / "helm"
    helm = str(cached) if cached.is_file() else shutil.which("helm")
    assert helm, f"helm (v3) not found at {cached} or on PATH: run scripts/setup"
    return helm


def _render(*sets: str) -> list[dict[str, Any]]:
    helm = _helm()
    args = [helm, "template", "rel", str(CHART), "--set", "kafka.bootstrapServers=kafka:9092"]
    for value in sets:
        args += ["--set", value]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _audit(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "audit"}


def test_the_audit_component_is_off_by_default() -> None:
    assert _audit(_render()) == {}


def test_enabled_it_is_one_writer_on_a_claim_with_every_topic_and_the_settings_defaults() -> None:
    objects = _audit(_render("audit.enabled=true", "audit.persistence.size=50Gi",
                             "audit.persistence.storageClass=fast"))
    assert set(objects) == {"Deployment", "PersistentVolumeClaim", "ConfigMap", "Service"}
    deployment, claim = objects["Deployment"], objects["PersistentVolumeClaim"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["pipeline"] and container["args"] == ["stage", "audit"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["audit-trail"] == env["AUDIT_DIR"] and mounts["audit-topics"] == env["TOPICS_DIR"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["audit-trail"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi" and claim["spec"]["storageClassName"] == "fast"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Every topic of the pipeline is audited: the specs are all mounted.
    assert set(objects["ConfigMap"]["data"]) == {p.name for p in (ROOT / "topics").glob("*.yaml")}
    # The chart's defaults are the app's, under the settings' own names.
    defaults = Settings()
    assert env["AUDIT_FILE_MAX_BYTES"] == str(defaults.audit_file_max_bytes)
    assert env["AUDIT_RETAIN_FILES"] == str(defaults.audit_retain_files)
    assert env["AUDIT_DEDUP_IDS"] == str(defaults.audit_dedup_ids)
    values = yaml.safe_load((CHART / "values.yaml").read_text())["audit"]
    assert values["enabled"] is False


def test_an_existing_claim_is_used_as_it_is_and_bad_values_are_refused() -> None:
    objects = _audit(_render("audit.enabled=true", "audit.persistence.existingClaim=evidence"))
    assert "PersistentVolumeClaim" not in objects
    volumes = {v["name"]: v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["audit-trail"]["persistentVolumeClaim"]["claimName"] == "evidence"
    done = subprocess.run([_helm(), "template", "rel", str(CHART), "--set",
                           "kafka.bootstrapServers=k:9092", "--set", "audit.enabled=true", "--set",
                           "audit.retainFiles=-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "audit.retainFiles" in done.stderr
