"""The fault suite's closing summary: every FIGURES line the tests printed, again, after the results."""

from __future__ import annotations

import json
from typing import Any

from tests.faults.helpers import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for name, values in FIGURES:
        terminalreporter.write_line(f"FIGURES {name}: {json.dumps(values, sort_keys=True)}")
