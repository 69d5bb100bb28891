"""Runtime controls: the `control` topic followed from its beginning by every process that obeys it.

The kill switch and the pause are switched at runtime (`POST /api/v1/remediation/kill-switch`, `.../pause`);
approvals and rejections of waiting workflows travel the same way, and so do the remediators' start-up
self-checks. The topic has one partition and is compacted: the latest record per key is the control's value.
`ControlState` is the pure part; `ControlFollower` tails the topic into one.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.bus import kafka
from pipeline.config import Settings
from pipeline.events import ControlChanged, InvalidEvent, decode
from pipeline.observability import get_logger

log = get_logger("pipeline.control")


@dataclass
class ControlState:
    kill_switch: ControlChanged | None = None
    pause: ControlChanged | None = None
    decisions: dict[str, ControlChanged] = field(default_factory=dict)  # workflow id -> approve/reject
    remediators: dict[str, ControlChanged] = field(default_factory=dict)  # identity -> self-check

    def apply(self, change: ControlChanged) -> None:
        if change.kind == "kill_switch":
            self.kill_switch = change
        elif change.kind == "pause":
            self.pause = change
        elif change.kind in ("approve", "reject") and change.workflow_id:
            self.decisions.setdefault(change.workflow_id, change)  # the first answer counts
        elif change.kind == "remediator":
            self.remediators[change.key] = change

    @property
    def killed(self) -> bool:
        return bool(self.kill_switch and self.kill_switch.enabled)

    @property
    def paused(self) -> bool:
        return bool(self.pause and self.pause.enabled)

    def view(self) -> dict[str, object]:
        def one(c: ControlChanged | None) -> dict[str, object]:
            if c is None:
                return {"enabled": False, "changed_at": None, "by": None, "reason": None}
            return {"enabled": bool(c.enabled), "changed_at": c.at.isoformat(), "by": c.by or None,
                    "reason": c.reason or None}

        return {"kill_switch": one(self.kill_switch), "pause": one(self.pause)}


class ControlFollower:
    """Reads `control` from the beginning and keeps following it; `changed` is pulsed on every record."""

    def __init__(self, settings: Settings, state: ControlState | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic("control")
        self.state = state or ControlState()
        self.ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        # The consumer is made here, in the loop that runs it (aiokafka binds a client to the running loop).
        self._consumer = kafka.consumer(self.settings, group_id=None)
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        end = (await self._consumer.end_offsets([tp]))[tp]  # before the seek: after it aiokafka answers ~0.5 s later
        await self._consumer.seek_to_beginning(tp)
        self._task = asyncio.create_task(self._run(tp, end), name="control-follower")
        await self.ready.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def wait_changed(self, timeout: float) -> None:
        """Return on the next control record, or after `timeout` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _run(self, tp: TopicPartition, end: int) -> None:
        assert self._consumer is not None
        if end == 0:
            self.ready.set()
        while True:
            try:
                batches = await self._consumer.getmany(tp, timeout_ms=500)
            except Exception as exc:  # noqa: BLE001 - keep following: controls must not go deaf silently
                log.warning("control fetch failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for record in batches.get(tp, []):
                if record.value is None:
                    continue
                try:
                    event = decode(record.value, record.headers)
                except InvalidEvent as exc:
                    log.warning("skipping a control record that is not ours", error=str(exc))
                    continue
                if isinstance(event.payload, ControlChanged):
                    self.state.apply(event.payload)
            if batches:
                async with self._changed:
                    self._changed.notify_all()
            if not self.ready.is_set() and await self._consumer.position(tp) >= end:
                self.ready.set()
