"""Deployment-method detection: how a workload is deployed (ArgoCD, Helm, an operator, by hand), so a
remediation goes through the tool that owns it instead of being reverted by it. Pure: raw API objects
(dicts) in, a `DeploymentInfo` out; the time is passed in.

The coordination engine (contract §6.1) looks only at the asked object's own annotations and labels. Here
the object's controllers are looked at too (`chain`: Pod → ReplicaSet → Deployment, Pod → StatefulSet,
Deployment → a custom resource), and ArgoCD Applications whose `status.resources` list the workload.

Rules, first match wins, each tried on the top built-in workload of the chain first, then on the objects
below it down to the asked object (a Pod's own labels count when its Deployment says nothing):

| # | rule | method | confidence | source |
|---|------|--------|-----------:|--------|
| 1 | annotation `argocd.argoproj.io/tracking-id` | argocd | 0.95 | `annotation:argocd.argoproj.io/tracking-id` |
| 2 | label `argocd.argoproj.io/instance` | argocd | 0.95 | `label:argocd.argoproj.io/instance` |
| 3 | an Application's `status.resources` lists the workload | argocd | 0.95 | `argocd-application:<name>` |
| 4 | a controller ownerReference to a custom resource | operator | 0.90 | `ownerReference:<Kind>/<name>` |
| 5 | annotation `meta.helm.sh/release-name` | helm | 0.90 | `annotation:meta.helm.sh/release-name` |
| 6 | label `app.kubernetes.io/managed-by: Helm` | helm | 0.85 | `label:app.kubernetes.io/managed-by` |
| 7 | label `app.kubernetes.io/managed-by` containing `operator` | operator | 0.80 | `label:app.kubernetes.io/managed-by` |
| 8 | nothing of the above | manual | 0.60 | `default` |

Rules 1, 2, 5, 7 and 8 are the engine's, in its order. Rule 4 comes before Helm because the Helm-based
operators (operator-sdk) stamp Helm's release annotation on what they create: a `helm rollback` there
would be undone by the operator, which writes the workload's spec. ArgoCD stays first, as in the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["argocd", "helm", "operator", "manual", "unknown"]

TRACKING_ID = "argocd.argoproj.io/tracking-id"
ARGOCD_INSTANCE = "argocd.argoproj.io/instance"
HELM_RELEASE = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
HELM_CHART = "helm.sh/chart"
MANAGED_BY = "app.kubernetes.io/managed-by"
APP_INSTANCE = "app.kubernetes.io/instance"
APP_NAME = "app.kubernetes.io/name"
APP_VERSION = "app.kubernetes.io/version"

HIGH_CONFIDENCE = 0.80  # the engine's bands: high >= 0.80, medium 0.60-0.80, low < 0.60
MEDIUM_CONFIDENCE = 0.60

# Controllers Kubernetes itself runs: an ownerReference to one of these is not an operator.
BUILT_IN_CONTROLLERS: frozenset[tuple[str, str]] = frozenset({
    ("apps", "ReplicaSet"), ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
    ("extensions", "ReplicaSet"), ("extensions", "Deployment"), ("extensions", "DaemonSet"),
    ("batch", "Job"), ("batch", "CronJob"), ("", "Node"), ("", "ReplicationController"),
})
WORKLOAD_KINDS: frozenset[tuple[str, str]] = BUILT_IN_CONTROLLERS - {("", "Node")} | {("", "Pod")}
_HELM_MANAGERS = {"helm", "tiller"}


class ResourceRef(BaseModel):
    """A Kubernetes object: the workload a remediation acts on."""

    model_config = ConfigDict(frozen=True)
    api_version: str
    kind: str
    namespace: str
    name: str


class OwnerRef(BaseModel):
    """The custom resource owning the workload (its operator reconciles it)."""

    model_config = ConfigDict(frozen=True)
    api_version: str
    kind: str
    name: str
    namespace: str | None = None  # the workload's namespace for a namespaced resource; None when unknown


class AppRef(BaseModel):
    """An ArgoCD Application; `namespace` is None when only its name is known (from a label)."""

    model_config = ConfigDict(frozen=True)
    name: str
    namespace: str | None = None


class DeploymentInfo(BaseModel):
    """The engine's DeploymentInfo (§5.7) plus `workload`, `owner` and `application`."""

    method: Method
    confidence: float = Field(ge=0.0, le=1.0)
    source: str
    details: dict[str, str] = Field(default_factory=dict)
    detected_at: datetime
    namespace: str
    resource_name: str
    resource_kind: str
    workload: ResourceRef | None = None
    owner: OwnerRef | None = None
    application: AppRef | None = None

    @property
    def confidence_band(self) -> Literal["high", "medium", "low"]:
        if self.confidence >= HIGH_CONFIDENCE:
            return "high"
        return "medium" if self.confidence >= MEDIUM_CONFIDENCE else "low"


def rfc3339(ts: datetime) -> str:
    """UTC, `Z`, sub-second digits only when there are some (as Go's RFC3339Nano)."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        text += f".{ts.microsecond:06d}".rstrip("0")
    return text + "Z"


def to_api(info: DeploymentInfo) -> dict[str, Any]:
    """The engine's JSON for `data` of R9–R11 (snake_case, RFC3339 time) with our three additions."""
    out = info.model_dump(mode="json")
    out["detected_at"] = rfc3339(info.detected_at)
    return out


# ------------------------------------------------------------------------------------------ helpers
def group_of(api_version: str) -> str:
    """`apps/v1` -> `apps`; `v1` -> `` (the core group)."""
    return api_version.rpartition("/")[0]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return _strings(_meta(obj).get("labels"))


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return _strings(_meta(obj).get("annotations"))


def _ref(obj: Mapping[str, Any], namespace: str) -> ResourceRef:
    meta = _meta(obj)
    return ResourceRef(
        api_version=str(obj.get("apiVersion") or ""),
        kind=str(obj.get("kind") or ""),
        namespace=str(meta.get("namespace") or namespace),
        name=str(meta.get("name") or ""),
    )


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with `controller: true`, if any (Kubernetes allows at most one)."""
    for ref in _meta(obj).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True and ref.get("kind") and ref.get("name"):
            return dict(ref)
    return None


def is_built_in(api_version: str, kind: str) -> bool:
    return (group_of(api_version), kind) in BUILT_IN_CONTROLLERS


def _is_workload(obj: Mapping[str, Any]) -> bool:
    return (group_of(str(obj.get("apiVersion") or "")), str(obj.get("kind") or "")) in WORKLOAD_KINDS


def _nonempty(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _app_from_instance(value: str) -> AppRef:
    """ArgoCD writes `<namespace>_<name>` for an Application outside its control-plane namespace."""
    namespace, sep, name = value.partition("_")
    return AppRef(name=name, namespace=namespace) if sep and name and namespace else AppRef(name=value)


def _listed(app: Mapping[str, Any], ref: ResourceRef) -> bool:
    status = app.get("status")
    resources = status.get("resources") if isinstance(status, Mapping) else None
    group = group_of(ref.api_version)
    for res in resources or ():
        if not isinstance(res, Mapping):
            continue
        if (
            (res.get("group") or "") == group
            and res.get("kind") == ref.kind
            and res.get("name") == ref.name
            and (res.get("namespace") or "") in (ref.namespace, "")
        ):
            return True
    return False


def application_listing(applications: Iterable[Mapping[str, Any]], ref: ResourceRef) -> AppRef | None:
    """The Application whose `status.resources` lists `ref` (the first by namespace/name when several)."""
    found = sorted(
        (str(_meta(a).get("namespace") or ""), str(_meta(a).get("name") or ""))
        for a in applications
        if isinstance(a, Mapping) and _listed(a, ref)
    )
    if not found:
        return None
    namespace, name = found[0]
    return AppRef(name=name, namespace=namespace or None)


# ------------------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class _Match:
    method: Method
    confidence: float
    source: str
    details: dict[str, str]
    application: AppRef | None = None


def _argocd(obj: Mapping[str, Any], listed: AppRef | None) -> _Match | None:
    labels, annotations = _labels(obj), _annotations(obj)
    tracking = annotations.get(TRACKING_ID, "")
    instance = labels.get(ARGOCD_INSTANCE, "")
    if tracking:
        # `<app>:<group>/<kind>:<namespace>/<name>`; the app part is `<namespace>_<name>` outside argocd's namespace
        app = instance or tracking.partition(":")[0]
        named = _app_from_instance(app) if app else None
        argocd_app = labels.get(APP_INSTANCE) or (named.name if named else "")
        details = _nonempty(tracking_id=tracking, app_name=app, argocd_app=argocd_app)
        return _Match("argocd", 0.95, f"annotation:{TRACKING_ID}", details, listed or named)
    if instance:
        named = _app_from_instance(instance)
        details = _nonempty(app_name=instance, argocd_app=named.name)
        return _Match("argocd", 0.95, f"label:{ARGOCD_INSTANCE}", details, listed or named)
    return None


def _helm(obj: Mapping[str, Any]) -> _Match | None:
    labels, annotations = _labels(obj), _annotations(obj)
    release = annotations.get(HELM_RELEASE, "")
    if release:
        details = _nonempty(
            release_name=release,
            release_namespace=annotations.get(HELM_RELEASE_NAMESPACE) or _meta(obj).get("namespace"),
            chart=labels.get(HELM_CHART),
            managed_by=labels.get(MANAGED_BY),
        )
        return _Match("helm", 0.90, f"annotation:{HELM_RELEASE}", details)
    return None


def _helm_label(obj: Mapping[str, Any]) -> _Match | None:
    labels = _labels(obj)
    managed_by = labels.get(MANAGED_BY, "")
    if managed_by.lower() in _HELM_MANAGERS:
        details = _nonempty(
            managed_by=managed_by,
            release_name=labels.get(APP_INSTANCE),
            release_namespace=_meta(obj).get("namespace"),
            chart=labels.get(HELM_CHART),
        )
        return _Match("helm", 0.85, f"label:{MANAGED_BY}", details)
    return None


def _operator_label(obj: Mapping[str, Any]) -> _Match | None:
    labels = _labels(obj)
    managed_by = labels.get(MANAGED_BY, "")
    if managed_by.lower() not in _HELM_MANAGERS and "operator" in managed_by.lower():
        details = _nonempty(operator=managed_by, managed_by=managed_by, operator_name=labels.get(APP_NAME))
        return _Match("operator", 0.80, f"label:{MANAGED_BY}", details)
    return None


def _manual(obj: Mapping[str, Any]) -> _Match:
    labels = _labels(obj)
    details = _nonempty(
        reason="no ArgoCD, Helm or operator markers found",
        app=labels.get("app") or labels.get(APP_NAME),
        version=labels.get("version") or labels.get(APP_VERSION),
    )
    return _Match("manual", 0.60, "default", details)


def _operator_owner(path: Sequence[Mapping[str, Any]], namespace: str) -> OwnerRef | None:
    """The nearest controller ownerReference, from the asked object upwards, to a non-built-in kind."""
    for i, obj in enumerate(path):
        ref = controller_ref(obj)
        if ref is None or is_built_in(str(ref.get("apiVersion") or ""), str(ref["kind"])):
            continue
        owner_ns: str | None = str(_meta(obj).get("namespace") or namespace) or None
        fetched = path[i + 1] if i + 1 < len(path) else None
        if fetched is not None and fetched.get("kind") == ref["kind"] and _meta(fetched).get("name") == ref["name"]:
            owner_ns = str(_meta(fetched).get("namespace") or "") or None  # None: cluster-scoped
        return OwnerRef(api_version=str(ref.get("apiVersion") or ""), kind=str(ref["kind"]),
                        name=str(ref["name"]), namespace=owner_ns)
    return None


def detect(
    obj: Mapping[str, Any],
    *,
    chain: Sequence[Mapping[str, Any]] = (),
    applications: Sequence[Mapping[str, Any]] = (),
    now: datetime,
) -> DeploymentInfo:
    """How `obj` is deployed. `chain`: its controllers from the nearest up (e.g. [ReplicaSet, Deployment],
    possibly ending with a custom resource); `applications`: the cluster's ArgoCD Application objects."""
    meta = _meta(obj)
    namespace = str(meta.get("namespace") or "")
    path = [obj, *chain]  # from the asked object upwards
    top_index = max((i for i, o in enumerate(path) if _is_workload(o)), default=0)
    top = path[top_index]
    workload = _ref(top, namespace)
    # the objects to read markers from: the top workload first, then downwards to the asked object
    below = list(reversed(path[: top_index + 1]))
    owner = _operator_owner(path, namespace)
    listed = application_listing(applications, workload)
    owner_listed = (
        application_listing(applications, ResourceRef(api_version=owner.api_version, kind=owner.kind,
                                                      namespace=owner.namespace or "", name=owner.name))
        if owner is not None else None
    )

    match: _Match | None = None
    for candidate in below:
        match = _argocd(candidate, listed)
        if match:
            break
    if match is None and listed is not None:
        match = _Match("argocd", 0.95, f"argocd-application:{listed.name}",
                       _nonempty(argocd_app=listed.name, app_name=listed.name), listed)
    if match is None and owner is not None:
        operator_labels = _labels(top)
        managed_by = operator_labels.get(MANAGED_BY, "")
        details = _nonempty(
            operator=managed_by or f"{owner.kind.lower()}.{group_of(owner.api_version)}".rstrip("."),
            managed_by=managed_by,
            operator_name=operator_labels.get(APP_NAME),
            owner_kind=owner.kind,
            owner_name=owner.name,
            owner_api_version=owner.api_version,
        )
        match = _Match("operator", 0.90, f"ownerReference:{owner.kind}/{owner.name}", details, owner_listed)
    for rule in (_helm, _helm_label, _operator_label):
        if match is not None:
            break
        for candidate in below:
            match = rule(candidate)
            if match:
                break
    if match is None:
        match = _manual(top)

    return DeploymentInfo(
        method=match.method,
        confidence=match.confidence,
        source=match.source,
        details=match.details,
        detected_at=now,
        namespace=namespace,
        resource_name=str(meta.get("name") or ""),
        resource_kind=str(obj.get("kind") or ""),
        workload=workload,
        owner=owner if match.method == "operator" else None,
        application=match.application or (listed if match.method == "argocd" else None),
    )


# ------------------------------------------------------------------------------------------ cache
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    expires_at: datetime


class TTLCache(Generic[K, V]):
    """Entries expire `ttl_s` after they were put; the time is passed in. Unbounded like the engine's
    (keys are the objects asked about); expired entries are dropped when met and on `prune`."""

    def __init__(self, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_s = ttl_s
        self._entries: dict[K, _Entry[V]] = {}

    def get(self, key: K, now: datetime) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires_at:
            del self._entries[key]
            return None
        return entry.value

    def put(self, key: K, value: V, now: datetime) -> None:
        self._entries[key] = _Entry(value, now + timedelta(seconds=self.ttl_s))

    def clear(self) -> int:
        """Drop everything; the number of entries dropped."""
        count = len(self._entries)
        self._entries.clear()
        return count

    def prune(self, now: datetime) -> int:
        expired = [k for k, e in self._entries.items() if now >= e.expires_at]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def stats(self, now: datetime) -> dict[str, Any]:
        """The engine's R13 fields."""
        total = len(self._entries)
        valid = sum(1 for e in self._entries.values() if now < e.expires_at)
        ttl: int | float = int(self.ttl_s) if float(self.ttl_s).is_integer() else self.ttl_s
        return {"total_entries": total, "valid_entries": valid, "expired_entries": total - valid, "ttl_seconds": ttl}
