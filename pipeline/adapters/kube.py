"""Kubernetes API access for the watcher: a client from a kubeconfig or the pod's service account, and raw
list/watch streams of plain dicts.

Objects stay JSON dicts (no model deserialisation: it costs more than the rest of the watcher and
kubernetes-asyncio's events.k8s.io models reject core Events). A watch starts from the list's
resourceVersion with bookmarks, ends when the server times it out (the caller resumes from the last
resourceVersion), and raises `Gone` on 410 so the caller re-lists.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings

if TYPE_CHECKING:  # kubernetes_asyncio is imported where a client is made: half a second a gateway without a
    from kubernetes_asyncio import client  # cluster need not spend

ListFunction = Callable[..., Awaitable[Any]]
LIST_TIMEOUT_S = 60  # one page; a hung list is retried by the caller


class ApiStatus(Exception):
    """A non-2xx answer to a raw (`_preload_content=False`) call: its HTTP status, reason and the API server's
    Status message."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.reason = status, message, reason


async def json_of(response: Any, timeout: float | None = None) -> Any:
    """The JSON body of a raw response (released afterwards); ApiStatus for a non-2xx answer, which a raw call
    does not raise by itself."""
    try:
        async with asyncio.timeout(timeout):
            raw = await response.read()
        status = response.status
    finally:
        response.release()
    if not 200 <= status <= 299:
        message = raw.decode("utf-8", "replace")[:500]
        try:
            message = str(json.loads(raw).get("message") or message)
        except (ValueError, AttributeError):
            pass
        raise ApiStatus(status, message, str(getattr(response, "reason", "") or ""))
    return json.loads(raw) if raw else {}


class Gone(Exception):
    """410: the resourceVersion is too old for a watch; re-list."""


@dataclass(frozen=True)
class Collection:
    """One watched collection: the object kind it holds and the list function of its API."""

    name: str  # "pods", "nodes", "deployments", "events (core)", "events (events.k8s.io)"
    kind: str  # Pod, Node, Deployment, Event
    list_function: ListFunction
    namespace: str = ""  # the one namespace it lists; empty: every namespace (or none: nodes)

    @property
    def key(self) -> str:
        """Unique among the watched collections: the name, and the namespace when it lists one."""
        return f"{self.name} in {self.namespace}" if self.namespace else self.name


async def api_client(settings: Settings) -> client.ApiClient:
    """An ApiClient from `KUBECONFIG` (and `KUBE_CONTEXT`), else the in-cluster service account."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    if settings.kubeconfig:
        await config.load_kube_config(config_file=settings.kubeconfig, context=settings.kube_context or None,
                                      client_configuration=cfg, persist_config=False)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise RuntimeError(f"KUBECONFIG is not set and this is not a pod with a service account: {exc}") from None
    cfg.client_side_validation = False
    client.Configuration.set_default(cfg)  # models built without a configuration use the default one
    return client.ApiClient(configuration=cfg)


def watched(api: client.ApiClient, event_apis: list[str], namespaces: tuple[str, ...] | None = None) -> list[Collection]:
    """Pods, Nodes and Deployments, and Events from the APIs asked for (core, events.k8s.io; both are views of
    the same objects, told apart by nothing but their format): in every namespace at once, or with
    `namespaces` one collection per namespace (`/api/v1/namespaces/<ns>/pods`, ...), which a Role in each of
    them allows. Nodes have no namespace: always the cluster's."""
    from kubernetes_asyncio import client

    core, apps, events = client.CoreV1Api(api), client.AppsV1Api(api), client.EventsV1Api(api)
    namespaced: list[tuple[str, str, Any, Any]] = [
        ("pods", "Pod", core.list_pod_for_all_namespaces, core.list_namespaced_pod),
        ("deployments", "Deployment", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment),
    ]
    if "core" in event_apis:
        namespaced.append(("events (core)", "Event", core.list_event_for_all_namespaces, core.list_namespaced_event))
    if "events.k8s.io" in event_apis:
        namespaced.append(("events (events.k8s.io)", "Event", events.list_event_for_all_namespaces,
                           events.list_namespaced_event))
    out = [Collection("nodes", "Node", core.list_node)]
    for name, kind, every, one in namespaced:
        if namespaces is None:
            out.append(Collection(name, kind, every))
        else:
            out += [Collection(name, kind, functools.partial(one, ns), ns) for ns in namespaces]
    return out


async def list_all(resource: Collection, page: int = 500) -> tuple[list[dict[str, Any]], str]:
    """Every object of the collection (paginated) and the list's resourceVersion."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": page, "_preload_content": False, "_request_timeout": LIST_TIMEOUT_S}
        if token:
            kwargs["_continue"] = token
        response = await resource.list_function(**kwargs)
        try:
            body = json.loads(await response.read())
        finally:
            response.release()
        items.extend(body.get("items") or [])
        meta = body.get("metadata") or {}
        token = meta.get("continue")
        if not token:
            return items, str(meta.get("resourceVersion", ""))


async def watch(resource: Collection, resource_version: str, timeout_s: int) -> AsyncIterator[tuple[str, Any]]:
    """(type, object) events after `resource_version`; ("BOOKMARK", rv) carries a newer resourceVersion.
    Ends when the server closes the watch after `timeout_s`; raises Gone on 410."""
    response = await resource.list_function(
        watch=True, resource_version=resource_version, allow_watch_bookmarks=True, timeout_seconds=timeout_s,
        _preload_content=False, _request_timeout=timeout_s + 30,
    )
    buffer = b""
    try:
        async for chunk in response.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", "resourceVersion too old"))
                    from kubernetes_asyncio.client import ApiException

                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                if kind == "BOOKMARK":
                    yield "BOOKMARK", (obj.get("metadata") or {}).get("resourceVersion", resource_version)
                    continue
                yield kind, obj
    finally:
        response.release()
