"""The demo's pure pieces: its cluster's workloads, the history renamed to the cluster's pods, the scripted webhooks
and anomaly report (real shapes, matching the remediation rules), the settings that keep it apart from the user's
systems, and the "where to look" text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.adapters.rules import load_rules
from pipeline.compose.demo import (
    HORIZON_S,
    TEMPORARY_MARK,
    Findings,
    anomaly_report,
    bad_release,
    cast,
    demo_history,
    demo_settings,
    firing_webhooks,
    rename_pods,
    resolved_webhook,
    where_to_look,
    workload_manifests,
)
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook, resource_of
from pipeline.domain.arbitration import DEFAULT_APPROVAL
from pipeline.embedded.history import (
    CART_PODS,
    CRASHY_POD,
    DEPLOYMENTS,
    LEAKY_POD,
    PODS,
    THROTTLED_POD,
    History,
    generate_history,
)
from pipeline.gateway.anomaly_reports import AI_DRIVEN, AnomalyReport, assign, resolve_resource

RULES = load_rules(Path(__file__).parents[2] / "rules" / "remediation.yaml")
NOW = datetime(2026, 12, 1, 12, 0, 7, tzinfo=UTC)
NAMES = {CART_PODS[0]: "cart-776d897fd5-9djz9", CART_PODS[1]: "cart-776d897fd5-vk944",
         LEAKY_POD: "leaky-68b67d9698-8gsv6", CRASHY_POD: "crashy-c44bc785c-cqkxb",
         THROTTLED_POD: "throttled-8cf7bb8fc-cn6gn"}


@pytest.fixture(scope="module")
def history() -> History:
    return demo_history(NOW.timestamp())


def test_the_history_reaches_half_an_hour_ahead_with_the_crash_loop_under_way_now(history: History) -> None:
    now = NOW.timestamp()
    assert history.end == now - now % history.step_s + HORIZON_S
    assert history.start == history.end - 3 * 3600 - HORIZON_S  # three hours of the past, as the tests' history
    past = [t for t in history.crashy_restart_times if t <= now]
    assert len([t for t in past if t > now - 3600]) >= 3  # a crash loop now (the analysis rule: >= 3 in 1 h)
    assert len(past) < len(history.crashy_restart_times)  # and it goes on
    memory = history.instant("container_memory_working_set_bytes", now, pod=LEAKY_POD)
    limit = history.instant("kube_pod_container_resource_limits", now, pod=LEAKY_POD, resource="memory")
    assert memory is not None and limit is not None and 0.8 < memory / limit < 1  # leaking, not at its limit yet


def test_renamed_pods_keep_every_sample_and_their_replicasets_follow() -> None:
    history = generate_history(NOW.timestamp(), duration_s=3600)
    renamed = rename_pods(history, NAMES)
    assert len(renamed.samples) == len(history.samples)
    assert sorted(map(sorted, renamed.samples.values())) == sorted(map(sorted, history.samples.values()))
    text = renamed.openmetrics
    assert all(old not in text for old in NAMES) and all(new in text for new in NAMES.values())
    assert renamed.series("container_memory_working_set_bytes", pod=NAMES[LEAKY_POD]) == \
        history.series("container_memory_working_set_bytes", pod=LEAKY_POD)
    info = renamed.series("kube_pod_info", pod=NAMES[CRASHY_POD], created_by_name="crashy-c44bc785c")
    assert info == history.series("kube_pod_info", pod=CRASHY_POD)
    assert rename_pods(history, {}) is history


def test_each_history_pod_is_played_by_a_cluster_pod_of_its_deployment() -> None:
    pods = {"cart": ["cart-b", "cart-a"], "leaky": ["leaky-x"], "crashy": ["crashy-y"], "throttled": []}
    names = cast(pods)
    assert names == {CART_PODS[0]: "cart-a", CART_PODS[1]: "cart-b", LEAKY_POD: "leaky-x", CRASHY_POD: "crashy-y"}


def test_the_cluster_runs_the_history_workloads_with_their_requests_and_limits() -> None:
    manifests = workload_manifests()
    assert [(m["metadata"]["namespace"], m["metadata"]["name"], m["spec"]["replicas"]) for m in manifests] == \
        list(DEPLOYMENTS)
    leaky = next(m for m in manifests if m["metadata"]["name"] == "leaky")
    (container,) = leaky["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "leaky"  # the history's container label: alerts and metrics name the same one
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert all(m["spec"]["template"]["metadata"]["labels"] == {"app": m["metadata"]["name"]} for m in manifests)
    crashy = next(m for m in manifests if m["metadata"]["name"] == "crashy")
    assert crashy["spec"]["progressDeadlineSeconds"] > 0  # the bad release is reported stuck soon
    assert bad_release()["spec"]["template"]["metadata"]["labels"] == {"crashloop": "true"}  # kwok's crash loop


def test_the_webhooks_are_alertmanager_v4_about_the_cluster_pods_and_match_rules(history: History) -> None:
    hooks = firing_webhooks(history, NAMES, "http://127.0.0.1:9090", NOW)
    parsed = [AlertmanagerWebhook.model_validate(h) for h in hooks]
    alerts = [a for w in parsed for a in w.alerts]
    assert [(resource_of(a.labels).key, a.labels["alertname"]) for a in alerts] == [
        (f"payments/Pod/{NAMES[CRASHY_POD]}", "KubePodCrashLooping"),
        (f"shop/Pod/{NAMES[LEAKY_POD]}", "ContainerMemoryHigh")]
    assert [[r.action for r in RULES.rules if r.matches([a.labels["alertname"]], "Pod")][0] for a in alerts] == [
        "restart_pod", "scale_resources"]
    crash, near = (h["alerts"][0] for h in hooks)
    assert "restarts in 15m" in crash["annotations"]["summary"] and "9" in near["annotations"]["summary"]
    assert crash["generatorURL"].startswith("http://127.0.0.1:9090/graph?g0.expr=")
    assert datetime.fromisoformat(crash["startsAt"]) < NOW  # the crash loop began before the alert is sent
    for hook in hooks:
        assert hook["commonLabels"] == hook["alerts"][0]["labels"] and set(hook["groupLabels"]) == {"alertname",
                                                                                                   "namespace"}


def test_without_a_cluster_the_webhooks_name_the_history_pods(history: History) -> None:
    hooks = firing_webhooks(history, {}, "http://127.0.0.1:9090", NOW)
    assert [h["alerts"][0]["labels"]["pod"] for h in hooks] == [CRASHY_POD, LEAKY_POD]


def test_a_resolution_is_the_same_alert_resolved(history: History) -> None:
    firing = firing_webhooks(history, NAMES, "http://p", NOW)[0]
    later = datetime(2026, 12, 1, 12, 1, tzinfo=UTC)
    resolved = AlertmanagerWebhook.model_validate(resolved_webhook(firing, later))
    (alert,) = resolved.alerts
    assert resolved.status == alert.status == "resolved" and alert.endsAt == later
    assert (alert.fingerprint, alert.startsAt) == (firing["alerts"][0]["fingerprint"],
                                                   datetime.fromisoformat(firing["alerts"][0]["startsAt"]))
    assert firing["status"] == "firing"  # the firing webhook is left as it was


def test_the_anomaly_report_is_ai_driven_and_waits_for_approval() -> None:
    body = anomaly_report(NOW, NAMES)
    assert NAMES[THROTTLED_POD] in body["description"]
    report = AnomalyReport.model_validate(body)
    resource = resolve_resource(report)
    assert resource is not None and (resource.namespace, resource.kind, resource.name) == (
        "payments", "Deployment", "throttled")
    assignment = assign(RULES, report.anomaly_type, resource, report.recommended_action, report.confidence, 0.7)
    assert (assignment.layer, assignment.action) == (AI_DRIVEN, "scale_replicas")
    assert [r.name for r in DEFAULT_APPROVAL if r.below_confidence and report.confidence is not None
            and report.confidence < r.below_confidence] == ["ai-below-0.8"]


def test_the_demo_never_uses_the_users_systems_and_keeps_its_data_apart(tmp_path: Path) -> None:
    users = Settings(kafka_bootstrap_servers="kafka.prod:9092", kubeconfig="/home/me/.kube/config",
                     kube_watch=True, alertmanager_url="http://am.prod", prometheus_url="http://thanos.prod",
                     ml_service_url="http://ml.prod", data_dir=tmp_path / "mine")
    demo = demo_settings(users, keep_data=False)
    assert (demo.kafka_bootstrap_servers, demo.kubeconfig, demo.kube_watch, demo.alertmanager_url,
            demo.prometheus_url, demo.ml_service_url) == ("", "", False, "", "", "")
    try:
        assert demo.data_dir != users.data_dir and (demo.data_dir / TEMPORARY_MARK).is_file()
        assert list(demo.data_dir.iterdir()) == [demo.data_dir / TEMPORARY_MARK]
    finally:
        (demo.data_dir / TEMPORARY_MARK).unlink()
        demo.data_dir.rmdir()
    assert demo_settings(users, keep_data=True).data_dir == users.data_dir


def findings(**kw: object) -> Findings:
    base: dict[str, object] = dict(
        url="http://127.0.0.1:8080", seconds=41.6, prometheus_url="http://127.0.0.1:40001",
        history_until=datetime(2026, 12, 1, 12, 30, tzinfo=UTC), bootstrap="127.0.0.1:19092",
        data_dir=Path("/tmp/pipeline-demo-x"), temporary=True, kubeconfig="/tmp/pipeline-demo-x/demo/demo.kubeconfig",
        incident={"id": "inc-1", "namespace": "payments", "resource": "Pod/crashy-c44bc785c-cqkxb",
                  "issue_type": "CrashLoopBackOff", "status": "completed"},
        workflow={"id": "wf-1", "action": "restart_pod", "status": "completed",
                  "steps": [{"action": "delete_pod", "status": "completed"},
                            {"action": "rollback_revision", "status": "completed"}]},
        waiting={"id": "wf-2", "action": "scale_replicas", "namespace": "payments", "resource_kind": "Deployment",
                 "resource_name": "throttled", "status": "awaiting_approval"},
        anomaly_id="anom-1", leaky_pod="leaky-68b67d9698-8gsv6", incidents=7, completed=6, decisions=12)
    base.update(kw)
    return Findings(**base)  # type: ignore[arg-type]


def test_where_to_look_names_every_route_with_the_real_ids() -> None:
    text = where_to_look(findings())
    lines = text.splitlines()
    assert "ready in 42 s: 7 incidents (6 completed), 12 decisions" in text
    for command in (
        "curl -s 'http://127.0.0.1:8080/api/v1/incidents?status=all&severity=all'",
        "curl -s 'http://127.0.0.1:8080/api/v1/incidents/inc-1'",
        "curl -s 'http://127.0.0.1:8080/api/v1/incidents/inc-1/timeline'",
        "curl -s 'http://127.0.0.1:8080/api/v1/decisions'",
        "curl -s 'http://127.0.0.1:8080/api/v1/workflows/wf-1'",
        "curl -s -X POST 'http://127.0.0.1:8080/api/v1/workflows/wf-2/approve'",
        "curl -s 'http://127.0.0.1:8080/api/v1/anomalies/anom-1'",
        "curl -s 'http://127.0.0.1:8080/api/v1/predict/memory-leak?namespace=shop'",
        "curl -s 'http://127.0.0.1:8080/api/v1/capacity/trends?namespace=shop'",
        "curl -s 'http://127.0.0.1:8080/api/v1/capacity/cluster'",
        "curl -s 'http://127.0.0.1:8080/api/v1/predict/disk-exhaustion'",
        "curl -s 'http://127.0.0.1:8080/api/v1/recommendations/rightsizing?namespace=payments'",
        "curl -s -X POST 'http://127.0.0.1:8080/api/v1/anomalies/analyze' -H 'Content-Type: application/json' "
        "-d '{\"namespace\": \"payments\", \"time_range\": \"1h\"}'",
        "http://127.0.0.1:8080/docs",
        "curl -s 'http://127.0.0.1:8080/metrics'",
        "PIPELINE_URL=http://127.0.0.1:8080 pipeline incidents show inc-1",
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 pipeline replay --incident inc-1",
    ):
        assert any(line.strip().startswith(command) for line in lines), command
    assert "restart_pod: delete_pod completed -> rollback_revision completed; completed" in text
    assert "scale_replicas of payments/Deployment/throttled waits for your approval" in text
    assert "finds leaky-68b67d9698-8gsv6" in text and "until 12:30 UTC" in text
    assert "KUBECONFIG=/tmp/pipeline-demo-x/demo/demo.kubeconfig" in text
    assert "Data: /tmp/pipeline-demo-x (removed at exit)" in text
    assert "Authorization" not in text


def test_where_to_look_says_what_is_missing_and_how_to_send_the_token() -> None:
    text = where_to_look(findings(kubeconfig="", waiting={}, temporary=False, token=True))
    assert "No cluster, so workflows end skipped; build one with bash scripts/build-kube-apiserver.sh" in text
    assert "/approve" not in text and "(kept)" in text
    analyze = next(line for line in text.splitlines() if "anomalies/analyze" in line)
    assert '-H "Authorization: Bearer $API_TOKEN"' in analyze
    bare = where_to_look(findings(incident={}, workflow={}))
    assert "pipeline replay" not in bare and "pipeline incidents" not in bare and "/timeline" not in bare


def test_pods_not_listed_keep_their_history_names() -> None:
    assert {p.pod for p in PODS} >= set(cast({"cart": ["cart-a"]})) == {CART_PODS[0]}
