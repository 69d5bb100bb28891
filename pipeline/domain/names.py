"""Kubernetes names, and how a validated name is written into PromQL. One place for both."""

from __future__ import annotations

import re

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: namespaces."""
    return len(value) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """RFC 1123 subdomain: pods, deployments, nodes."""
    return len(value) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(value) is not None


def promql_string(value: str) -> str:
    """A PromQL string literal. Values are validated first; quoting is the second line of defence."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def promql_regex(pattern: str) -> str:
    """A PromQL regex-matcher literal for an RE2 pattern."""
    return promql_string(pattern)


_RE2_META = re.compile(r"([.^$|?*+()\[\]{}\\])")


def literal_pattern(name: str) -> str:
    """An RE2 pattern matching `name` exactly: its metacharacters escaped ('-' is plain outside [])."""
    return _RE2_META.sub(r"\\\1", name)
