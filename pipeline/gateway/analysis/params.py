"""Query and path parameters, validated before they get near PromQL (a 400 names the parameter), and the
same rules declared for the API contract (the query models below)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import Path
from pydantic import BaseModel, Field

from pipeline.api.contract import dns_label, dns_subdomain, fullmatch
from pipeline.api.errors import ApiError
from pipeline.domain.names import (
    DNS_LABEL,
    DNS_LABEL_MAX,
    DNS_SUBDOMAIN_MAX,
    NAMESPACE_GLOB,
    glob_pattern,
    is_dns_label,
    is_dns_subdomain,
    is_glob,
    is_namespace_glob,
    promql_regex,
)
from pipeline.gateway.analysis.queries import WINDOWS, label_eq

# An absolute path of segments of letters, digits, '.', '_', '-', none of them `.` or `..`.
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+"
MOUNTPOINT = rf"/(?:(?:{_SEGMENT})(?:/(?:{_SEGMENT}))*)?"
MOUNTPOINT_MAX = 256
_MOUNTPOINT = re.compile(MOUNTPOINT)
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}

# ------------------------------------------------------------------------------------------ validation
def invalid(field: str, message: str, code: str = "INVALID_QUERY") -> ApiError:
    return ApiError(400, code, message, field=field)


def parse_name(value: str | None, field: str, *, subdomain: bool, code: str = "INVALID_QUERY") -> str | None:
    """A Kubernetes name (RFC 1123 label ≤ 63, or subdomain ≤ 253), None when absent or empty."""
    if value is None or value == "":
        return None
    valid, limit, kind = (
        (is_dns_subdomain, DNS_SUBDOMAIN_MAX, "DNS subdomain")
        if subdomain
        else (is_dns_label, DNS_LABEL_MAX, "DNS label")
    )
    if not valid(value):
        raise invalid(
            field, f"{field} must be a Kubernetes name (RFC 1123 {kind}, at most {limit} characters)", code
        )
    return value


@dataclass(frozen=True, slots=True)
class Namespaces:
    """A namespace, or a glob of them (`shop*`), as the client asked for it."""

    value: str

    @property
    def glob(self) -> bool:
        return is_glob(self.value)

    @property
    def selector(self) -> str:
        """`,namespace="shop"` or, for a glob, `,namespace=~"^(?:shop[-a-z0-9]*)$"`."""
        if self.glob:
            return f",namespace=~{promql_regex(glob_pattern(self.value))}"
        return label_eq("namespace", self.value)


def parse_namespaces(
    value: str | None, field: str = "namespace", code: str = "INVALID_QUERY"
) -> Namespaces | None:
    """A namespace name or a namespace glob (label characters plus `*` and `?`); None when absent."""
    if value is None or value == "":
        return None
    if is_glob(value):
        if not is_namespace_glob(value):
            raise invalid(
                field,
                f"{field} must be a Kubernetes name or a glob of one ('*' and '?' as wildcards, at most "
                f"{DNS_LABEL_MAX} characters of a-z, 0-9, '-')",
                code,
            )
        return Namespaces(value)
    return Namespaces(parse_name(value, field, subdomain=False, code=code) or value)


def ns_selector(namespaces: Namespaces | None) -> str:
    return namespaces.selector if namespaces is not None else ""


def parse_window(value: str | None, default: str) -> str:
    value = default if value is None or value == "" else value
    if value not in WINDOWS:
        raise invalid("window", f"window must be one of: {', '.join(WINDOWS)}")
    return value


def parse_mountpoint(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MOUNTPOINT_MAX or not _MOUNTPOINT.fullmatch(value):
        raise invalid("mountpoint", "mountpoint must be an absolute path of letters, digits, '.', '_', '-'")
    return value


def parse_bool(value: str | None, field: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if value.lower() not in _BOOLS:
        raise invalid(field, f"{field} must be true or false")
    return _BOOLS[value.lower()]


# ------------------------------------------------------------------------------------------ the contract
# What the parsers above accept, declared: an empty value is absent, as the MCP server sends `?namespace=&pod=`.
NAMESPACE_OR_GLOB = f"{DNS_LABEL}|{NAMESPACE_GLOB}"


def namespace_query(description: str, *, glob: bool = False) -> Any:
    regex = NAMESPACE_OR_GLOB if glob else DNS_LABEL
    return Field("", description=description, json_schema_extra=fullmatch(regex, DNS_LABEL_MAX, empty=True))


def subdomain_query(description: str) -> Any:
    return Field("", description=description, json_schema_extra=dns_subdomain(empty=True))


def window_query(default: str, description: str) -> Any:
    return Field(default, description=f"{description}; empty: {default}", json_schema_extra={"enum": ["", *WINDOWS]})


def namespace_path(description: str) -> Any:
    return Path(description=description, examples=["shop"], json_schema_extra=dns_label())


BOOLEAN = "`true`/`false` (also `1`/`0`, `t`/`f`, any case)"


class NamespaceCapacityQuery(BaseModel):
    """`GET /api/v1/capacity/namespace/{namespace}`."""

    include_trending: bool = Field(True, description=f"add `trending`, the usage trend and forecast: {BOOLEAN}")
    include_infrastructure: bool = Field(
        False, description=f"add `infrastructure_impact` (etcd, API server, scheduler): {BOOLEAN}")
    window: str = window_query("7d", "the history the trend is fitted over")


class CapacityTrendsQuery(BaseModel):
    """`GET /api/v1/capacity/trends`."""

    namespace: str = namespace_query("a namespace, or a glob of them (`shop*`, `team-?`); empty: the cluster",
                                     glob=True)
    window: str = window_query("7d", "the history the trend is fitted over")


class DiskExhaustionQuery(BaseModel):
    """`GET /api/v1/predict/disk-exhaustion`."""

    node: str = subdomain_query("only this node's filesystems (node-exporter's `node` or `instance` label); "
                                "empty: every node")
    mountpoint: str = Field("", description="only filesystems mounted here (an absolute path); empty: all",
                            json_schema_extra=fullmatch(MOUNTPOINT, MOUNTPOINT_MAX, empty=True))


class MemoryLeakQuery(BaseModel):
    """`GET /api/v1/predict/memory-leak`."""

    namespace: str = namespace_query("only this namespace's containers; empty: every namespace")


class RightsizingQuery(BaseModel):
    """`GET /api/v1/recommendations/rightsizing`."""

    namespace: str = namespace_query("only this namespace's containers; empty: every namespace")
    pod: str = subdomain_query("only pods whose name starts with this (a Deployment's name selects its pods)")
    window: str = window_query("30d", "the history the P95 usage is taken over")
