"""Deployment-method detection against the Kubernetes API: fetch the object, walk its controllers, read the
ArgoCD Applications, and let `pipeline.domain.detection.detect` decide. Results are cached per
`kind/namespace/name` for `ttl_s` (the engine's 5 minutes).

Every request is a GET with a timeout, through `ApiClient.call_api` on raw JSON (objects stay dicts):

* the object itself (`Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Pod`): 404 → `NotFound`,
  403 → `Forbidden`, with the API server's message;
* its controllers (`ownerReferences` with `controller: true`), up to `MAX_OWNER_LEVELS`: built-in kinds
  by their known path (403 there is a `Forbidden` too: an answer without the Deployment would be wrong),
  custom resources through API discovery (`/apis/<group>/<version>` → plural and scope, cached). A custom
  resource that cannot be read ends the walk without failing: its ownerReference already names it;
* ArgoCD Applications (`argoproj.io/v1alpha1`, all namespaces, or those of `application_namespaces` one by
  one), only when discovery lists them; a 404 or
  403 there means "no ArgoCD we can see", not an error. The list is kept `APPLICATIONS_TTL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipeline.adapters.kube import ApiStatus, json_of
from pipeline.domain.detection import DeploymentInfo, TTLCache, controller_ref, detect, group_of
from pipeline.observability import get_logger

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

log = get_logger("pipeline.detection")

REQUEST_TIMEOUT_S = 10.0
MAX_OWNER_LEVELS = 4
APPLICATIONS_TTL_S = 30.0
ARGOCD_GROUP_VERSION = "argoproj.io/v1alpha1"
_PAGE = 500


class DetectionError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DetectionError):
    """The object asked about does not exist."""


class Forbidden(DetectionError):
    """The API server refused a read (403): the message says which one."""


@dataclass(frozen=True)
class _Api:
    """Where a kind's objects are served: `/api/v1` or `/apis/<group>/<version>`, plural, namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        path = f"{base}/{self.plural}"
        return f"{path}/{quote(name, safe='')}" if name else path


# The kinds one may ask about, by lower-case name.
KINDS: dict[str, _Api] = {
    "deployment": _Api("apps/v1", "Deployment", "deployments"),
    "statefulset": _Api("apps/v1", "StatefulSet", "statefulsets"),
    "daemonset": _Api("apps/v1", "DaemonSet", "daemonsets"),
    "replicaset": _Api("apps/v1", "ReplicaSet", "replicasets"),
    "pod": _Api("v1", "Pod", "pods"),
}
# Built-in controllers an ownerReference may point to, by (group, kind); any served version is read as v1.
_BUILT_IN: dict[tuple[str, str], _Api | None] = {
    ("apps", "Deployment"): KINDS["deployment"],
    ("apps", "StatefulSet"): KINDS["statefulset"],
    ("apps", "DaemonSet"): KINDS["daemonset"],
    ("apps", "ReplicaSet"): KINDS["replicaset"],
    ("batch", "Job"): _Api("batch/v1", "Job", "jobs"),
    ("batch", "CronJob"): _Api("batch/v1", "CronJob", "cronjobs"),
    ("", "ReplicationController"): _Api("v1", "ReplicationController", "replicationcontrollers"),
    ("", "Node"): None,  # a static pod's mirror: nothing above it to read
}


_Status = ApiStatus  # a non-2xx answer: its HTTP status and the API server's Status message


def _now() -> datetime:
    return datetime.now(UTC)


class Detector:
    """Detects how a workload is deployed. One per process: the cache lives in it."""

    def __init__(self, api: ApiClient, *, ttl_s: float = 300.0, clock: Callable[[], datetime] | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, application_namespaces: Sequence[str] = ()) -> None:
        self._api = api
        # Where the ArgoCD Applications are listed (ARGOCD_NAMESPACES); empty: every namespace in one list.
        self._application_namespaces = tuple(application_namespaces)
        self._clock = clock or _now
        self._timeout = request_timeout_s
        self._cache: TTLCache[str, DeploymentInfo] = TTLCache(ttl_s)
        # discovery per group/version: kind -> _Api (empty: the group/version is not served)
        self._discovery: TTLCache[str, dict[str, _Api]] = TTLCache(ttl_s)
        self._applications: TTLCache[str, list[dict[str, Any]]] = TTLCache(min(ttl_s, APPLICATIONS_TTL_S))
        self._filling = asyncio.Lock()  # concurrent detections share one discovery / Applications list
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ public
    async def detect(self, namespace: str, kind: str, name: str) -> DeploymentInfo:
        """How `kind` `namespace/name` is deployed. `kind`: Deployment, StatefulSet, DaemonSet, ReplicaSet or
        Pod, any case. Raises NotFound, Forbidden, ValueError (another kind), or the transport's error."""
        api = KINDS.get(kind.lower())
        if api is None:
            raise ValueError(f"unsupported kind {kind!r}: one of {', '.join(a.kind for a in KINDS.values())}")
        key = f"{api.kind.lower()}/{namespace}/{name}"
        cached = self._cache.get(key, self._clock())
        if cached is not None:
            return cached
        try:
            obj = await self._get(api.path(namespace, name))
        except _Status as exc:
            what = f"failed to get {api.kind.lower()} {namespace}/{name}: {exc.message}"
            if exc.status == 404:
                raise NotFound(what) from None
            if exc.status == 403:
                raise Forbidden(what) from None
            raise RuntimeError(what) from None
        obj.setdefault("apiVersion", api.api_version)
        obj.setdefault("kind", api.kind)
        owners = asyncio.create_task(self._owners(obj, namespace))
        try:
            applications = await self._list_applications()
        except BaseException:
            owners.cancel()  # no request left behind
            with contextlib.suppress(BaseException):
                await owners
            raise
        chain = await owners
        info = detect(obj, chain=chain, applications=applications, now=self._clock())
        self._cache.put(key, info, self._clock())
        return info

    def clear(self) -> int:
        """Forget every cached result (and the cached Applications and discovery); how many results."""
        self._discovery.clear()
        self._applications.clear()
        return self._cache.clear()

    def stats(self) -> dict[str, Any]:
        """`total_entries`, `valid_entries`, `expired_entries`, `ttl_seconds` of the result cache."""
        return self._cache.stats(self._clock())

    # ------------------------------------------------------------------ owners
    async def _owners(self, obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        """The controllers above `obj`, nearest first, as far as they can be read."""
        chain: list[dict[str, Any]] = []
        current = obj
        for _ in range(MAX_OWNER_LEVELS):
            ref = controller_ref(current)
            if ref is None:
                break
            api_version, kind, name = str(ref.get("apiVersion") or ""), str(ref["kind"]), str(ref["name"])
            group = group_of(api_version)
            built_in = (group, kind) in _BUILT_IN
            api = _BUILT_IN.get((group, kind)) if built_in else await self._discover(api_version, kind)
            if api is None:
                break
            try:
                owner = await self._get(api.path(namespace, name))
            except _Status as exc:
                if exc.status == 403 and built_in:
                    raise Forbidden(f"failed to get {kind.lower()} {namespace}/{name} "
                                    f"(controller of {current.get('kind')} {namespace}/"
                                    f"{(current.get('metadata') or {}).get('name')}): {exc.message}") from None
                if exc.status not in (403, 404):
                    raise RuntimeError(f"failed to get {kind} {namespace}/{name}: {exc.message}") from None
                self._warn_once(f"owner:{exc.status}:{kind}", "controller not readable; detection goes on without it",
                                kind=kind, name=name, namespace=namespace, status=exc.status, error=exc.message)
                break
            owner.setdefault("apiVersion", api.api_version)
            owner.setdefault("kind", kind)
            chain.append(owner)
            current = owner
        return chain

    async def _discover(self, api_version: str, kind: str) -> _Api | None:
        """Plural and scope of `kind` in `api_version` from `/apis/<group>/<version>` (cached, a group
        version that is not served included)."""
        if "/" not in api_version:
            return None  # a core kind we do not walk
        resources = self._discovery.get(api_version, self._clock())
        if resources is None:
            async with self._filling:
                resources = self._discovery.get(api_version, self._clock())
                if resources is None:
                    resources = await self._fetch_discovery(api_version)
                    self._discovery.put(api_version, resources, self._clock())
        return resources.get(kind)

    async def _fetch_discovery(self, api_version: str) -> dict[str, _Api]:
        try:
            body = await self._get(f"/apis/{api_version}")
        except _Status as exc:
            if exc.status in (403, 404):
                return {}
            raise RuntimeError(f"API discovery of {api_version} failed: {exc.message}") from None
        out: dict[str, _Api] = {}
        for res in body.get("resources") or ():
            name, res_kind = str(res.get("name") or ""), str(res.get("kind") or "")
            if name and res_kind and "/" not in name:  # not a subresource such as `memcacheds/status`
                out[res_kind] = _Api(api_version, res_kind, name, bool(res.get("namespaced")))
        return out

    # ------------------------------------------------------------------ ArgoCD
    async def _list_applications(self) -> list[dict[str, Any]]:
        cached = self._applications.get("all", self._clock())
        if cached is not None:
            return cached
        served = await self._discover(ARGOCD_GROUP_VERSION, "Application") is not None
        async with self._filling:
            cached = self._applications.get("all", self._clock())
            if cached is not None:
                return cached
            apps: list[dict[str, Any]] = await self._fetch_applications() if served else []
            self._applications.put("all", apps, self._clock())
        return apps

    async def _fetch_applications(self) -> list[dict[str, Any]]:
        if not self._application_namespaces:
            return await self._fetch_applications_at(f"/apis/{ARGOCD_GROUP_VERSION}/applications")
        items: list[dict[str, Any]] = []
        for namespace in self._application_namespaces:
            items += await self._fetch_applications_at(
                f"/apis/{ARGOCD_GROUP_VERSION}/namespaces/{quote(namespace, safe='')}/applications")
        return items

    async def _fetch_applications_at(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", _PAGE)]
            if token:
                query.append(("continue", token))
            try:
                body = await self._get(path, query)
            except _Status as exc:
                if exc.status in (403, 404):  # no ArgoCD, or not ours to see: detection goes on without it
                    self._warn_once(f"applications:{path}:{exc.status}", "ArgoCD Applications not readable",
                                    path=path, status=exc.status, error=exc.message)
                    return []
                raise RuntimeError(f"listing ArgoCD Applications failed: {exc.message}") from None
            items.extend(i for i in body.get("items") or () if isinstance(i, dict))
            token = str((body.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    # ------------------------------------------------------------------ HTTP
    async def _get(self, path: str, query: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
        """GET `path` as JSON; a non-2xx answer raises `_Status` with the API server's message."""
        response = await self._api.call_api(
            path, "GET", query_params=query or [], header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False, _request_timeout=self._timeout,
        )
        body = await json_of(response, self._timeout)
        if not isinstance(body, dict):
            raise RuntimeError(f"GET {path}: a JSON object was expected")
        return body

    def _warn_once(self, key: str, message: str, **fields: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, **fields)
