"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.support import Clock


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves (circuit breaker timeouts, cooldowns) instead of sleeping."""
    return Clock()
