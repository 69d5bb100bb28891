"""`pipeline run --demo` as a newcomer runs it: it prints where to look, every route it lists answers with real data
(incidents, a decision, a workflow that really changed the test cluster, the leaking pod found in Prometheus'
history, the incident's timeline), the commands it prints work, and SIGTERM stops everything it started.

Needs the test cluster's binaries (scripts/build-kube-apiserver.sh, run by scripts/setup): without them the demo runs
without a cluster, and the first test fails saying so. The second hides them (KUBE_APISERVER_BINARY pointing nowhere)
to check what a machine without them shows: one warning with the fix, workflows `skipped`, the analysis as before."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from pipeline.embedded.history import CRASHY_POD, LEAKY_POD
from pipeline.embedded.process import free_port

BLOCK_END = re.compile(r"^Data: (\S+) \((removed at exit|kept)\)$", re.MULTILINE)


@dataclass
class Command:
    method: str
    url: str
    body: Any = None
    comment: str = ""


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    text: str = ""

    def logs(self) -> str:
        return f"stdout:\n{self.stdout.read_text()[-3000:]}\nstderr:\n{self.stderr.read_text()[-6000:]}"

    def commands(self) -> list[Command]:
        """Every `curl` line of the block, as method, URL and body."""
        found = []
        for line in self.text.splitlines():
            command, _, comment = line.strip().partition("   # ")
            if not command.startswith("curl "):
                continue
            words = shlex.split(command)
            body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
            url = next(w for w in words if w.startswith("http"))
            found.append(Command("POST" if "POST" in words else "GET", url, body, comment))
        return found

    def command(self, fragment: str) -> Command:
        matching = [c for c in self.commands() if fragment in c.url]
        assert len(matching) == 1, f"one command with {fragment!r} expected in:\n{self.text}"
        return matching[0]


def settled(http: httpx.Client, command: Command) -> dict[str, Any]:
    """The incident once no proposal about it waits for arbitration: for a moment it may show a later one (the AI's,
    once the pod's score arrives, usually after the incident resolved) as `pending_decision`, until arbitration
    decides it (the cooldown rejects it), and the approved action's workflow speaks for the incident again."""
    deadline = time.monotonic() + 30
    while (incident := call(http, command))["action_type"] == "pending_decision" and time.monotonic() < deadline:
        time.sleep(0.2)
    return incident


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    """Start `pipeline run --demo` on free ports (with extra environment variables); kill what is left at the end."""
    started: list[Demo] = []

    def run(**extra: str) -> Demo:
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "API_TOKEN", "KUBECONFIG")}
        env.update(PORT=str(free_port()), METRICS_PORT=str(free_port()), EMBEDDED_ML_PORT=str(free_port()),
                   EMBEDDED_KAFKA_PORT=str(free_port()), HOST="127.0.0.1", **extra)
        stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--demo"], env=env,
                                stdout=stdout.open("wb"), stderr=stderr.open("wb"))
        started.append(Demo(proc, stdout, stderr))
        return started[-1]

    yield run
    for demo in started:
        if demo.proc.poll() is None:  # a failed test: nothing of it may outlive the test
            for child in psutil.Process(demo.proc.pid).children(recursive=True):
                child.kill()
            demo.proc.kill()
            demo.proc.wait(30)
        made = re.search(r'"data_dir": "(/\S+)/kafka"', demo.stderr.read_text())
        if made and (Path(made.group(1)) / ".pipeline-demo-temporary").exists():
            shutil.rmtree(made.group(1), ignore_errors=True)


def wait_for_block(demo: Demo, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = demo.stdout.read_text()
        if BLOCK_END.search(text):
            return text
        if demo.proc.poll() is not None:
            raise AssertionError(f"pipeline run --demo exited {demo.proc.returncode}\n{demo.logs()}")
        time.sleep(0.5)
    raise AssertionError(f"no 'where to look' block within {timeout} s\n{demo.logs()}")


def call(http: httpx.Client, command: Command) -> Any:
    response = http.request(command.method, command.url, json=command.body)
    assert response.status_code in (200, 202), f"{command.method} {command.url}: {response.status_code} {response.text}"
    assert response.content, f"{command.method} {command.url}: an empty answer"
    return response.json() if "json" in response.headers["content-type"] else response.text


def cluster_deployment(kubeconfig: str, namespace: str, name: str) -> dict[str, Any]:
    """The Deployment as the test cluster has it, read with the kubeconfig the block prints."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    server = config["clusters"][0]["cluster"]["server"]
    ca = ssl.create_default_context(cafile=config["clusters"][0]["cluster"]["certificate-authority"])
    token = config["users"][0]["user"]["token"]
    response = httpx.get(f"{server}/apis/apps/v1/namespaces/{namespace}/deployments/{name}", verify=ca,
                         headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def eventually(check: Any, what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if last := check():
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")


@pytest.mark.timeout(600)
def test_the_demo_shows_every_route_with_real_data_and_sigterm_stops_all_it_started(
        start: Callable[..., Demo]) -> None:
    demo = start()
    demo.text = text = wait_for_block(demo)
    assert "No cluster" not in text, f"the demo ran without its cluster: build it with " \
                                     f"`bash scripts/build-kube-apiserver.sh`\n{demo.logs()}"
    kubeconfig = re.search(r"KUBECONFIG=(\S+)", text)
    data_dir = BLOCK_END.search(text)
    assert kubeconfig and data_dir, text
    assert not data_dir.group(1).startswith(str(Path.home())), "the demo's data must be apart from the user's"
    incidents_url = demo.command("/incidents?status=all").url
    base = incidents_url.split("/api/v1/")[0]

    with httpx.Client(timeout=60, trust_env=False) as http:
        # Every command the block lists answers, with data.
        for command in demo.commands():
            if not command.url.endswith("/approve"):
                call(http, command)
        listing = call(http, demo.command("/incidents?status=all"))
        assert listing["summary"]["total"] > 0 and listing["summary"]["completed"] > 0, listing["summary"]

        # The crash loop's incident: the watch stage's pod signal and the Alertmanager alert on one pod, remediated
        # and resolved.
        incident_cmd = next(c for c in demo.commands() if re.search(r"/incidents/inc-[^/]+$", c.url))
        incident = settled(http, incident_cmd)
        assert (incident["namespace"], incident["status"], incident["remediation_status"]) == (
            "payments", "completed", "completed"), incident
        assert incident["resource"].startswith("Pod/crashy-")
        sources = {a["source"] for a in incident["alerts"]}
        assert "kubernetes" in sources, incident
        if "alertmanager" not in sources:  # on a loaded machine the pod was replaced before the alert about it came:
            # the alert names the old pod, so it is that pod's incident (one incident per resource, as designed)
            assert any(i["resource"].startswith("Pod/crashy-") and any(a["source"] == "alertmanager" for a in
                                                                        i["alerts"]) for i in listing["incidents"])

        timeline = call(http, demo.command(f"/incidents/{incident['id']}/timeline"))
        types = [e["event"]["type"] for e in timeline["events"]]
        assert timeline["count"] == len(types) > 0
        for kind in ("signal.observed", "incident.opened", "features.computed", "score.computed",
                     "remediation.proposed", "remediation.decided", "workflow.changed", "incident.resolved"):
            assert any(kind in t for t in types), (kind, types)
        features = [e["event"]["data"] for e in timeline["events"] if "features.computed" in e["event"]["type"]]
        assert any(not f["missing"] for f in features), "Prometheus' history gives the pod's features"

        decisions = call(http, demo.command("/api/v1/decisions"))
        mine = [d for d in decisions["decisions"] if d["incident_id"] == incident["id"]]
        assert any(d["outcome"] == "approved" and d["workflow_id"] == incident["workflow_id"] for d in mine), mine

        workflow = call(http, demo.command(f"/workflows/{incident['workflow_id']}"))
        assert workflow["status"] == "completed" and workflow["steps"], workflow
        assert all(s["status"] in ("completed", "skipped") for s in workflow["steps"]), workflow["steps"]
        assert workflow["checkpoints"][-1]["status"] == "passed"
        # The cluster really changed: crashy is back on its first release, no pod crash-looping.
        crashy = cluster_deployment(kubeconfig.group(1), "payments", "crashy")
        assert "crashloop" not in crashy["spec"]["template"]["metadata"]["labels"]
        assert crashy["status"].get("availableReplicas") == crashy["spec"]["replicas"]

        # The analysis routes see the generated history: the leaking pod, the crash loop, the throttling.
        leak = demo.command("/predict/memory-leak")
        leaky_pod = leak.comment.removeprefix("finds ")
        found = {r["pod"]: r for r in call(http, leak)["results"]}
        assert found[leaky_pod]["leak_detected"], found
        analysis = call(http, demo.command("/anomalies/analyze"))
        assert {a["metric"] for a in analysis["anomalies"]} >= {"container_restart_count", "cpu_throttle_rate"}
        assert call(http, demo.command("/capacity/cluster"))["cluster_usage"]["pod_count"] > 0
        assert call(http, demo.command("/recommendations/rightsizing"))["recommendations"]
        assert call(http, demo.command("/predict/disk-exhaustion"))["results"]
        assert call(http, demo.command("/capacity/trends"))["memory"]["direction"] == "increasing"
        assert http.get(f"{base}/docs").status_code == 200
        assert "pipeline_" in http.get(f"{base}/metrics").text

        # The anomaly report's workflow waits for a human; approved, it scales the deployment in the cluster.
        report = call(http, next(c for c in demo.commands() if "/anomalies/anom-" in c.url))
        assert report["assigned_layer"] == "ai_driven" and report["action"]["status"] == "awaiting_approval"
        approve = demo.command("/approve")
        assert call(http, approve)["decision"] == "approved"
        waiting = approve.url.removesuffix("/approve")
        done = eventually(lambda: (w := http.get(waiting).json())["status"] in ("completed", "failed") and w,
                          "the approved workflow finished")
        assert done["status"] == "completed", done
        assert cluster_deployment(kubeconfig.group(1), "payments", "throttled")["spec"]["replicas"] == 2

    # The printed CLI commands work: the operator CLI shows the incident, the replay its story from the log.
    shown = run_printed(text, "pipeline incidents show")
    assert incident["id"] in shown and "payments" in shown
    replayed = {json.loads(line)["event"]["id"] for line in run_printed(text, "pipeline replay", "--json").splitlines()}
    assert {e["event"]["id"] for e in timeline["events"]} <= replayed

    # SIGTERM stops everything: the broker, Prometheus, the cluster; the temporary data dir is gone.
    terminate(demo, {"prometheus", "kube-apiserver", "etcd", "kwok", "java"}, Path(data_dir.group(1)))


def run_printed(text: str, command: str, *extra: str) -> str:
    """Run the block's `VAR=value pipeline ...` line that holds `command` as printed (plus `extra`); its stdout."""
    line = next(line.strip() for line in text.splitlines() if command in line).partition("   # ")[0]
    assignment, _, args = line.partition(" pipeline ")
    name, _, value = assignment.partition("=")
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *shlex.split(args), *extra],
                          env={**os.environ, name: value}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{line}: {done.returncode}\n{done.stderr}"
    return done.stdout


def terminate(demo: Demo, expected: set[str], data_dir: Path) -> None:
    """SIGTERM: exit 0, none of the processes it started left (`expected` among them), its data dir removed."""
    children = psutil.Process(demo.proc.pid).children(recursive=True)
    names = {c.name() for c in children}
    assert expected <= names, names
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(timeout=120) == 0, demo.logs()
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"still running after SIGTERM: {[(c.pid, c.name()) for c in left]}"
    assert '"event": "stopped"' in demo.stderr.read_text()
    assert not data_dir.exists()


@pytest.mark.timeout(600)
def test_without_the_cluster_binaries_it_says_so_once_and_workflows_end_skipped(
        start: Callable[..., Demo]) -> None:
    demo = start(KUBE_APISERVER_BINARY="/nonexistent/kube-apiserver")  # as if the build script never ran
    demo.text = text = wait_for_block(demo)
    assert "No cluster, so workflows end skipped; build one with bash scripts/build-kube-apiserver.sh" in text
    logs = [json.loads(line) for line in demo.stderr.read_text().splitlines() if line.startswith("{")]
    (said,) = [entry for entry in logs if "demo without a cluster" in entry["event"]]
    assert said["level"] == "warning" and "build-kube-apiserver.sh" in said["fix"]
    assert "KUBE_APISERVER_BINARY='/nonexistent/kube-apiserver' is not an executable" == said["missing"]
    with httpx.Client(timeout=60, trust_env=False) as http:
        shown = next(c for c in demo.commands() if re.search(r"/incidents/inc-[^/]+$", c.url))
        listed = next(c for c in demo.commands() if re.search(r"/workflows/wf-[^/]+$", c.url))
        workflow = call(http, listed)
        assert workflow["status"] == "skipped" and workflow["reason"].startswith("no cluster configured"), workflow
        incident = settled(http, shown)
        assert incident["resource"] == f"Pod/{CRASHY_POD}" and incident["status"] == "completed"
        assert (incident["workflow_id"], incident["remediation_status"]) == (workflow["id"], "skipped"), incident
        leak = demo.command("/predict/memory-leak")
        assert {r["pod"] for r in call(http, leak)["results"] if r["leak_detected"]} == {LEAKY_POD}
    data_dir = BLOCK_END.search(text)
    assert data_dir
    terminate(demo, {"prometheus", "java"}, Path(data_dir.group(1)))
