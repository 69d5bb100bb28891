"""The Kubernetes watcher: cluster objects and events become signals beside Alertmanager's.

One active instance (a Lease, `pipeline.adapters.lease`). When it becomes leader it reads what was already
emitted (the compacted `watch.state` topic), lists every watched collection and watches each from its
list's resourceVersion with bookmarks; on 410 it re-lists, on errors it reconnects with backoff (stamina,
KUBE_API_RETRY). Every list and change goes through one publisher, in order: `pipeline.domain.kube_signals.diff` says which
conditions fire or resolve, the signals are produced (keyed by resource, so they correlate with alerts on
the same object) together with the new state, and only once the broker has them does the watcher
remember them. A re-list after a restart, a 410 or a failover therefore emits only real changes: what
fired while nobody watched, and what resolved (objects deleted meanwhile included).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stamina

from pipeline.adapters.kube import Collection, Gone, list_all, watch, watched
from pipeline.bus.producer import EventProducer, Output
from pipeline.config import Settings
from pipeline.domain.kube_signals import WatchFilter, conditions, diff
from pipeline.events import Event, Signal, WatchState
from pipeline.observability import (
    WATCH_EVENTS,
    WATCH_LEADER,
    WATCH_RELISTS,
    WATCH_SIGNALS,
    WATCH_STREAM_ERRORS,
    get_logger,
)

log = get_logger("pipeline.watch")
MAX_BATCH = 500
# Retry policies (stamina: exponential backoff with jitter, for as long as this instance leads).
KUBE_API_RETRY: dict[str, Any] = {"attempts": None, "timeout": None, "wait_initial": 0.5, "wait_max": 30.0,
                                  "wait_jitter": 1.0}  # a list or watch the API server refused or dropped
BROKER_RETRY: dict[str, Any] = {"attempts": None, "timeout": None, "wait_initial": 0.5, "wait_max": 30.0,
                                "wait_jitter": 1.0}  # signals and state the broker did not acknowledge


@dataclass(frozen=True, slots=True)
class _Listed:
    kind: str
    items: list[dict[str, Any]]
    namespace: str = ""  # a list of one namespace: what it does not hold is gone from that namespace only


@dataclass(frozen=True, slots=True)
class _Changed:
    kind: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]


def _not_gone(exc: Exception) -> bool:
    """Retry a watch on any error but 410 Gone, which needs a re-list."""
    return not isinstance(exc, Gone)


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


class KubeWatcher:
    """The leader's work: restore, list, watch, publish. Stateless between leaderships except for `state`,
    which is re-read from the topic each time it starts leading."""

    def __init__(self, settings: Settings, producer: EventProducer, collections: list[Collection],
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self.collections = collections
        self.filter = WatchFilter(tuple(settings.watch_namespaces), tuple(settings.watch_exclude_namespaces),
                                  settings.watch_probe_failure_threshold, settings.watch_crashloop_settle_s)
        self.signals_topic = settings.topic("signals")
        self.state_topic = settings.topic("watch.state")
        self.origin = settings.cluster_name or "kubernetes"
        self.clock = clock or (lambda: datetime.now(UTC))
        self.state: dict[str, WatchState] = {}
        self.objects: dict[str, tuple[str, dict[str, Any]]] = {}  # the last seen object of each firing uid
        self._episodes = itertools.count()
        self.synced = asyncio.Event()  # every collection listed and published once in this leadership
        self._queue: asyncio.Queue[_Listed | _Changed] = asyncio.Queue(maxsize=10_000)
        self._unsynced: set[str] = set()

    async def run(self) -> None:
        """Lead: restore what was emitted, then follow every collection until cancelled."""
        from pipeline.bus.stage import ChangelogReader

        self.synced.clear()
        self.state = {}
        for record, event in await ChangelogReader(self.settings).read(self.state_topic,
                                                                          await self._state_partitions()):
            if event is not None and isinstance(event.payload, WatchState) and event.payload.conditions:
                self.state[event.payload.uid] = event.payload
            elif record.key is not None:  # a tombstone (or an empty state): nothing fires on that object
                self.state.pop(record.key.decode(), None)
        self._queue = asyncio.Queue(maxsize=10_000)
        self._unsynced = {c.key for c in self.collections}
        log.info("watching", collections=[c.key for c in self.collections], remembered=len(self.state))
        self.objects = {}
        tasks = [asyncio.create_task(self._publish_loop(), name="watch-publisher"),
                 asyncio.create_task(self._resync_loop(), name="watch-resync")]
        tasks += [asyncio.create_task(self._follow(c), name=f"watch-{c.key}") for c in self.collections]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _state_partitions(self) -> list[int]:
        from pipeline.bus import kafka

        return (await kafka.partitions(self.settings, self.state_topic))[self.state_topic]

    async def _follow(self, collection: Collection) -> None:
        while True:
            rv = await self._list(collection)
            try:
                while True:  # a watch ends at WATCH_TIMEOUT_S: watch again from where it stopped
                    rv = await self._watch(collection, rv)
            except Gone:
                WATCH_RELISTS.labels(collection.name).inc()
                log.info("resourceVersion expired, re-listing", collection=collection.key)

    async def _list(self, collection: Collection) -> str:
        """List the collection (retried under KUBE_API_RETRY: API server down or forbidden), queue what it
        holds; its resourceVersion."""
        async for attempt in stamina.retry_context(on=Exception, **KUBE_API_RETRY):
            with attempt:
                try:
                    items, rv = await list_all(collection)
                except Exception as exc:
                    WATCH_STREAM_ERRORS.labels(collection.name).inc()
                    log.warning("list failed", collection=collection.key, error=repr(exc))
                    raise
        await self._queue.put(_Listed(collection.kind, items, collection.namespace))
        self._unsynced.discard(collection.key)
        return rv

    async def _watch(self, collection: Collection, rv: str) -> str:
        """One watch from `rv`, resumed from the last version seen after a dropped connection (KUBE_API_RETRY);
        the version it ended at. Raises Gone when `rv` expired."""
        async for attempt in stamina.retry_context(on=_not_gone, **KUBE_API_RETRY):
            with attempt:
                try:
                    async for kind, obj in watch(collection, rv, self.settings.watch_timeout_s):
                        if kind == "BOOKMARK":
                            rv = obj
                            continue
                        rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                        WATCH_EVENTS.labels(collection.name, kind).inc()
                        await self._queue.put(_Changed(collection.kind, kind, obj))
                except Gone:
                    raise
                except Exception as exc:
                    WATCH_STREAM_ERRORS.labels(collection.name).inc()
                    log.warning("watch interrupted", collection=collection.key, error=repr(exc))
                    raise
        return rv

    async def _resync_loop(self) -> None:
        """Conditions can end with time alone (a crash loop that settled): re-evaluate firing objects."""
        while True:
            await asyncio.sleep(self.settings.watch_resync_s)
            for kind, obj in list(self.objects.values()):
                await self._queue.put(_Changed(kind, "RESYNC", obj))

    async def _publish_loop(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < MAX_BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            signals, pending = self.apply(items)
            outputs = [Output.event(self.signals_topic, Event.of(s, source="pipeline/watch", id=s.signal_id,
                                                                 subject=s.resource_key))
                       for s in signals]
            outputs += [self._state_output(uid, st) for uid, st in pending.items()]
            if outputs:
                await self._publish(outputs)
            for uid, st in pending.items():
                if st is None:
                    self.state.pop(uid, None)
                else:
                    self.state[uid] = st
            for s in signals:
                WATCH_SIGNALS.labels(s.name, s.status).inc()
            if not self._unsynced and self._queue.empty() and not self.synced.is_set():
                self.synced.set()
                log.info("synced", remembered=len(self.state))

    async def _publish(self, outputs: list[Output]) -> None:
        """Produce, holding everything while the broker is unavailable (BROKER_RETRY)."""
        async for attempt in stamina.retry_context(on=Exception, **BROKER_RETRY):
            with attempt:
                try:
                    await self.producer.publish(outputs)
                except Exception as exc:
                    log.warning("publish failed, retrying", error=repr(exc), records=len(outputs))
                    raise

    def _state_output(self, uid: str, state: WatchState | None) -> Output:
        if state is None:  # a tombstone: compaction forgets the object
            return Output(self.state_topic, uid.encode(), None)
        return Output.event(self.state_topic, Event.of(state, source="pipeline/watch"))

    def apply(self, items: list[_Listed | _Changed]) -> tuple[list[Signal], dict[str, WatchState | None]]:
        """Signals for a batch of lists and changes, and the state writes they imply (None: tombstone)."""
        now = self.clock()
        pending: dict[str, WatchState | None] = {}
        signals: list[Signal] = []

        def current(uid: str) -> WatchState | None:
            return pending[uid] if uid in pending else self.state.get(uid)

        def episode() -> str:
            return f"{now.isoformat()}#{next(self._episodes)}"

        def update(kind: str, uid: str, obj: dict[str, Any] | None, previous: WatchState | None) -> None:
            emitted = previous.conditions if previous is not None else {}
            found = conditions(kind, obj, self.filter, now, emitted) if obj is not None else []
            if found and obj is not None:
                self.objects[uid] = (kind, obj)
            else:
                self.objects.pop(uid, None)
            if not found and not emitted:
                return  # the common case: a healthy object
            d = diff(uid, emitted, found, now, self.origin, episode)
            signals.extend(d.signals)
            if d.state == emitted:
                return
            if not d.state:
                pending[uid] = None
                return
            meta = (obj or {}).get("metadata") or {}
            pending[uid] = WatchState(uid=uid, kind=kind, namespace=meta.get("namespace", previous.namespace
                                                                             if previous else ""),
                                      name=meta.get("name", previous.name if previous else ""), conditions=d.state)

        for item in items:
            if isinstance(item, _Listed):
                listed = set()
                for obj in item.items:
                    uid = _uid(obj)
                    listed.add(uid)
                    update(item.kind, uid, obj, current(uid))
                remembered = {u for u, s in {**self.state, **pending}.items() if s is not None and s.kind == item.kind
                              and (not item.namespace or s.namespace == item.namespace)}
                for uid in sorted(remembered - listed):  # deleted while nobody watched
                    update(item.kind, uid, None, current(uid))
            else:
                uid = _uid(item.obj)
                update(item.kind, uid, None if item.type == "DELETED" else item.obj, current(uid))
        return signals, pending


def identity(settings: Settings) -> str:
    return settings.watch_identity or f"{socket.gethostname()}-{os.getpid()}"


class WatchService:
    """The watcher under leader election, with its own API client; `start`/`stop` like the other parts."""

    def __init__(self, settings: Settings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.watcher: KubeWatcher | None = None
        self.elector: Any = None
        self._api: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from pipeline.adapters.kube import api_client
        from pipeline.adapters.lease import LeaderElector

        s = self.settings
        self._api = await api_client(s)  # raises if the kubeconfig is unreadable: a stage that cannot run
        flt = WatchFilter(tuple(s.watch_namespaces), tuple(s.watch_exclude_namespaces))
        self.watcher = KubeWatcher(s, self.producer, watched(self._api, s.watch_event_apis, flt.exact_namespaces()))
        self.elector = LeaderElector(self._api, s.watch_lease_namespace or s.namespace or "default",
                                     s.watch_lease_name, identity(s), duration=s.watch_lease_duration_s,
                                     renew=s.watch_lease_renew_s, retry=s.watch_lease_retry_s)

        async def lead() -> None:
            WATCH_LEADER.set(1)
            try:
                assert self.watcher is not None
                await self.watcher.run()
            finally:
                WATCH_LEADER.set(0)

        self._task = asyncio.create_task(self.elector.run(lead), name="watch-election")
        log.info("watch started", identity=identity(s), lease=s.watch_lease_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._api is not None:
            await self._api.close()

    def status(self) -> dict[str, Any]:
        """For `/api/v1/health`: whether this instance leads, has synced, and what it remembers."""
        s = self.settings
        return {
            "identity": identity(s),
            "lease": f"{s.watch_lease_namespace or s.namespace or 'default'}/{s.watch_lease_name}",
            "leading": bool(self.elector is not None and self.elector.leading.is_set()),
            "synced": bool(self.watcher is not None and self.watcher.synced.is_set()),
            "firing_objects": len(self.watcher.state) if self.watcher is not None else 0,
        }

    async def wait_synced(self, timeout: float) -> None:
        """Until this instance leads and has published a first full list (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.watcher is None or not self.watcher.synced.is_set():
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("the watcher did not sync")
            await asyncio.sleep(0.05)
