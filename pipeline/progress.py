"""How far a slow step has come (the Kafka jars from Maven Central, the reference model's first training, a
cluster's history): a bar on a terminal, structured log lines otherwise.

When stderr is a terminal a person watches it: `tqdm` draws one bar, redrawn in place (rate, elapsed time and,
when the total is known, the time left). Otherwise stderr is a log (a pod, CI, `2>file`): a bar's carriage returns
would garble it and JSON logs must stay JSON, so the step writes a log line (`event` = the task, with `done`,
`total`, `percent`, `elapsed_s`) at its start, at every `EVERY_FRACTION` of the total crossed or `EVERY_S`
seconds without one, whichever comes first, and when it finishes (`finished: true`). `Schedule` decides when,
and is pure; `Progress` does the writing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from tqdm import tqdm

from pipeline.observability import get_logger

EVERY_FRACTION = 0.1
EVERY_S = 5.0
DEFAULT_COLUMNS = 100
# tqdm's bar with the counts as numbers (`2.25/5`, not `2.2500000000000004/5`): a step may advance by fractions
BAR = "{l_bar}{bar}| {n:g}/{total:g} {unit} [{elapsed}<{remaining}{postfix}]"

log = get_logger("pipeline.progress")


@dataclass
class Schedule:
    """When a log reader hears about the step: its start, each `every_fraction` of the total crossed (when the
    total is known), `every_s` seconds after the last line otherwise, and its end."""

    total: float | None
    every_fraction: float = EVERY_FRACTION
    every_s: float = EVERY_S
    _last_at: float | None = None
    _last_step: int = -1

    def due(self, done: float, now: float) -> bool:
        """Whether to report `done` now; a reported line moves the schedule on."""
        step = self._step(done)
        if self._last_at is not None and step <= self._last_step and now - self._last_at < self.every_s:
            return False
        self._last_at, self._last_step = now, max(step, self._last_step)
        return True

    def _step(self, done: float) -> int:
        if not self.total:
            return 0
        return int(min(done / self.total, 1.0) / self.every_fraction + 1e-9)


def fields(done: float, total: float | None, unit: str, elapsed: float) -> dict[str, Any]:
    """What a progress log line says: `percent` only when the total is known."""
    out: dict[str, Any] = {"done": round(done, 2), "total": total, "unit": unit, "elapsed_s": round(elapsed, 1)}
    if total:
        out["percent"] = round(100 * min(done / total, 1.0))
    return out


class Progress:
    """One slow step: `advance` as work is done (any thread), `note` what it is doing now, `close` at the end
    (or use it as a context manager). `total` None: unknown (a count and a rate, no percentage)."""

    def __init__(self, task: str, total: float | None = None, *, unit: str = "", out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, logger: Any = None) -> None:
        self.task, self.total, self.unit = task, total, unit
        self.done = 0.0
        self.detail = ""
        self._out = out if out is not None else sys.stderr
        self._clock, self._log = clock, logger if logger is not None else log
        self._started = clock()
        self._lock = threading.Lock()
        self._closed = False
        self._bar: Any = None  # the tqdm bar, on a terminal
        self._schedule = Schedule(total)
        if _is_terminal(self._out):
            known = _columns(self._out)  # a terminal that reports no size (0 columns) gets tqdm's default width
            self._bar = tqdm(total=total, desc=task, unit=f" {unit or 'it'}" if total is None else unit,
                             bar_format=BAR if total else None, file=self._out,
                             dynamic_ncols=known, ncols=None if known else DEFAULT_COLUMNS, leave=True,
                             mininterval=0.2)
        else:
            self._schedule.due(0.0, self._started)
            self._report()

    def advance(self, n: float = 1) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:  # never past the total (fractions of a unit add up to a hair more)
                self._bar.update(n if self.total is None else max(0.0, min(n, self.total - self._bar.n)))
            elif self._schedule.due(self.done, self._clock()):
                self._report()

    def note(self, detail: str) -> None:
        """What the step is doing now (shown beside the bar, and in the next log line)."""
        with self._lock:
            self.detail = detail
            if self._bar is not None:
                self._bar.set_postfix_str(detail)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()
            else:
                self._report(finished=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _report(self, finished: bool = False) -> None:
        extra: dict[str, Any] = {"detail": self.detail} if self.detail else {}
        if finished:
            extra["finished"] = True
        self._log.info(self.task, **fields(self.done, self.total, self.unit, self._clock() - self._started),
                       **extra)


def _columns(out: TextIO) -> bool:
    """Whether the terminal says how wide it is (a new pseudo-terminal says 0 until it is told)."""
    try:
        return os.get_terminal_size(out.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream: not a person watching
        return False
