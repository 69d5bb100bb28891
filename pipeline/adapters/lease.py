"""Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it.

A candidate takes the Lease when nobody holds it, or when the holder's record has not changed for
`duration` seconds *as observed by this candidate* (its own monotonic clock: no trust in clock sync). Every
write carries the resourceVersion it read, so two candidates cannot both win (409 for the loser). The
leader renews every `renew` seconds; if it cannot renew for `duration` it stops leading before anyone can
take over. A leader that stops cleanly releases the Lease, so a standby takes over at its next retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from pipeline.observability import get_logger

log = get_logger("pipeline.lease")


class LeaderElector:
    """Runs `lead()` while this candidate holds the Lease; cancels it as soon as it may not."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str, *, duration: float = 15.0,
                 renew: float = 5.0, retry: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew, self.retry = duration, renew, retry
        # A call that hangs must not keep a leader leading past `duration` while a standby takes over.
        self.timeout = max(0.5, min(renew, duration / 3))
        self.clock = clock
        self.leading = asyncio.Event()
        self.transitions = 0  # times this candidate became leader
        self._observed: tuple[str | None, str | None] = (None, None)  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._lease: client.V1Lease | None = None

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever: lead while holding the Lease, stand by otherwise. Cancel to stop (releasing)."""
        try:
            while True:
                if await self._try_acquire():
                    await self._lead(lead)
                await asyncio.sleep(self.retry)
        finally:
            self.leading.clear()
            if self._holding():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release())

    async def _lead(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.leading.set()
        self.transitions += 1
        log.info("leading", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        task = asyncio.create_task(lead(), name="leader-work")
        last_renewed = self.clock()
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.renew)
                if done:
                    break
                if await self._try_acquire():
                    last_renewed = self.clock()
                elif self.clock() - last_renewed >= self.duration or not self._holding():
                    log.warning("lost the lease", lease=f"{self.namespace}/{self.name}", identity=self.identity)
                    break
            if task.done():
                task.result()  # the work failed: surface it (and stop leading)
        finally:
            self.leading.clear()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _holding(self) -> bool:
        return self._lease is not None and self._lease.spec.holder_identity == self.identity

    async def _try_acquire(self) -> bool:
        """Create, take over or renew the Lease; True when we hold it afterwards."""
        now = datetime.now(UTC)
        try:
            lease = await self.leases.read_namespaced_lease(self.name, self.namespace,
                                                          _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("lease read failed", status=exc.status)
                return False
            return await self._create(now)
        except Exception as exc:  # noqa: BLE001 - API server unreachable: not leading for now
            log.warning("lease read failed", error=repr(exc))
            return False
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time.isoformat() if spec.renew_time else None)
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        mine = spec.holder_identity == self.identity
        free = not spec.holder_identity
        expired = self.clock() - self._observed_at >= (spec.lease_duration_seconds or self.duration)
        if not (mine or free or expired):
            self._lease = lease
            return False
        if not mine:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = int(self.duration)
        spec.renew_time = now
        try:
            self._lease = await self.leases.replace_namespaced_lease(self.name, self.namespace, lease,
                                                                    _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("lease update failed", status=exc.status)
            return False  # 409: somebody else wrote first
        except Exception as exc:  # noqa: BLE001
            log.warning("lease update failed", error=repr(exc))
            return False
        self._observed = (self.identity, now.isoformat())
        self._observed_at = self.clock()
        return True

    async def _create(self, now: datetime) -> bool:
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=int(self.duration),
                                    acquire_time=now, renew_time=now, lease_transitions=0),
        )
        try:
            self._lease = await self.leases.create_namespaced_lease(self.namespace, lease,
                                                                   _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("lease create failed", status=exc.status)
            return False
        return True

    async def _release(self) -> None:
        """Give the Lease up (holder cleared), so a standby need not wait for it to expire."""
        lease = await self.leases.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        if lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None  # type: ignore[assignment]  # cleared: nobody holds it
        lease.spec.renew_time = datetime.now(UTC)
        await self.leases.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.timeout)
        log.info("released the lease", lease=f"{self.namespace}/{self.name}", identity=self.identity)
