"""Query and path parameters, validated before they get near PromQL (a 400 names the parameter)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.api.errors import ApiError
from pipeline.domain.names import (
    DNS_LABEL_MAX,
    DNS_SUBDOMAIN_MAX,
    glob_pattern,
    is_dns_label,
    is_dns_subdomain,
    is_glob,
    is_namespace_glob,
    promql_regex,
)
from pipeline.gateway.analysis.queries import WINDOWS, label_eq

_MOUNTPOINT = re.compile(r"/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?")
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
    if len(value) > 256 or not _MOUNTPOINT.fullmatch(value) or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise invalid("mountpoint", "mountpoint must be an absolute path of letters, digits, '.', '_', '-'")
    return value


def parse_bool(value: str | None, field: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if value.lower() not in _BOOLS:
        raise invalid(field, f"{field} must be true or false")
    return _BOOLS[value.lower()]


