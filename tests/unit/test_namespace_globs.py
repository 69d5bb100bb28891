"""Namespace globs (the MCP server's `openshift-*`): what is a glob, and the anchored regex it becomes."""

from __future__ import annotations

import re

import pytest

from pipeline.domain.names import glob_matches, glob_pattern, is_glob, is_namespace_glob

NAMESPACES = ["openshift-monitoring", "openshift", "shop", "shop-2", "myshop", "payments", "kube-system"]


@pytest.mark.parametrize(
    ("glob", "matched"),
    [
        ("openshift-*", ["openshift-monitoring"]),
        ("openshift*", ["openshift-monitoring", "openshift"]),
        ("shop*", ["shop", "shop-2"]),
        ("*shop", ["shop", "myshop"]),
        ("sh?p", ["shop"]),
        ("*", NAMESPACES),
        ("*-*", ["openshift-monitoring", "shop-2", "kube-system"]),
        ("nothing-*", []),
    ],
)
def test_a_glob_matches_whole_names_only(glob: str, matched: list[str]) -> None:
    assert [ns for ns in NAMESPACES if glob_matches(glob, ns)] == matched


def test_the_pattern_is_anchored_and_has_only_label_characters() -> None:
    assert glob_pattern("shop*") == "^(?:shop[-a-z0-9]*)$"
    assert glob_pattern("s?op") == "^(?:s[-a-z0-9]op)$"
    # A wildcard never crosses into what a namespace cannot hold.
    assert not glob_matches("shop*", 'shop"} or vector(1)')
    assert not glob_matches("*", "a.b") and not glob_matches("*", "A")


@pytest.mark.parametrize(
    "value",
    ['shop*"}', "shop.*", "(a|b)*", "shop*\\", "Shop*", "sh op*", "shop*,namespace=~x", "a" * 63 + "*", ""],
)
def test_anything_but_label_characters_and_wildcards_is_not_a_glob(value: str) -> None:
    assert not is_namespace_glob(value)
    with pytest.raises(ValueError):
        glob_pattern(value)


def test_a_name_without_wildcards_is_not_a_glob() -> None:
    assert not is_glob("shop") and not is_namespace_glob("shop")
    assert is_glob("shop*") and is_glob("sh?p") and is_namespace_glob("a" * 62 + "*")
    assert re.fullmatch(glob_pattern("a" * 62 + "*"), "a" * 63)
