"""The envelope (CloudEvents 1.0 binary mode in Kafka headers), the payload base class and shared vocabulary."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, get_args, overload

from pydantic import BaseModel, ConfigDict

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_EXTENSIONS = ("subject", "incidentid", "workflowid", "causationid", "traceparent")
_EXTENSION_HEADERS = tuple((name, f"ce_{name}") for name in _EXTENSIONS)
_SPECVERSION_HEADER = ("ce_specversion", SPECVERSION.encode())
_CONTENT_TYPE_HEADER = ("content-type", CONTENT_TYPE.encode())


class InvalidEvent(ValueError):
    """A record that is not one of our events: missing CloudEvents headers or a payload that fails validation."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def iso_z(value: datetime) -> str: ...
@overload
def iso_z(value: datetime | None) -> str | None: ...
def iso_z(value: datetime | None) -> str | None:
    """A time as the REST API writes it (ISO 8601, `Z` for UTC); None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def new_id() -> str:
    return str(uuid.uuid4())


def uuid5_str(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))` without the UUID object (a third of its cost: ids are made per event)."""
    h = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).hexdigest()
    return (f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{(int(h[16:18], 16) & 0x3F | 0x80):02x}{h[18:20]}-{h[20:32]}")


_DERIVED = uuid.UUID("a4d7a9f2-0c1b-4b5e-8f7e-2b6c1d9e3f55")


def derived_id(causation_id: str, index: int = 0, *, kind: str = "") -> str:
    """Id of the index-th event of type `kind` derived from another: a replay or redelivery produces the same
    ids, and two stages deriving from one event (enrich and propose from an incident change) never produce the
    same id, since no two stages derive events of one type from the same cause. (Not the source: some stages'
    CloudEvents source is configuration, e.g. the Prometheus URL, and ids must survive a configuration change.)"""
    return uuid5_str(_DERIVED, f"{causation_id}#{kind}#{index}" if kind else f"{causation_id}#{index}")


class Severity(StrEnum):
    """Incident and signal severity, the engine's vocabulary."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @property
    def priority(self) -> int:
        """The MCP client reads `priority` as an integer: 1 is the most urgent."""
        return 5 - self.rank


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class IncidentStatus(StrEnum):
    """The MCP server's status vocabulary. An incident whose alerts all resolved is `completed`."""

    ACTIVE = "active"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_HELD: dict[type[BaseModel], tuple[set[str], tuple[str, ...]]] = {}


def _holds_models(annotation: Any) -> bool:
    """Whether a field of this type can hold a model (itself, or in a list, tuple or dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))


def _shape(cls: type[BaseModel]) -> tuple[set[str], tuple[str, ...]]:
    """A model class's every field name, and the fields that can hold models."""
    found = _HELD.get(cls)
    if found is None:
        found = _HELD[cls] = (set(cls.model_fields),
                              tuple(n for n, f in cls.model_fields.items() if _holds_models(f.annotation)))
    return found


def held(model: Any) -> Any:
    """`model` (and every model inside it) made cheaper to hold for long, without changing its value: a model
    decoded from a complete record has every field in its `model_fields_set`, a set of its own per instance
    (2.2 KB for 30 fields, more than the values of most); such models share one set per class instead. Safe for
    frozen and mutable models alike: a set holding every field is never changed by setting a field. For read
    models that keep 100,000 objects; returns `model`."""
    if isinstance(model, BaseModel):
        full, nested = _shape(type(model))
        fields_set = model.__pydantic_fields_set__
        if fields_set is not full and len(fields_set) == len(full):  # a subset of the fields, so all of them
            object.__setattr__(model, "__pydantic_fields_set__", full)
        values = model.__dict__
        for name in nested:
            held(values[name])
    elif isinstance(model, list | tuple):
        for value in model:
            held(value)
    elif isinstance(model, dict):
        for value in model.values():
            held(value)
    return model


def share(model: BaseModel, name: str, value: BaseModel) -> None:
    """Let `model.<name>` be `value` when the two are equal (a decision's copy of the proposal its entry holds):
    one object held instead of two. The value does not change, so a frozen model may be updated in place."""
    if getattr(model, name) is not value and getattr(model, name) == value:
        model.__dict__[name] = value


class Payload(BaseModel):
    """Base of every event payload. `event_type` is the CloudEvents `type` of the event carrying it."""

    model_config = ConfigDict(extra="ignore", frozen=False)
    event_type: ClassVar[str]
    key_field: ClassVar[str]
    # Headers `index_headers` adds to the envelope's: name -> what it holds (the AsyncAPI document lists them).
    index_header_docs: ClassVar[dict[str, str]] = {}

    def index_headers(self) -> list[tuple[str, bytes]]:
        """Headers beyond the envelope's that let a reader index the record without decoding its value (none
        unless a payload says otherwise)."""
        return []



@dataclass(frozen=True, slots=True)
class Envelope:
    """CloudEvents 1.0 attributes of one event, carried as Kafka headers (binary mode)."""

    type: str
    source: str
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)
    subject: str | None = None
    incidentid: str | None = None
    workflowid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            _SPECVERSION_HEADER,
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_time", self.time.isoformat().encode()),
            _CONTENT_TYPE_HEADER,
        ]
        for name, header in _EXTENSION_HEADERS:
            value = getattr(self, name)
            if value:
                out.append((header, value.encode()))
        return out

    @classmethod
    def from_headers(cls, headers: Any) -> Envelope:
        found = {k: v.decode() for k, v in headers or () if k.startswith("ce_") and v is not None}
        missing = [n for n in ("ce_id", "ce_type", "ce_source", "ce_specversion") if n not in found]
        if missing:
            raise InvalidEvent(f"missing CloudEvents header(s): {', '.join(missing)}")
        try:
            time = datetime.fromisoformat(found["ce_time"]) if "ce_time" in found else utcnow()
        except ValueError as exc:
            raise InvalidEvent(f"ce_time is not an RFC 3339 timestamp: {found['ce_time']!r}") from exc
        return cls(
            type=found["ce_type"],
            source=found["ce_source"],
            id=found["ce_id"],
            time=time,
            **{name: found.get(f"ce_{name}") for name in _EXTENSIONS},
        )


@dataclass(frozen=True, slots=True)
class Event:
    """An envelope and its payload; `key` is the Kafka record key (the payload's partition key)."""

    envelope: Envelope
    payload: Payload

    @property
    def key(self) -> str:
        return str(getattr(self.payload, self.payload.key_field))

    @classmethod
    def of(cls, payload: Payload, *, source: str, id: str | None = None, **attrs: Any) -> Event:
        """Wrap a payload; the type comes from the payload class, the id is new unless given."""
        env = Envelope(type=payload.event_type, source=source, id=id or new_id(), **attrs)
        return cls(env, payload)

    def caused(self, payload: Payload, *, source: str, index: int = 0, **attrs: Any) -> Event:
        """The index-th event this one causes: its id derived from this one's (a redelivered input yields the
        same id, so consumers drop the duplicate), `causationid` this one's id, the same `traceparent`."""
        attrs.setdefault("traceparent", self.envelope.traceparent)
        return Event.of(payload, source=source, id=derived_id(self.envelope.id, index, kind=payload.event_type),
                        causationid=self.envelope.id, **attrs)

    def encode(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers of the Kafka record."""
        return (self.key.encode(), self.payload.model_dump_json().encode(),
                self.payload.index_headers() + self.envelope.headers())  # an indexing reader finds its own first
