"""The Kubernetes watcher's changelog."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline.events.base import Payload, Severity
from pipeline.events.incidents import Resource


class WatchedCondition(BaseModel):
    """A condition of a Kubernetes object the watcher emitted as firing (and will resolve when it goes)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    fingerprint: str
    name: str
    severity: Severity
    resource: Resource
    starts_at: datetime
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    episode: str = Field("", description="Identifies this firing among the condition's episodes (in signal ids)")


class WatchState(Payload):
    """Changelog of the Kubernetes watcher: what it emitted per object uid (a tombstone once nothing fires),
    so a restarted or new leader re-lists without emitting anything twice."""

    event_type: ClassVar[str] = "pipeline.watch.state.v1"
    key_field: ClassVar[str] = "uid"
    uid: str
    kind: str
    namespace: str = ""
    name: str
    conditions: dict[str, WatchedCondition] = Field(default_factory=dict)
