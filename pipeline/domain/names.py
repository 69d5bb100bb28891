"""Kubernetes names, and how a validated name is written into PromQL. One place for both."""

from __future__ import annotations

import re

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
# The patterns (whole-name, unanchored) are also what the API contract declares (pipeline.api.contract).
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
_DNS_LABEL = re.compile(DNS_LABEL)
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)


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


# ----------------------------------------------------------------------------------------- namespace globs
# The MCP server's predict-resource-usage promises wildcards in `namespace` ('openshift-*'). A glob is a
# namespace made of label characters and the wildcards `*` (any run of label characters, also none) and
# `?` (exactly one). Nothing else is accepted, so a glob can never carry a quote, a brace or a regex
# metacharacter of its own into PromQL.
GLOB_WILDCARDS = "*?"
NAMESPACE_GLOB = r"[-a-z0-9*?]*[*?][-a-z0-9*?]*"  # label characters and at least one wildcard
_NAMESPACE_GLOB = re.compile(NAMESPACE_GLOB)
_LABEL_CHAR = "[-a-z0-9]"


def is_glob(value: str) -> bool:
    """The value holds a wildcard (and so is meant as a glob, not a name)."""
    return any(c in value for c in GLOB_WILDCARDS)


def is_namespace_glob(value: str) -> bool:
    """A namespace glob: at most 63 characters of [-a-z0-9*?] with at least one wildcard."""
    return len(value) <= DNS_LABEL_MAX and _NAMESPACE_GLOB.fullmatch(value) is not None


def glob_pattern(glob: str) -> str:
    """The anchored RE2 pattern of a namespace glob: `shop*` -> `^(?:shop[-a-z0-9]*)$`.

    Prometheus anchors `=~` matchers itself; the explicit anchors keep the pattern whole-name wherever else
    it is used. Raises ValueError for anything but a namespace glob (validate first; this is the second
    line of defence).
    """
    if not is_namespace_glob(glob):
        raise ValueError(f"not a namespace glob: {glob!r}")
    parts = [f"{_LABEL_CHAR}*" if c == "*" else _LABEL_CHAR if c == "?" else literal_pattern(c) for c in glob]
    return "^(?:" + "".join(parts) + ")$"


def glob_matches(glob: str, name: str) -> bool:
    """Whether `name` is matched by the namespace glob (the same pattern Prometheus is given)."""
    return re.fullmatch(glob_pattern(glob), name) is not None
