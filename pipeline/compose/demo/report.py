"""What the demo prints once its story is told: where to look, with the real ids."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.compose.demo.scenario import BUILD_HINT
from pipeline.embedded.history import (
    CRASHY_NAMESPACE,
    LEAKY_NAMESPACE,
    LEAKY_POD,
    THROTTLED_NAMESPACE,
)

# --- where to look -------------------------------------------------------------------------------------------------


@dataclass
class Findings:
    """What the script found: the ids and states the "where to look" text names."""

    url: str
    seconds: float
    prometheus_url: str
    history_until: datetime
    bootstrap: str
    data_dir: Path
    temporary: bool
    kubeconfig: str = ""  # empty: no cluster
    incident: dict[str, Any] = field(default_factory=dict)  # the crash loop's
    workflow: dict[str, Any] = field(default_factory=dict)  # its workflow
    waiting: dict[str, Any] = field(default_factory=dict)  # the anomaly report's (awaiting approval)
    anomaly_id: str = ""
    leaky_pod: str = LEAKY_POD  # its name in the cluster, when there is one
    incidents: int = 0
    completed: int = 0
    decisions: int = 0
    token: bool = False  # API_TOKEN is set: write routes need it


def _get(url: str) -> str:
    return f"curl -s '{url}'"


def _post(url: str, body: str | None = None, token: bool = False) -> str:
    auth = ' -H "Authorization: Bearer $API_TOKEN"' if token else ""
    data = f" -H 'Content-Type: application/json' -d '{body}'" if body is not None else ""
    return f"curl -s -X POST '{url}'{auth}{data}"


def where_to_look(f: Findings) -> str:
    """The block printed once the story has played: every route with the demo's real ids, one command a line."""
    u, api = f.url, f"{f.url}/api/v1"
    incident, workflow, waiting = f.incident, f.workflow, f.waiting
    lines = [
        "",
        f"== pipeline demo: ready in {f.seconds:.0f} s: {f.incidents} incidents ({f.completed} completed), "
        f"{f.decisions} decisions. Ctrl-C stops everything. ==",
        "",
        "Incidents",
        "  " + _get(f"{api}/incidents?status=all&severity=all"),
    ]
    if incident:
        about = f"{incident.get('namespace')}/{incident.get('resource')}: {incident.get('issue_type')}"
        lines += [
            "  " + _get(f"{api}/incidents/{incident['id']}") + f"   # {about}, {incident.get('status')}",
            "  " + _get(f"{api}/incidents/{incident['id']}/timeline") + "   # every event, stage by stage",
        ]
    lines += ["", "Remediation", "  " + _get(f"{api}/decisions")]
    if workflow:
        steps = " -> ".join(f"{s['action']} {s['status']}" for s in workflow.get("steps") or []) or "no steps"
        lines.append("  " + _get(f"{api}/workflows/{workflow['id']}")
                     + f"   # {workflow.get('action')}: {steps}; {workflow.get('status')}")
    if waiting:
        target = f"{waiting.get('namespace')}/{waiting.get('resource_kind')}/{waiting.get('resource_name')}"
        lines.append("  " + _post(f"{api}/workflows/{waiting['id']}/approve", token=f.token)
                     + f"   # {waiting.get('action')} of {target} waits for your approval")
    if f.anomaly_id:
        lines.append("  " + _get(f"{api}/anomalies/{f.anomaly_id}") + "   # the anomaly report")
    analyze = json.dumps({"namespace": CRASHY_NAMESPACE, "time_range": "1h"})
    lines += [
        "  " + _get(f"{api}/status"),
        "",
        f"Analysis (Prometheus {f.prometheus_url}: generated history until {f.history_until:%H:%M} UTC)",
        "  " + _get(f"{api}/predict/memory-leak?namespace={LEAKY_NAMESPACE}") + f"   # finds {f.leaky_pod}",
        "  " + _get(f"{api}/capacity/trends?namespace={LEAKY_NAMESPACE}") + "   # memory grows with the leak",
        "  " + _get(f"{api}/capacity/cluster"),
        "  " + _get(f"{api}/predict/disk-exhaustion"),
        "  " + _get(f"{api}/recommendations/rightsizing?namespace={THROTTLED_NAMESPACE}"),
        "  " + _post(f"{api}/anomalies/analyze", analyze, f.token) + "   # crash loop, throttling, the model",
        "",
        "API, metrics, the log",
        f"  {u}/docs",
        "  " + _get(f"{u}/metrics"),
    ]
    if incident:
        lines += [f"  PIPELINE_URL={u} pipeline incidents show {incident['id']}   # the operator CLI: incidents, "
                  "decisions, workflows, status",
                  f"  KAFKA_BOOTSTRAP_SERVERS={f.bootstrap} pipeline replay --incident {incident['id']}"]
    lines.append("")
    if f.kubeconfig:
        lines.append(f"Cluster: KUBECONFIG={f.kubeconfig} kubectl get deploy,pods -A")
    else:
        lines.append(f"No cluster, so workflows end skipped; build one with {BUILD_HINT}")
    kept = "removed at exit" if f.temporary else "kept"
    lines += [f"Data: {f.data_dir} ({kept})", ""]
    return "\n".join(lines)


