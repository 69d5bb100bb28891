"""Kubernetes objects -> conditions -> signals: table tests over raw API objects as the API server returns them,
the namespace filter, and the firing/resolved bookkeeping of `diff` (with a replay property)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.kube_signals import Condition, WatchFilter, conditions, diff, fingerprint
from pipeline.events import Resource, Severity, WatchState

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ALL = WatchFilter()
H, M, C = Severity.HIGH, Severity.MEDIUM, Severity.CRITICAL


def ts(hh_mm: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-22T{hh_mm}:00+00:00")


def meta(name: str, ns: str | None = "shop", uid: str = "uid-1") -> dict[str, Any]:
    return {"name": name, "uid": uid, "resourceVersion": "4711", "creationTimestamp": "2026-11-22T08:00:00Z",
            **({"namespace": ns} if ns is not None else {})}


def cstatus(name: str = "app", state: dict | None = None, last: dict | None = None, restarts: int = 0) -> dict:
    return {"name": name, "ready": False, "started": False, "restartCount": restarts,
            "image": "ghcr.io/shop/cart:1.4.2", "imageID": "", "containerID": "containerd://0f3c",
            "state": state or {"running": {"startedAt": "2026-11-22T09:00:00Z"}}, "lastState": last or {}}


def waiting(reason: str, message: str = "") -> dict:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def terminated(reason: str, code: int, finished: str) -> dict:
    return {"terminated": {"reason": reason, "exitCode": code, "startedAt": "2026-11-22T09:40:00Z",
                           "finishedAt": f"2026-11-22T{finished}:00Z", "containerID": "containerd://0f3c"}}


def pod(containers: list[dict] | None = None, init: list[dict] | None = None, name: str = "cart-1",
        **status: Any) -> dict:
    st_ = {"phase": "Running", "podIP": "10.0.3.17", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T08:00:01Z"}], **status}
    if containers:
        st_["containerStatuses"] = containers
    if init:
        st_["initContainerStatuses"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name), "spec": {"nodeName": "n1"}, "status": st_}


def cond(type_: str, status: str, reason: str = "", message: str = "", at: str = "09:30") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": "2026-11-22T09:59:00Z", "lastTransitionTime": f"2026-11-22T{at}:00Z"}


def node(*conds: dict) -> dict:
    healthy = {t: cond(t, "False", f"KubeletHas{t}") for t in ("MemoryPressure", "DiskPressure", "PIDPressure")}
    ready = cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")
    by_type = {"Ready": ready, **healthy, **{c["type"]: c for c in conds}}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta("n1", None), "status": {"conditions": list(by_type.values())}}


def deployment(*conds: dict, available: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("cart"), "spec": {"replicas": 3},
            "status": {"replicas": 3, "availableReplicas": available, "conditions": list(conds)}}


def core_event(reason: str, count: int | None = 1, type_: str = "Warning", kind: str = "Pod", name: str = "cart-1",
               ns: str | None = "shop", message: str = "boom") -> dict:
    involved = {"kind": kind, "name": name, "uid": "uid-obj", "apiVersion": "v1", **({"namespace": ns} if ns else {})}
    return {"apiVersion": "v1", "kind": "Event", "metadata": meta(f"{name}.187a", ns or "default", "uid-ev"),
            "involvedObject": involved, "reason": reason, "message": message, "type": type_, "count": count,
            "firstTimestamp": "2026-11-22T09:20:00Z", "lastTimestamp": "2026-11-22T09:59:00Z",
            "source": {"component": "kubelet", "host": "n1"}}


def new_event(reason: str, series: int | None = None, deprecated: int | None = None, kind: str = "Pod",
              name: str = "cart-1", ns: str = "shop", message: str = "boom") -> dict:
    ev: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta(f"{name}.187a", ns, "uid-ev"),
        "regarding": {"kind": kind, "name": name, "namespace": ns, "uid": "uid-obj"}, "reason": reason, "note": message,
        "type": "Warning", "reportingController": "kubelet", "reportingInstance": "n1", "action": "Probe"}
    if deprecated is not None:  # written through core/v1: no eventTime, the deprecated* fields carry the data
        ev |= {"eventTime": None, "deprecatedCount": deprecated, "deprecatedFirstTimestamp": "2026-11-22T09:20:00Z"}
    else:
        ev |= {"eventTime": "2026-11-22T09:25:00.123456Z",
               "series": {"count": series, "lastObservedTime": "2026-11-22T09:59:00.000000Z"} if series else None}
    return ev


PROBE = "Readiness probe failed: HTTP probe failed with statuscode: 503"
POD, NODE, DEP = "shop/Pod/cart-1", "/Node/n1", "shop/Deployment/cart"
P = {"namespace": "shop", "pod": "cart-1"}
APP = {**P, "container": "app"}
CRASH = cstatus(state=waiting("CrashLoopBackOff", "back-off 5m0s restarting failed container=app"),
                last=terminated("Error", 1, "09:58"), restarts=7)

# (kind, object, [(key, name, severity, resource key, labels besides "reason", since, summary fragment)])
CASES = {
    "crashloop": ("Pod", pod([CRASH]), [
        ("container/app/CrashLoopBackOff", "CrashLoopBackOff", H, POD, APP, ts("09:58"), "(7 restarts)")]),
    "crashloop-after-oom": ("Pod", pod([cstatus(state=waiting("CrashLoopBackOff"), last=terminated("OOMKilled", 137, "09:57"))]), [
        ("container/app/CrashLoopBackOff", "CrashLoopBackOff", H, POD, APP, ts("09:57"), "is CrashLoopBackOff"),
        ("container/app/OOMKilled", "OOMKilled", H, POD, APP, ts("09:57"), "OOMKilled (exit code 137)")]),
    "oom-again": ("Pod", pod([cstatus(state=terminated("OOMKilled", 137, "09:59"), last=terminated("OOMKilled", 137, "09:50"))]), [
        ("container/app/OOMKilled", "OOMKilled", H, POD, APP, ts("09:59"), "was OOMKilled")]),
    "image-pull-backoff": ("Pod", pod([cstatus(state=waiting("ImagePullBackOff", 'Back-off pulling image "x:9"'))]), [
        ("container/app/ImagePull", "ImagePullBackOff", H, POD, APP, None, 'Back-off pulling image "x:9"')]),
    "err-image-pull": ("Pod", pod([cstatus(state=waiting("ErrImagePull"))]), [
        ("container/app/ImagePull", "ErrImagePull", H, POD, APP, None, "app of shop/cart-1 is ErrImagePull")]),
    "invalid-image": ("Pod", pod([cstatus(state=waiting("InvalidImageName"))]), [
        ("container/app/InvalidImageName", "InvalidImageName", H, POD, APP, None, "InvalidImageName")]),
    "config-error": ("Pod", pod([cstatus(state=waiting("CreateContainerConfigError", 'secret "cart-db" not found'))]), [
        ("container/app/CreateContainerConfigError", "CreateContainerConfigError", H, POD, APP, None, "cart-db")]),
    "init-container": ("Pod", pod([cstatus(state=waiting("PodInitializing"))], init=[
        cstatus("migrate", waiting("CrashLoopBackOff"), terminated("Error", 2, "09:55"), 3)], phase="Pending"), [
        ("container/migrate/CrashLoopBackOff", "CrashLoopBackOff", H, POD, {**P, "container": "migrate"}, ts("09:55"),
         "container migrate")]),
    "evicted": ("Pod", pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory."), [
        ("pod/Evicted", "Evicted", H, POD, P, None, "evicted: The node was low on resource: memory.")]),
    "unschedulable": ("Pod", pod(phase="Pending", conditions=[cond(
        "PodScheduled", "False", "Unschedulable", "0/3 nodes are available: 3 Insufficient cpu.", "09:10")]), [
        ("pod/FailedScheduling", "FailedScheduling", M, POD, P, ts("09:10"), "3 Insufficient cpu")]),
    "node-not-ready": ("Node", node(cond("Ready", "False", "KubeletNotReady", "PLEG is not healthy", "09:45")), [
        ("node/NodeNotReady", "NodeNotReady", C, NODE, {"node": "n1"}, ts("09:45"), "PLEG is not healthy")]),
    "node-unknown": ("Node", node(cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting", "09:46")), [
        ("node/NodeNotReady", "NodeNotReady", C, NODE, {"node": "n1"}, ts("09:46"), "Ready=Unknown")]),
    "node-pressure": ("Node", node(*(cond(t, "True", "x", at=at) for t, at in (
        ("MemoryPressure", "09:01"), ("DiskPressure", "09:02"), ("PIDPressure", "09:03"), ("NetworkUnavailable", "09:04")))), [
        (f"node/{name}", name, H, NODE, {"node": "n1"}, ts(at), f"{t}=True") for name, t, at in (
            ("NodeMemoryPressure", "MemoryPressure", "09:01"), ("NodeDiskPressure", "DiskPressure", "09:02"),
            ("NodePIDPressure", "PIDPressure", "09:03"), ("NodeNetworkUnavailable", "NetworkUnavailable", "09:04"))]),
    "deployment": ("Deployment", deployment(
        cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", "09:05"),
        cond("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "cart-7d9" has timed out', "09:15"),
        available=1), [
        ("deployment/Unavailable", "DeploymentUnavailable", H, DEP, {"namespace": "shop", "deployment": "cart"},
         ts("09:05"), "1/3 available (MinimumReplicasUnavailable)"),
        ("deployment/ProgressDeadlineExceeded", "ProgressDeadlineExceeded", M, DEP,
         {"namespace": "shop", "deployment": "cart"}, ts("09:15"), "rollout is stuck")]),
    "probe-core": ("Event", core_event("Unhealthy", 5, message=PROBE), [
        ("event/Unhealthy", "ProbeFailure", M, POD, P, ts("09:20"), f"Unhealthy x5 on Pod/cart-1: {PROBE}")]),
    "probe-events.k8s.io": ("Event", new_event("Unhealthy", series=4, message=PROBE), [
        ("event/Unhealthy", "ProbeFailure", M, POD, P, datetime(2026, 11, 22, 9, 25, 0, 123456, UTC), "x4")]),
    "probe-deprecated": ("Event", new_event("Unhealthy", deprecated=3, message=PROBE), [
        ("event/Unhealthy", "ProbeFailure", M, POD, P, ts("09:20"), PROBE)]),
    **{f"event-{r}": ("Event", core_event(r, n), [(f"event/{r}", r, sev, POD, P, ts("09:20"), f"{r} x{n} on Pod/cart-1")])
       for r, n, sev in (("FailedMount", 1, M), ("FailedAttachVolume", 1, M), ("FailedCreatePodSandBox", 2, M))},
    "oom-killing-node": ("Event", core_event("OOMKilling", 1, kind="Node", name="n1", ns=None), [
        ("event/OOMKilling", "OOMKilling", H, NODE, {"node": "n1"}, ts("09:20"), "on Node/n1")]),
    "deployment-event": ("Event", new_event("FailedCreatePodSandBox", kind="Deployment", name="cart"), [
        ("event/FailedCreatePodSandBox", "FailedCreatePodSandBox", M, DEP, {"namespace": "shop", "deployment": "cart"},
         datetime(2026, 11, 22, 9, 25, 0, 123456, UTC), "on Deployment/cart")]),
}


@pytest.mark.parametrize(("kind", "obj", "expected"), CASES.values(), ids=CASES.keys())
def test_recognised_conditions(kind: str, obj: dict, expected: list[tuple]) -> None:
    found = conditions(kind, obj, ALL)
    assert [(c.key, c.name, c.severity, c.resource.key, {k: v for k, v in c.labels.items() if k != "reason"}, c.since)
            for c in found] == [e[:6] for e in expected]
    for c, e in zip(found, expected, strict=True):
        assert c.labels["reason"] == c.name and e[6] in c.summary


NOISE = {
    "running": ("Pod", pod([cstatus(last=terminated("Error", 1, "08:30"), restarts=3)])),
    "completed": ("Pod", pod([cstatus(state=terminated("Completed", 0, "09:00"))], phase="Succeeded")),
    "creating": ("Pod", pod([cstatus(state=waiting("ContainerCreating"))], phase="Pending")),
    "gated": ("Pod", pod(phase="Pending", conditions=[cond("PodScheduled", "False", "SchedulingGated")])),
    "ready-node": ("Node", node(cond("NetworkUnavailable", "False", "RouteCreated"))),
    "available": ("Deployment", deployment(cond("Available", "True", "MinimumReplicasAvailable"),
                                           cond("Progressing", "True", "NewReplicaSetAvailable"), available=3)),
    "normal-event": ("Event", core_event("Pulled", 40, type_="Normal")),
    "normal-unhealthy": ("Event", core_event("Unhealthy", 40, type_="Normal")),
    "unknown-warning": ("Event", core_event("DNSConfigForming", 40)),
    "probe-once": ("Event", core_event("Unhealthy", 1)),
    "probe-no-count": ("Event", core_event("Unhealthy", None)),
    "probe-series-2": ("Event", new_event("Unhealthy", series=2)),
    "probe-no-series": ("Event", new_event("Unhealthy")),
    "probe-deprecated-2": ("Event", new_event("Unhealthy", deprecated=2)),
    "backoff": ("Event", core_event("BackOff", 9)),  # the container's waiting state says it
    "evicted-event": ("Event", core_event("Evicted", 1)),  # the pod's status says it
    "no-involved-name": ("Event", core_event("FailedMount", 1, name="")),
}


@pytest.mark.parametrize(("kind", "obj"), NOISE.values(), ids=NOISE.keys())
def test_noise_produces_nothing(kind: str, obj: dict) -> None:
    assert conditions(kind, obj, ALL) == []


@pytest.mark.parametrize("fmt", ["core", "series", "deprecated"])
@pytest.mark.parametrize(("threshold", "count", "fires"), [(3, 2, False), (3, 3, True), (3, 9, True),
                                                          (5, 4, False), (5, 5, True), (1, 1, True)])
def test_probe_failure_threshold(fmt: str, threshold: int, count: int, fires: bool) -> None:
    ev = {"core": lambda: core_event("Unhealthy", count), "series": lambda: new_event("Unhealthy", series=count),
          "deprecated": lambda: new_event("Unhealthy", deprecated=count)}[fmt]()
    found = conditions("Event", ev, WatchFilter(probe_failure_threshold=threshold))
    assert [c.name for c in found] == (["ProbeFailure"] if fires else [])


def test_one_event_read_through_both_apis_is_one_condition() -> None:
    core = conditions("Event", core_event("Unhealthy", 3, message=PROBE), ALL)
    new = conditions("Event", new_event("Unhealthy", deprecated=3, message=PROBE), ALL)
    assert core == new and len(core) == 1
    assert diff("uid-ev", diff("uid-ev", {}, core, NOW).state, new, NOW).signals == []


def test_event_signals_share_the_resource_of_the_object_they_are_about() -> None:
    about_pod = conditions("Event", core_event("Unhealthy", 5), ALL) + conditions("Pod", pod([CRASH]), ALL)
    assert {c.resource for c in about_pod} == {Resource(namespace="shop", kind="Pod", name="cart-1")}
    about_node = conditions("Event", core_event("OOMKilling", kind="Node", name="n1", ns="default"), ALL)
    about_node += conditions("Node", node(cond("Ready", "False")), ALL)
    assert {c.resource.key for c in about_node} == {"/Node/n1"}  # cluster-scoped, whatever the event's namespace


@pytest.mark.parametrize(
    ("include", "exclude", "namespace", "admitted"),
    [
        ((), (), "shop", True),
        ((), ("kube-*",), "kube-system", False),
        ((), ("kube-*",), "shop", True),
        (("shop", "team-*"), (), "team-a", True),
        (("shop", "team-*"), (), "billing", False),
        (("team-*",), ("team-secret",), "team-secret", False),
        (("team-*",), (), "Team-A", False),  # case-sensitive, like namespace names
        (("shop",), ("*",), "", True),  # cluster-scoped: always
    ],
)
def test_watch_filter(include: tuple, exclude: tuple, namespace: str, admitted: bool) -> None:
    assert WatchFilter(include, exclude).admits(namespace) is admitted


@pytest.mark.parametrize(("include", "exclude", "exact"), [
    ((), (), None),  # every namespace: one cluster-wide list per kind
    (("shop-*", "payments"), (), None),  # a glob needs every namespace listed
    (("pay?",), (), None),
    (("[ab]x",), (), None),
    (("shop", "payments", "shop"), (), ("shop", "payments")),  # watched one by one, each once
    (("shop", "staging"), ("stag*",), ("shop",)),  # the excluded are not watched at all
    (("shop",), ("shop",), ()),
])
def test_exact_namespaces_are_watched_one_by_one(include: tuple, exclude: tuple, exact: tuple | None) -> None:
    assert WatchFilter(include, exclude).exact_namespaces() == exact


def test_conditions_apply_the_filter_to_the_resource_namespace() -> None:
    only_shop = WatchFilter(include=("shop",))
    elsewhere = pod([CRASH]) | {"metadata": meta("cart-1", "billing")}
    assert conditions("Pod", elsewhere, only_shop) == []
    assert [c.name for c in conditions("Pod", pod([CRASH]), only_shop)] == ["CrashLoopBackOff"]
    assert conditions("Event", core_event("FailedMount", ns="billing"), only_shop) == []
    assert [c.name for c in conditions("Node", node(cond("Ready", "False")), only_shop)] == ["NodeNotReady"]
    assert [c.name for c in conditions("Event", core_event("OOMKilling", kind="Node", name="n1", ns=None),
                                       WatchFilter(exclude=("*",)))] == ["OOMKilling"]
    with pytest.raises(ValueError, match="unknown kind"):
        conditions("StatefulSet", {}, ALL)


# --- diff -------------------------------------------------------------------------------------------------------


def test_a_new_condition_fires_once_and_status_churn_is_silent() -> None:
    first = diff("uid-1", {}, conditions("Pod", pod([CRASH]), ALL), NOW, origin="prod-eu")
    (s,) = first.signals
    assert (s.status, s.source, s.origin, s.name, s.severity, s.resource_key) == (
        "firing", "kubernetes", "prod-eu", "CrashLoopBackOff", H, POD)
    assert s.fingerprint == fingerprint("uid-1", "container/app/CrashLoopBackOff")
    assert (s.starts_at, s.ends_at, s.observed_at) == (ts("09:58"), None, NOW)
    assert s.labels == {**APP, "reason": "CrashLoopBackOff", "alertname": "CrashLoopBackOff", "source": "kubernetes"}
    churned = pod([CRASH | {"restartCount": 8, "lastState": terminated("Error", 1, "09:59")}], podIP="10.0.3.18")
    again = diff("uid-1", first.state, conditions("Pod", churned, ALL), NOW + timedelta(minutes=5))
    assert again.signals == [] and again.state == first.state


def test_a_condition_without_a_timestamp_starts_now() -> None:
    (s,) = diff("uid-1", {}, conditions("Pod", pod(phase="Failed", reason="Evicted"), ALL), NOW).signals
    assert s.starts_at == NOW and s.name == "Evicted"


def test_a_vanished_condition_resolves_with_the_identity_of_its_firing() -> None:
    oom = pod([cstatus(state=waiting("CrashLoopBackOff"), last=terminated("OOMKilled", 137, "09:57"))])
    fired = diff("uid-1", {}, conditions("Pod", oom, ALL), NOW)
    later = NOW + timedelta(minutes=3)
    recovered = pod([cstatus(last=terminated("OOMKilled", 137, "09:57"), restarts=4)])  # running; OOM still last
    d = diff("uid-1", fired.state, conditions("Pod", recovered, ALL), later)
    (resolved,) = d.signals
    (firing,) = [s for s in fired.signals if s.name == "CrashLoopBackOff"]
    assert (resolved.status, resolved.name, resolved.fingerprint, resolved.starts_at, resolved.ends_at) == (
        "resolved", "CrashLoopBackOff", firing.fingerprint, firing.starts_at, later)
    assert resolved.signal_id != firing.signal_id and resolved.observed_at == later
    assert list(d.state) == ["container/app/OOMKilled"]


def test_deleting_the_object_resolves_everything() -> None:
    fired = diff("uid-d", {}, conditions("Deployment", CASES["deployment"][1], ALL), NOW)
    d = diff("uid-d", fired.state, [], NOW + timedelta(hours=1))
    assert sorted((s.status, s.name) for s in d.signals) == [
        ("resolved", "DeploymentUnavailable"), ("resolved", "ProgressDeadlineExceeded")]
    assert {s.fingerprint for s in d.signals} == {s.fingerprint for s in fired.signals} and d.state == {}
    assert all(s.ends_at == NOW + timedelta(hours=1) for s in d.signals)


def test_signal_ids_are_deterministic_and_fingerprints_distinct() -> None:
    found = conditions("Pod", CASES["crashloop-after-oom"][1], ALL)
    a, b = diff("uid-1", {}, found, NOW), diff("uid-1", {}, found, NOW)
    assert [s.signal_id for s in a.signals] == [s.signal_id for s in b.signals]
    assert len({s.fingerprint for s in a.signals}) == 2  # one per condition
    other_pod = diff("uid-2", {}, found, NOW)  # same name, new uid: a recreated pod
    assert {s.fingerprint for s in other_pod.signals}.isdisjoint(s.fingerprint for s in a.signals)
    resolved = diff("uid-1", a.state, [], NOW).signals
    assert {s.signal_id for s in resolved}.isdisjoint(s.signal_id for s in a.signals)
    assert [s.signal_id for s in resolved] == [s.signal_id for s in diff("uid-1", b.state, [], NOW).signals]


def test_state_restored_from_the_changelog_emits_nothing_twice() -> None:
    fired = diff("uid-1", {}, conditions("Pod", pod([CRASH]), ALL), NOW)
    stored = WatchState(uid="uid-1", kind="Pod", namespace="shop", name="cart-1", conditions=fired.state)
    restored = WatchState.model_validate_json(stored.model_dump_json()).conditions
    assert diff("uid-1", restored, conditions("Pod", pod([CRASH]), ALL), NOW).signals == []
    later = NOW + timedelta(minutes=1)
    assert [s.signal_id for s in diff("uid-1", restored, [], later).signals] == [
        s.signal_id for s in diff("uid-1", fired.state, [], later).signals]


# --- property: replaying any history --------------------------------------------------------------------------

KEYS = ["container/app/CrashLoopBackOff", "container/app/OOMKilled", "pod/Evicted", "pod/FailedScheduling"]


def synthetic(key: str) -> Condition:
    return Condition(key=key, name=key.rsplit("/", 1)[1], severity=H, summary=key,
                     resource=Resource(namespace="shop", kind="Pod", name="cart-1"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.sampled_from(KEYS)), min_size=1, max_size=12), st.lists(st.booleans(), max_size=12))
def test_replaying_any_history_alternates_and_ends_in_the_last_state(steps: list[set[str]], twice: list[bool]) -> None:
    state: dict = {}
    per_key: dict[str, list[str]] = defaultdict(list)
    ids: list[str] = []
    for i, keys in enumerate(steps):
        now = NOW + timedelta(minutes=i)
        d = diff("uid-1", state, [synthetic(k) for k in sorted(keys)], now)
        for s in d.signals:
            per_key[s.summary].append(s.status)  # summary = key
            ids.append(s.signal_id)
        if i < len(twice) and twice[i]:  # the same step redelivered (a re-list) changes nothing
            again = diff("uid-1", d.state, [synthetic(k) for k in keys], now)
            assert again.signals == [] and again.state == d.state
        state = d.state
    for statuses in per_key.values():
        assert statuses == ["firing", "resolved"] * (len(statuses) // 2) + ["firing"] * (len(statuses) % 2)
    assert {k for k, v in per_key.items() if v[-1] == "firing"} == set(state) == steps[-1]
    assert len(ids) == len(set(ids))  # every episode has its own ids


# --- episodes, image pulls, crash loops between back-offs ------------------------------------------------------


def test_a_condition_that_comes_back_is_a_new_episode_with_new_ids() -> None:
    unschedulable = pod(phase="Pending", conditions=[cond("PodScheduled", "False", "Unschedulable", "0/3 nodes", "09:00")])
    counter = iter(range(100))

    def episode() -> str:
        return f"e{next(counter)}"

    first = diff("uid-1", {}, conditions("Pod", unschedulable, ALL), NOW, episode=episode)
    gone = diff("uid-1", first.state, [], NOW)
    again = diff("uid-1", gone.state, conditions("Pod", unschedulable, ALL), NOW, episode=episode)
    ids = [s.signal_id for d in (first, gone, again) for s in d.signals]
    assert len(ids) == len(set(ids)) == 3  # the same since and time, yet three distinct signals


def test_the_kubelet_alternating_image_pull_reasons_is_one_condition() -> None:
    err = diff("uid-1", {}, conditions("Pod", pod([cstatus(state=waiting("ErrImagePull"))]), ALL), NOW)
    backoff = diff("uid-1", err.state, conditions("Pod", pod([cstatus(state=waiting("ImagePullBackOff"))]), ALL), NOW)
    assert [s.name for s in err.signals] == ["ErrImagePull"] and backoff.signals == []


def test_a_crash_loop_stays_on_between_back_offs_until_the_container_settles() -> None:
    looping = pod([cstatus(state=waiting("CrashLoopBackOff"), last=terminated("Error", 1, "09:58"), restarts=7)])
    fired = diff("uid-1", {}, conditions("Pod", looping, ALL, NOW), NOW)
    running = pod([cstatus(state={"running": {"startedAt": "2026-11-22T09:59:00Z"}},
                           last=terminated("Error", 1, "09:58"), restarts=8)])
    soon = NOW + timedelta(minutes=2)
    between = diff("uid-1", fired.state, conditions("Pod", running, ALL, soon, fired.state), soon)
    assert between.signals == [] and between.state == fired.state  # restarting is not recovering
    later = NOW + timedelta(minutes=5)
    settled = diff("uid-1", between.state, conditions("Pod", running, ALL, later, between.state), later)
    assert [(s.name, s.status) for s in settled.signals] == [("CrashLoopBackOff", "resolved")]
    # A container that merely restarted once, never backing off, is not a crash loop.
    assert conditions("Pod", running, ALL, soon, {}) == []
