"""Reading an audit trail and the log it records, and tampering with copies of a trail the four ways the audit
issue names, to see `verify` catch each."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.adapters.audit_log import trail_files
from pipeline.bus.log import LogReader
from pipeline.config import Settings
from pipeline.domain.audit import dedup_key
from pipeline.forensics.audit import audited_topics

ROOT = Path(__file__).resolve().parents[1]


def copy_trail(trail: Path, to: Path) -> tuple[Path, Path]:
    """A copy of the trail directory, and its first file (where the tests tamper)."""
    shutil.copytree(trail, to)
    return to, trail_files(to)[0]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def insert_copy(path: Path, of: int, at: int) -> None:
    """Insert a copy of line `of` so that it becomes line `at` (1-based): a replayed record."""
    content = lines(path)
    content.insert(at - 1, content[of - 1])
    path.write_bytes(b"".join(content))


def delete(path: Path, line: int) -> None:
    content = lines(path)
    del content[line - 1]
    path.write_bytes(b"".join(content))


def modify(path: Path, line: int) -> None:
    """Change what line `line` says about its record (its offset), leaving its hash as it was."""
    content = lines(path)
    record = json.loads(content[line - 1])
    old = f'"offset":{record["offset"]},'.encode()
    content[line - 1] = content[line - 1].replace(old, f'"offset":{record["offset"] + 1000},'.encode(), 1)
    assert content[line - 1] != lines(path)[line - 1]
    path.write_bytes(b"".join(content))


def swap(path: Path, line: int) -> None:
    """Exchange line `line` and the next one."""
    content = lines(path)
    content[line - 1], content[line] = content[line], content[line - 1]
    path.write_bytes(b"".join(content))


def verify_cli(directory: Path) -> tuple[int, str, str]:
    """`pipeline audit verify DIR`, as an operator runs it: exit code, stdout, stderr."""
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "audit", "verify", str(directory)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def trail_lines(directory: Path) -> list[dict[str, Any]]:
    """Every line of the trail, parsed (a line torn by a kill, not yet cut off by a restart, is left out)."""
    out = []
    for path in trail_files(directory):
        for raw in path.read_bytes().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


def trail_keys(directory: Path) -> Counter[str]:
    """How many lines the trail has per record (its dedup key)."""
    return Counter(dedup_key(line["topic"], line["id"], line["partition"], line["offset"])
                   for line in trail_lines(directory))


async def log_keys(settings: Settings) -> Counter[str]:
    """How many records every topic has now per dedup key (the shared forensic reader)."""
    keys: Counter[str] = Counter()
    async with LogReader(settings) as reader:
        async for record in reader.read(audited_topics(settings)):
            event_id = dict(record.headers).get("ce_id")
            p = record.position
            keys[dedup_key(p.topic, event_id.decode() if event_id else None, p.partition, p.offset)] += 1
    return keys
