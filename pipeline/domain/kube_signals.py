"""Kubernetes objects -> signals. Pure: raw API objects (dicts) in, conditions and signals out.

Every watched object (Pod, Node, Deployment, Event) has a set of *conditions* that matter to an SRE: a
container in CrashLoopBackOff or last OOMKilled, an image that cannot be pulled, an evicted or
unschedulable pod, a node not ready or under pressure, a deployment without minimum availability, a
Warning event repeated often enough (probe failures, mount failures). `diff` compares an object's current
conditions with the ones already emitted for it: a new condition fires, a vanished one (or a deleted
object) resolves, anything else emits nothing — so status churn, Normal events and re-lists are silent, and
a restarted watcher that remembers what it emitted re-emits nothing.

A signal's resource is the workload object the condition is about (an Event's involved object), so an
Alertmanager alert with `namespace`/`pod` labels and a pod's CrashLoopBackOff share one resource key and
correlate into one incident.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from pipeline.events import Resource, Severity, Signal, WatchedCondition
from pipeline.events.base import uuid5_str

_SIGNAL_NAMESPACE = uuid.UUID("8f1d7c52-2a4e-4d0b-9c36-5b8e2f1a7d90")
WAITING_REASONS = {
    "CrashLoopBackOff": Severity.HIGH,
    "ImagePullBackOff": Severity.HIGH,
    "ErrImagePull": Severity.HIGH,
    "InvalidImageName": Severity.HIGH,
    "CreateContainerConfigError": Severity.HIGH,
}
NODE_PRESSURE = {"MemoryPressure": "NodeMemoryPressure", "DiskPressure": "NodeDiskPressure",
                 "PIDPressure": "NodePIDPressure", "NetworkUnavailable": "NodeNetworkUnavailable"}
# Warning events worth a signal, with the count from which they are (None: the probe failure threshold; a
# single probe failure is noise). Not here because the objects say it better: Evicted (pod status),
# BackOff (the container's CrashLoopBackOff / ImagePullBackOff state), FailedScheduling (PodScheduled).
EVENT_REASONS = {"Unhealthy": None, "FailedMount": 1, "FailedAttachVolume": 1, "OOMKilling": 1,
                 "FailedCreatePodSandBox": 1}
EVENT_SEVERITY = {"Unhealthy": Severity.MEDIUM, "OOMKilling": Severity.HIGH}
IMAGE_PULL = {"ImagePullBackOff", "ErrImagePull"}  # the kubelet alternates them: one condition


@dataclass(frozen=True, slots=True)
class Condition:
    """Something wrong with a resource, as an object shows it now."""

    key: str  # unique within the object: e.g. "container/app/CrashLoopBackOff"
    name: str  # the signal name: the Kubernetes reason
    severity: Severity
    resource: Resource
    summary: str
    since: datetime | None = None  # when the object says it started, if it says
    labels: Mapping[str, str] = field(default_factory=dict)


GLOB_CHARACTERS = "*?["  # what fnmatch reads as a pattern rather than a name


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Namespace include/exclude lists (glob patterns); empty include means every namespace. Cluster-scoped
    objects (nodes) always pass."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    probe_failure_threshold: int = 3
    crashloop_settle_seconds: float = 300.0  # a crash-looping container is over once it ran this long

    def admits(self, namespace: str) -> bool:
        if not namespace:
            return True
        if self.include and not any(fnmatchcase(namespace, p) for p in self.include):
            return False
        return not any(fnmatchcase(namespace, p) for p in self.exclude)

    def exact_namespaces(self) -> tuple[str, ...] | None:
        """The namespaces to list and watch one by one when the include list names them exactly (no glob
        character in any entry), those excluded left out; None when it is empty or has a glob: every
        namespace at once (`/api/v1/pods`), filtered by `admits`. Per-namespace watches need only rights in
        those namespaces (a Role in each), where watching every namespace needs a ClusterRole."""
        if not self.include or any(any(c in p for c in GLOB_CHARACTERS) for p in self.include):
            return None
        return tuple(dict.fromkeys(n for n in self.include if self.admits(n)))


def _time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def pod_conditions(pod: Mapping[str, Any]) -> list[Condition]:
    meta, status = _meta(pod), pod.get("status") or {}
    resource = Resource(namespace=meta.get("namespace", ""), kind="Pod", name=meta.get("name", ""))
    base = {"namespace": resource.namespace, "pod": resource.name}
    out: list[Condition] = []
    for cs in _list(status.get("initContainerStatuses")) + _list(status.get("containerStatuses")):
        container = str(cs.get("name", ""))
        labels = {**base, "container": container}
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_REASONS:
            last = ((cs.get("lastState") or {}).get("terminated") or {})
            out.append(Condition(
                key=f"container/{container}/{'ImagePull' if reason in IMAGE_PULL else reason}", name=reason,
                severity=WAITING_REASONS[reason],
                resource=resource, labels={**labels, "reason": reason},
                summary=f"container {container} of {resource.namespace}/{resource.name} is {reason}"
                        + (f" ({cs.get('restartCount', 0)} restarts)" if reason == "CrashLoopBackOff" else "")
                        + (f": {waiting.get('message')}" if waiting.get("message") else ""),
                since=_time(last.get("finishedAt")) if reason == "CrashLoopBackOff" else None,
            ))
        for state_name in ("state", "lastState"):
            terminated = ((cs.get(state_name) or {}).get("terminated") or {})
            if terminated.get("reason") == "OOMKilled":
                out.append(Condition(
                    key=f"container/{container}/OOMKilled", name="OOMKilled", severity=Severity.HIGH,
                    resource=resource, labels={**labels, "reason": "OOMKilled"},
                    summary=f"container {container} of {resource.namespace}/{resource.name} was OOMKilled "
                            f"(exit code {terminated.get('exitCode', 137)})",
                    since=_time(terminated.get("finishedAt")),
                ))
                break
    if status.get("reason") == "Evicted":
        out.append(Condition(key="pod/Evicted", name="Evicted", severity=Severity.HIGH, resource=resource,
                             labels={**base, "reason": "Evicted"},
                             summary=f"pod {resource.namespace}/{resource.name} was evicted: "
                                     f"{status.get('message', '')}".rstrip(": ")))
    for cond in _list(status.get("conditions")):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                cond.get("reason") == "Unschedulable":
            out.append(Condition(key="pod/FailedScheduling", name="FailedScheduling", severity=Severity.MEDIUM,
                                 resource=resource, labels={**base, "reason": "FailedScheduling"},
                                 summary=f"pod {resource.namespace}/{resource.name} cannot be scheduled: "
                                         f"{cond.get('message', '')}".rstrip(": "),
                                 since=_time(cond.get("lastTransitionTime"))))
    return out


def node_conditions(node: Mapping[str, Any]) -> list[Condition]:
    name = _meta(node).get("name", "")
    resource = Resource(namespace="", kind="Node", name=name)
    out = []
    for cond in _list((node.get("status") or {}).get("conditions")):
        kind, value = cond.get("type"), cond.get("status")
        signal = None
        if kind == "Ready" and value != "True":
            signal, severity = "NodeNotReady", Severity.CRITICAL
        elif kind in NODE_PRESSURE and value == "True":
            signal, severity = NODE_PRESSURE[kind], Severity.HIGH
        if signal:
            out.append(Condition(key=f"node/{signal}", name=signal, severity=severity, resource=resource,
                                 labels={"node": name, "reason": signal},
                                 summary=f"node {name}: {kind}={value}"
                                         + (f" ({cond.get('reason')}: {cond.get('message')})"
                                            if cond.get("reason") else ""),
                                 since=_time(cond.get("lastTransitionTime"))))
    return out


def deployment_conditions(deployment: Mapping[str, Any]) -> list[Condition]:
    meta, status = _meta(deployment), deployment.get("status") or {}
    resource = Resource(namespace=meta.get("namespace", ""), kind="Deployment", name=meta.get("name", ""))
    labels = {"namespace": resource.namespace, "deployment": resource.name}
    out = []
    for cond in _list(status.get("conditions")):
        if cond.get("type") == "Available" and cond.get("status") == "False":
            out.append(Condition(
                key="deployment/Unavailable", name="DeploymentUnavailable", severity=Severity.HIGH,
                resource=resource, labels={**labels, "reason": "DeploymentUnavailable"},
                summary=f"deployment {resource.namespace}/{resource.name} is unavailable: "
                        f"{status.get('availableReplicas', 0)}/{(deployment.get('spec') or {}).get('replicas', 1)} "
                        f"available ({cond.get('reason', '')})",
                since=_time(cond.get("lastTransitionTime"))))
        elif cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            out.append(Condition(
                key="deployment/ProgressDeadlineExceeded", name="ProgressDeadlineExceeded", severity=Severity.MEDIUM,
                resource=resource, labels={**labels, "reason": "ProgressDeadlineExceeded"},
                summary=f"deployment {resource.namespace}/{resource.name} rollout is stuck",
                since=_time(cond.get("lastTransitionTime"))))
    return out


def event_conditions(event: Mapping[str, Any], threshold: int) -> list[Condition]:
    """A Warning event of a known reason, counted often enough, is a condition of its involved object while
    the Event exists. Both APIs are read: core/v1 (`involvedObject`, `count`) and events.k8s.io/v1
    (`regarding`, `series.count`, `note`, `deprecatedCount`)."""
    if event.get("type") != "Warning":
        return []
    reason = event.get("reason")
    if reason not in EVENT_REASONS:
        return []
    about = event.get("involvedObject") or event.get("regarding") or {}
    kind, name = about.get("kind"), about.get("name")
    if not kind or not name:
        return []
    series = event.get("series") or {}
    count = max(int(event.get("count") or 0), int(series.get("count") or 0), int(event.get("deprecatedCount") or 0), 1)
    needed = EVENT_REASONS[reason] or threshold
    if count < needed:
        return []
    namespace = about.get("namespace", "") if kind != "Node" else ""
    resource = Resource(namespace=namespace, kind=kind, name=name)
    message = event.get("message") or event.get("note") or ""
    name_of = {"Unhealthy": "ProbeFailure"}.get(reason, reason)
    labels = {**({"namespace": namespace} if namespace else {}), kind.lower(): name, "reason": name_of}
    return [Condition(key=f"event/{reason}", name=name_of, severity=EVENT_SEVERITY.get(reason, Severity.MEDIUM),
                      resource=resource, labels=labels, summary=f"{reason} x{count} on {kind}/{name}: {message}",
                      since=_time(event.get("firstTimestamp") or event.get("eventTime")
                                  or event.get("deprecatedFirstTimestamp")))]


def settling(pod: Mapping[str, Any], firing: Iterable[str], now: datetime, settle_seconds: float) -> list[Condition]:
    """Crash loops that are still on although the container is between back-offs. The kubelet shows
    CrashLoopBackOff only while it waits to restart; in between the container runs (and crashes again). A
    CrashLoopBackOff already firing stays on while the container's last crash is less than
    `settle_seconds` old, so one crash loop is one episode, not one per restart."""
    meta, status = _meta(pod), pod.get("status") or {}
    resource = Resource(namespace=meta.get("namespace", ""), kind="Pod", name=meta.get("name", ""))
    keys = set(firing)
    out = []
    for cs in _list(status.get("initContainerStatuses")) + _list(status.get("containerStatuses")):
        container = str(cs.get("name", ""))
        key = f"container/{container}/CrashLoopBackOff"
        if key not in keys:
            continue
        last = ((cs.get("lastState") or {}).get("terminated") or {})
        finished = _time(last.get("finishedAt"))
        if last.get("reason") == "Completed" or finished is None or int(cs.get("restartCount") or 0) == 0:
            continue
        if (now - finished).total_seconds() < settle_seconds:
            out.append(Condition(key=key, name="CrashLoopBackOff", severity=Severity.HIGH, resource=resource,
                                 labels={"namespace": resource.namespace, "pod": resource.name,
                                         "container": container, "reason": "CrashLoopBackOff"},
                                 summary=f"container {container} of {resource.namespace}/{resource.name} "
                                         f"restarted after a crash {cs.get('restartCount')} times",
                                 since=finished))
    return out


def conditions(kind: str, obj: Mapping[str, Any], flt: WatchFilter, now: datetime | None = None,
               firing: Iterable[str] = ()) -> list[Condition]:
    """The conditions of one object that pass the filter. With `now` and the keys already `firing`, a crash
    loop between two back-offs stays on (see `settling`)."""
    if kind == "Pod":
        found = pod_conditions(obj)
        if now is not None:
            present = {c.key for c in found}
            found += [c for c in settling(obj, firing, now, flt.crashloop_settle_seconds) if c.key not in present]
    elif kind == "Node":
        found = node_conditions(obj)
    elif kind == "Deployment":
        found = deployment_conditions(obj)
    elif kind == "Event":
        found = event_conditions(obj, flt.probe_failure_threshold)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return [c for c in found if flt.admits(c.resource.namespace)]


def fingerprint(uid: str, key: str) -> str:
    """Stable identity of one condition of one object (the object's uid survives renames and re-lists)."""
    return hashlib.sha256(f"{uid}\x1f{key}".encode()).hexdigest()[:16]


def signal_id(fp: str, starts_at: datetime, status: str, episode: str = "") -> str:
    """Deterministic from the condition's identity, start, episode and status: a replay of the same state
    gives the same ids; a condition that comes back (a new episode) gets new ones."""
    return uuid5_str(_SIGNAL_NAMESPACE, f"{fp}|{starts_at.isoformat()}|{episode}|{status}")


@dataclass
class Diff:
    signals: list[Signal]
    state: dict[str, WatchedCondition]  # what is emitted and still firing, by condition key


def diff(uid: str, emitted: Mapping[str, WatchedCondition], current: Iterable[Condition], now: datetime,
         origin: str = "", episode: Callable[[], str] | None = None) -> Diff:
    """Signals for the conditions that appeared (firing) and disappeared (resolved) since `emitted`. Each
    firing starts an episode (`episode()`, default the time it was seen), kept until it resolves."""
    current_by_key = {c.key: c for c in current}
    signals: list[Signal] = []
    state: dict[str, WatchedCondition] = {}
    for key, cond in current_by_key.items():
        known = emitted.get(key)
        if known is not None:
            state[key] = known
            continue
        fp = fingerprint(uid, key)
        starts_at = cond.since or now
        watched = WatchedCondition(fingerprint=fp, name=cond.name, severity=cond.severity, resource=cond.resource,
                                   starts_at=starts_at, summary=cond.summary, labels=dict(cond.labels),
                                   episode=episode() if episode is not None else now.isoformat())
        state[key] = watched
        signals.append(_signal(watched, "firing", now, origin))
    for key, gone in emitted.items():
        if key not in current_by_key:
            signals.append(_signal(gone, "resolved", now, origin))
    return Diff(signals, state)


def _signal(c: WatchedCondition, status: str, now: datetime, origin: str) -> Signal:
    return Signal(
        signal_id=signal_id(c.fingerprint, c.starts_at, status, c.episode),
        source="kubernetes",
        origin=origin,
        resource=c.resource,
        name=c.name,
        status=status,
        severity=c.severity,
        summary=c.summary,
        labels={**c.labels, "alertname": c.name, "source": "kubernetes"},
        fingerprint=c.fingerprint,
        starts_at=c.starts_at,
        ends_at=now if status == "resolved" else None,
        observed_at=now,
    )
