"""The API contract declares exactly what the routes' own checks accept: each string pattern of docs/openapi.json
(a Kubernetes name, a namespace glob, a mountpoint, a label selector) against the check the route runs.

A pattern looser than the check makes Schemathesis' valid requests fail with 400; a stricter one rejects what
clients may send. The JSON Schema `$` ends the text (ECMA 262), which Python's `$` does not quite (it also
matches before a final newline): the patterns are evaluated with `\\Z` for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.api.contract import _parameters
from pipeline.api.errors import ApiError
from pipeline.domain.analysis import InvalidSelector, label_selector_matchers
from pipeline.gateway.analysis.params import (
    CapacityTrendsQuery,
    DiskExhaustionQuery,
    RightsizingQuery,
    parse_mountpoint,
    parse_name,
    parse_namespaces,
)
from pipeline.gateway.anomalies import AnalyzeRequest


def declared(schema: dict[str, Any]) -> Callable[[str], bool]:
    """Whether a string is valid against a declared `pattern` and `maxLength`, as a JSON Schema validator says."""
    pattern = re.compile(schema["pattern"].removesuffix("$") + r"\Z")
    return lambda value: len(value) <= schema.get("maxLength", len(value)) and pattern.search(value) is not None


def accepted(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except (ApiError, InvalidSelector):
        return False
    return True


def query(model: type, name: str) -> dict[str, Any]:
    return next(p["schema"] for p in _parameters(model) if p["name"] == name)


NAME_CHARS = "ab-z09.*?A_/ \n"
LABEL = declared(query(RightsizingQuery, "namespace"))
SUBDOMAIN = declared(query(RightsizingQuery, "pod"))
NAMESPACE_OR_GLOB = declared(query(CapacityTrendsQuery, "namespace"))
MOUNTPOINT = declared(query(DiskExhaustionQuery, "mountpoint"))
SELECTOR = declared(AnalyzeRequest.model_json_schema()["properties"]["label_selector"])


@settings(max_examples=400)
@given(st.text(NAME_CHARS, max_size=70) | st.text("a-", min_size=60, max_size=260))
@example("a" * 63)
@example("a" * 64)
@example("shop\n")
@example("")
def test_names_and_globs(value: str) -> None:
    assert LABEL(value) == accepted(lambda v: parse_name(v, "namespace", subdomain=False), value)
    assert SUBDOMAIN(value) == accepted(lambda v: parse_name(v, "pod", subdomain=True), value)
    assert NAMESPACE_OR_GLOB(value) == accepted(parse_namespaces, value)


@settings(max_examples=400)
@given(st.text("/a.-_Z \n", max_size=40) | st.text("/a", min_size=250, max_size=260))
@example("/")
@example("/var/../etc")
@example("/var/.../etc")
@example("/var/./lib")
@example("/var//lib")
@example("/" + "a" * 255)
@example("/" + "a" * 256)
def test_mountpoints(value: str) -> None:
    assert MOUNTPOINT(value) == accepted(parse_mountpoint, value)


@settings(max_examples=600)
@given(st.lists(st.sampled_from(["app", "a", "x.io/", "=", "==", "!=", "!", ",", " ", "\t", "-", ".", "_", "1",
                                 "A", "web", "/", "in", "(", ")"]), max_size=10).map("".join))
@example("app=web,tier!=db")
@example(" , app == web ,, ")
@example(",")
@example("")
@example("app=" + "v" * 63)
@example("app=" + "v" * 64)
def test_label_selectors(value: str) -> None:
    ours = value != "" and SELECTOR(value)  # empty is absent: the route never parses it
    assert ours == (value != "" and accepted(label_selector_matchers, value))
