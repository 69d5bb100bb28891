"""The operator CLI against a running pipeline: `pipeline incidents | decisions | workflows | status` in their own
processes, configured as an operator's shell is (PIPELINE_URL, API_TOKEN), show the gateway's real incidents,
decisions and workflows; `--json` is each route's JSON; and every failure is one line naming what to do:
the gateway down, a wrong or missing token, an unknown id, a filter the gateway refuses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.embedded.process import free_port
from pipeline.stages import stage_classes
from tests.support import EVERYTHING, PipelineUnderTest, eventually, incidents, sample, settings_for

TOKEN = "s3cret-operator-token"
# arbitration without a remediator, every proposal needing a human: workflows wait for an answer
AWAITING = Plan(stages=[s for s in stage_classes() if s != "remediate"], ingest=True, gateway=True, apply_topics=True)


@dataclass
class Run:
    settings: Settings
    http: httpx.AsyncClient
    incidents: list[dict[str, Any]]
    manual_workflow: str


def cli(url: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` in its own process, as an operator's shell runs it: PIPELINE_URL, and API_TOKEN if given."""
    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "PIPELINE_URL")}
    env["PIPELINE_URL"] = url
    if token is not None:
        env["API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def pipeline_cli(run: Run | str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    url = run if isinstance(run, str) else str(run.http.base_url).rstrip("/")
    return await asyncio.to_thread(cli, url, *args, token=token)


async def shown(run: Run, *args: str) -> list[str]:
    """The lines a command prints, which must succeed."""
    done = await pipeline_cli(run, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


async def same_json(run: Run, args: tuple[str, ...], path: str, params: dict[str, Any] | None = None) -> Any:
    """`--json` prints exactly what the route answers."""
    done = await pipeline_cli(run, *args, "--json")
    assert done.returncode == 0, done.stderr
    response = await run.http.get(path, params=params)
    assert response.status_code == 200, response.text
    assert json.loads(done.stdout) == response.json()
    return response.json()


def row_of(lines: list[str], key: str) -> list[str]:
    """The cells of the one table line that holds `key`."""
    found = [line for line in lines if key in line.split()]
    assert len(found) == 1, (key, lines)
    return found[0].split()


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    """Every stage, ingest, the gateway and the reference model, with a token; two OOM-killed pods alerted and a
    manual restart triggered, everything decided and done (no cluster: the workflows end skipped, saying why)."""
    settings = settings_for(kafka_bootstrap, Path(tmp_path_factory.mktemp("opcli")) / "data",
                            api_token=SecretStr(TOKEN), remediation_namespace_budget=10)  # every proposal approved
    async with (PipelineUnderTest(settings, EVERYTHING) as running,
                httpx.AsyncClient(base_url=running.url, timeout=30.0, trust_env=False,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as http):
        assert (await http.post("/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"))).status_code == 200
        trigger = {"incident_id": "inc-opcli", "namespace": "shop", "resource": {"kind": "Deployment", "name": "web"},
                   "issue": {"type": "pod_crash", "description": "restarts", "severity": "high"}}
        response = await http.post("/api/v1/remediation/trigger", json=trigger)
        assert response.status_code == 202, response.text

        async def settled() -> list[dict[str, Any]] | None:
            listed = (await incidents(http))["incidents"]
            decided = (await http.get("/api/v1/decisions")).json()["decisions"]
            workflows = (await http.get("/api/v1/workflows")).json()["workflows"]
            model = (await http.get("/api/v1/models/anomaly-detector/health")).json()
            done = all(i["remediation_status"] == "skipped" for i in listed)
            finished = len(decided) == len(workflows) == 3 and all(w["status"] == "skipped" for w in workflows)
            return listed if len(listed) == 2 and done and finished and model["status"] == "ready" else None

        listed = await eventually(settled, timeout=90, what="both incidents decided and their workflows done")
        yield Run(settings, http, listed, response.json()["workflow_id"])


async def test_incidents_lists_shows_and_filters_what_the_gateway_holds(run: Run) -> None:
    lines = await shown(run, "incidents")
    assert lines[0].split() == ["ID", "AGE", "SEVERITY", "STATUS", "NAMESPACE", "RESOURCE", "ISSUE", "ALERTS",
                                "REMEDIATION", "TITLE"]
    for item in run.incidents:
        cells = row_of(lines, item["id"])
        assert cells[2:7] == [item["severity"], item["status"], item["namespace"], item["resource"],
                              item["issue_type"]]
        assert cells[7] == f"{item['alerts_firing']}/{item['alerts_total']}"
        assert cells[8].rstrip(":") == item["remediation_status"]
    done = await pipeline_cli(run, "incidents", "list", "--namespace", "shop", "--limit", "1")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    assert done.stderr.strip() == "1-1 of 2 incidents; --offset/--limit page through them (active 2; critical 2)"
    await same_json(run, ("incidents",), "/api/v1/incidents")
    await same_json(run, ("incidents", "--severity", "critical", "--status", "open", "--offset", "1"),
                    "/api/v1/incidents", {"severity": "critical", "status": "open", "offset": 1})

    first = run.incidents[0]
    lines = await shown(run, "incidents", "show", first["id"])
    assert f"id:          {first['id']}" in lines and f"title:       {first['title']}" in lines
    assert f"workflow:    {first['workflow_id']}" in lines
    timeline = (await run.http.get(f"/api/v1/incidents/{first['id']}/timeline")).json()
    heading = next(line for line in lines if line.startswith("Timeline: "))
    assert heading.startswith(f"Timeline: {timeline['count']} event(s) read from {timeline['window']['from']}")
    kinds = [line.split()[2] for line in lines[lines.index(heading) + 2:]]
    assert kinds[:2] == ["signal.observed", "incident.opened"] and "remediation.decided" in kinds
    assert [line.split()[-1] for line in lines[lines.index(heading) + 2:]] == \
        [e["event"]["id"][:8] for e in timeline["events"]]
    await same_json(run, ("incidents", "show", first["id"]), f"/api/v1/incidents/{first['id']}")
    await same_json(run, ("incidents", "timeline", first["id"]), f"/api/v1/incidents/{first['id']}/timeline")


async def test_decisions_and_workflows_show_the_real_ids_outcomes_and_reasons(run: Run) -> None:
    body = await same_json(run, ("decisions",), "/api/v1/decisions")
    lines = await shown(run, "decisions")
    assert len(lines) == 1 + body["count"] == 1 + 3  # two rule-driven decisions and the manual one
    for decision in body["decisions"]:
        if decision["workflow_id"] is not None:
            cells = row_of(lines, decision["workflow_id"])
            assert cells[1:3] == [decision["outcome"], decision["action"]]
            assert cells[-1] == ",".join(r["code"] for r in decision["reasons"])
    manual = row_of(lines, run.manual_workflow)
    assert manual[1:6] == ["approved", "restart_deployment", "shop/Deployment/web", "manual", "skipped"]
    await same_json(run, ("decisions", "--outcome", "approved", "--namespace", "shop"), "/api/v1/decisions",
                    {"outcome": "approved", "namespace": "shop"})
    recent = await pipeline_cli(run, "decisions", "--since", "1h")
    assert recent.returncode == 0 and recent.stderr.strip() == "1-3 of 3 decisions"
    future = await pipeline_cli(run, "decisions", "--since", "2999-01-01T00:00:00Z")
    assert future.returncode == 0 and future.stderr.strip() == "no decisions"

    workflows = await same_json(run, ("workflows",), "/api/v1/workflows")
    lines = await shown(run, "workflows", "list")
    for item in workflows["workflows"]:
        cells = row_of(lines, item["workflow_id"])
        assert cells[2:4] == ["skipped", item["action"]]
        assert " ".join(cells).endswith(item["reason"])
    # a rule-driven workflow: its decision lists it (the remediator made its id)
    automatic = [w for w in workflows["workflows"] if w["workflow_id"] != run.manual_workflow]
    assert automatic and all(w["incident_id"] in {i["id"] for i in run.incidents} for w in automatic)
    decided = {d["workflow_id"] for d in body["decisions"]}
    assert {w["workflow_id"] for w in automatic} <= decided
    await same_json(run, ("workflows", "--status", "skipped", "--namespace", "shop"), "/api/v1/workflows",
                    {"status": "skipped", "namespace": "shop"})

    lines = await shown(run, "workflows", "show", run.manual_workflow)
    assert f"workflow:          {run.manual_workflow}" in lines and "status:            skipped" in lines
    assert "reason:            no cluster configured (set KUBECONFIG, or run in a pod with a service account)" in lines
    assert "outcome:    approved" in lines and "  manual: manual trigger: pod_crash (restarts)" in lines
    assert [line.split()[:3] for line in lines[lines.index("Steps") + 2:lines.index("Checkpoints") - 1]] == [
        ["1", "application", "rollout_restart"], ["2", "application", "rollback_revision"]]
    await same_json(run, ("workflows", "show", run.manual_workflow), f"/api/v1/workflows/{run.manual_workflow}")


async def test_status_reports_health_stages_broker_model_and_engine(run: Run) -> None:
    lines = await shown(run, "status")
    said = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines[1:]}
    assert lines[0] == f"gateway {str(run.http.base_url).rstrip('/')}"
    assert said["gateway"].startswith("healthy, version ")
    assert said["kafka"] == "ok: 1 broker(s) reachable"
    assert said["stages"] == "ok: " + ", ".join(sorted(stage_classes()))
    assert said["read model"] == f"ready, {len(run.incidents)} incident(s)"
    assert said["kill switch"] == "off" and said["pause"] == "off"
    assert said["engine"] == "running, remediation mode auto"
    assert said["workers"] == "1 remediate worker(s); cluster healthy"
    assert said["model anomaly-detector"] == "ready, circuit closed"
    done = await pipeline_cli(run, "status", "--json")
    assert done.returncode == 0, done.stderr
    routes = json.loads(done.stdout)
    assert set(routes) == {"/api/v1/health", "/api/v1/status", "/api/v1/cluster/status", "/api/v1/models",
                           "/api/v1/models/anomaly-detector/health"}
    for path, body in routes.items():
        now = (await run.http.get(path)).json()
        volatile = {"timestamp", "uptime_seconds", "dependencies", "engine"}  # clocks and latencies move
        assert {k: v for k, v in body.items() if k not in volatile} == \
            {k: v for k, v in now.items() if k not in volatile}, path


async def test_errors_are_one_line_saying_what_to_do(run: Run) -> None:
    unknown = await pipeline_cli(run, "incidents", "show", "inc-000000000000")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == "pipeline incidents show: incident inc-000000000000 not found (404 NOT_FOUND)\n"
    missing = await pipeline_cli(run, "workflows", "show", "wf-000000000000")
    assert missing.returncode == 1
    assert missing.stderr == "pipeline workflows show: workflow wf-000000000000 not found (404 NOT_FOUND)\n"
    refused = await pipeline_cli(run, "decisions", "--outcome", "maybe")
    assert refused.returncode == 2
    assert refused.stderr == ("pipeline decisions list: the gateway refused the request: outcome must be one of: "
                              "all, approved, rejected, awaiting_approval, superseded (field outcome)\n")
    status = await pipeline_cli(run, "workflows", "--status", "done")
    assert status.returncode == 2 and status.stderr.startswith(
        "pipeline workflows list: the gateway refused the request: status must be one of: all, pending, ")
    # writes need the gateway's token (reads stay open): none, a wrong one, then the right one
    none = await pipeline_cli(run, "workflows", "approve", run.manual_workflow)
    assert none.returncode == 1
    assert none.stderr == ("pipeline workflows approve: the gateway refused the request (401 UNAUTHORIZED): "
                           "set API_TOKEN to the gateway's API_TOKEN\n")
    wrong = await pipeline_cli(run, "workflows", "approve", run.manual_workflow, token="not-the-token")
    assert wrong.returncode == 1
    assert wrong.stderr == ("pipeline workflows approve: the gateway refused the request (401 UNAUTHORIZED): "
                            "API_TOKEN is set but is not the gateway's token: set API_TOKEN to the gateway's "
                            "API_TOKEN\n")
    late = await pipeline_cli(run, "workflows", "approve", run.manual_workflow, token=TOKEN)
    assert late.returncode == 1
    assert late.stderr == (f"pipeline workflows approve: the gateway answered 409 NOT_AWAITING_APPROVAL: workflow "
                           f"{run.manual_workflow} is skipped, not awaiting approval\n")
    readable = await pipeline_cli(run, "incidents", token="not-the-token")
    assert readable.returncode == 0 and run.incidents[0]["id"] in readable.stdout


async def test_a_gateway_that_is_not_there_is_named_with_the_setting_that_chose_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args, name in ((("incidents",), "pipeline incidents list"), (("decisions",), "pipeline decisions list"),
                       (("workflows", "show", "wf-1"), "pipeline workflows show"), (("status",), "pipeline status")):
        done = await pipeline_cli(url, *args)
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert done.stderr == (f"{name}: cannot reach the gateway at {url}: Connection refused; start it "
                               "(`pipeline run`) or set PIPELINE_URL to its address\n")
    flag = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "pipeline.cli", "incidents", "--url", url + "/"],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "PIPELINE_URL"})
    assert flag.returncode == 1 and flag.stderr.endswith("or set --url (or PIPELINE_URL) to its address\n")
    usage = await pipeline_cli(url, "workflows", "approve")
    assert (usage.returncode, usage.stderr) == (2, "pipeline workflows approve: approve needs an ID\n")


async def test_a_workflow_awaiting_approval_is_approved_once_and_the_switches_show(kafka_bootstrap: str,
                                                                                  tmp_path: Path) -> None:
    settings = settings_for(kafka_bootstrap, tmp_path / "data", api_token=SecretStr(TOKEN),
                            remediation_approval=[{"name": "everything"}])
    async with (PipelineUnderTest(settings, AWAITING) as running,
                httpx.AsyncClient(base_url=running.url, timeout=30.0, trust_env=False,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as http):
        trigger = {"incident_id": "inc-wait", "namespace": "shop", "resource": {"kind": "Pod", "name": "web-1"},
                   "issue": {"type": "pod_crash", "severity": "high"}}
        workflow_id = (await http.post("/api/v1/remediation/trigger", json=trigger)).json()["workflow_id"]

        async def waiting() -> bool:
            body = (await http.get(f"/api/v1/workflows/{workflow_id}")).json()
            return body["status"] == "awaiting_approval"

        await eventually(waiting, what="the workflow awaiting approval")
        run = Run(settings, http, [], workflow_id)
        lines = await shown(run, "workflows", "--status", "awaiting_approval")
        assert row_of(lines, workflow_id)[2:4] == ["awaiting_approval", "restart_pod"]
        approve = await pipeline_cli(run, "workflows", "approve", workflow_id, "--by", "alice", "--reason", "ok",
                                     token=TOKEN)
        assert approve.returncode == 0, approve.stderr
        assert approve.stdout == f"workflow {workflow_id} approved by alice (status awaiting_approval)\n"
        reject = await pipeline_cli(run, "workflows", "reject", workflow_id, token=TOKEN)
        assert reject.returncode == 1
        assert reject.stderr == (f"pipeline workflows reject: workflow {workflow_id} was already approved by alice; "
                                 "this answer does not count\n")

        switched = await http.post("/api/v1/remediation/kill-switch",
                                   json={"enabled": True, "by": "ops", "reason": "drill"})
        assert switched.status_code == 200, switched.text
        lines = await shown(run, "status")
        said = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines[1:]}
        assert said["kill switch"] == "ON by ops: drill"
        assert said["engine"] == "stopped, remediation mode auto"
        assert said["queue"] == "0 pending, 1 awaiting approval, 0 running"
        # no remediate stage here: the cluster route says so, and the command exits 0 (the gateway is healthy)
        assert said["workers"].startswith("0 remediate worker(s); cluster degraded (")
