"""Apache Kafka's runtime jars from Maven Central, resolved once into the cache directory.

Nothing on PyPI ships the broker, but Maven Central publishes its jars: a throwaway POM names the broker
and the logging backend, Maven copies the runtime closure into ``<cache_dir>/kafka/<version>/libs`` (its
local repository in ``<cache_dir>/m2``), and a smoke test proves the classpath before it is stamped
complete. The cache directory is ``Settings.cache_dir`` (``PIPELINE_CACHE_DIR``), passed in or read once
here. Recipe and reasoning: shared/infra/KAFKA-FROM-MAVEN.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import load_settings
from pipeline.observability import get_logger
from pipeline.progress import Progress

KAFKA_VERSION = "4.1.1"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
LOG4J2_VERSION = "2.24.3"
_STAMP = ".complete"
# Maven's line for each file it fetched: `Downloaded from central: <url> (18 kB at 85 kB/s)`
_DOWNLOADED = re.compile(r"Downloaded from [^:]+: \S+ \(([\d.]+) (B|kB|MB|GB)")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}

log = get_logger("pipeline.embedded.kafka")


def progress(msg: str, level: str = "info") -> None:
    """What the embedded broker is doing: a log line on stderr, never on stdout (`pipeline broker` prints its
    bootstrap address there)."""
    getattr(log, level)(msg)


def downloads(maven_log: str) -> tuple[int, int]:
    """How many files Maven fetched, and their bytes, from its log (its `Downloaded from` lines)."""
    found = _DOWNLOADED.findall(maven_log)
    return len(found), round(sum(float(size) * _UNITS[unit] for size, unit in found))


def major(version: str) -> int:
    """Kafka major version: 4.x logs through log4j2, 3.x through reload4j."""
    return int(version.split(".", 1)[0])


def file_tail(path: Path, start: int = 0, max_bytes: int = 6000) -> str:
    """Last part of a log file (from byte ``start`` on), for error messages."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(start, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _pom(version: str) -> str:
    """Throwaway POM: the broker plus the logging backend that Kafka's POM leaves out."""
    deps = [("org.apache.kafka", "kafka_2.13", version)]
    if major(version) >= 4:  # log4j2 is compileOnly in core; the SLF4J 1.x binding is release-only
        deps += [("org.apache.logging.log4j", a, LOG4J2_VERSION)
                 for a in ("log4j-slf4j-impl", "log4j-core", "log4j-api")]
    else:  # 3.9 needs log4j 1 API for Log4jController
        deps += [("org.slf4j", "slf4j-reload4j", "1.7.36"), ("ch.qos.reload4j", "reload4j", "1.2.25")]
    body = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
        "</dependency>\n" for g, a, v in deps)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
            "<modelVersion>4.0.0</modelVersion><groupId>pipeline.embedded</groupId>\n"
            f"<artifactId>kafka-runtime</artifactId><version>{version}</version>"
            "<packaging>pom</packaging>\n"
            f"<dependencies>\n{body}</dependencies>\n</project>\n")


def require(tool: str) -> str:
    """Absolute path of a required executable, or a clear error naming what is missing."""
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"'{tool}' not found on PATH; the embedded Kafka broker needs Java 17+ and Maven")
    return found


def _run_maven(kdir: Path, out_dir: Path, maven_repo: Path, version: str) -> None:
    """copy-dependencies into ``out_dir``, showing the files Maven fetches as it goes (minutes, once). How many
    it will fetch is not known beforehand (it depends on what the local repository holds): a count, no
    percentage."""
    log_path = kdir / "mvn.log"
    cmd = [require("mvn"), "-B", "-f", str(kdir / "pom.xml"),
           f"-Dmaven.repo.local={maven_repo}",
           f"{DEPENDENCY_PLUGIN}:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={out_dir}"]
    task = f"resolving Apache Kafka {version} jars from Maven Central into {out_dir.parent / 'libs'}"
    with log_path.open("wb") as out, Progress(task, unit="files") as shown:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        seen = 0
        while True:
            try:
                rc = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                rc = None
            fetched, size = downloads(file_tail(log_path, max_bytes=10**8))
            if fetched > seen:
                shown.note(f"{size / 1e6:.1f} MB")
                shown.advance(fetched - seen)
                seen = fetched
            if rc is not None:
                break
    if rc != 0:
        raise RuntimeError(f"Maven failed to resolve Kafka jars (exit {rc}); log {log_path}:\n"
                           f"{file_tail(log_path, max_bytes=4000)}")


def _smoke_test(libs: Path, version: str) -> None:
    """Prove the classpath is complete before stamping it: ``kafka.Kafka --version`` must work."""
    res = subprocess.run([require("java"), "-Xmx64m", "-cp", f"{libs}/*", "kafka.Kafka", "--version"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    out = (res.stdout + res.stderr).strip()
    if res.returncode != 0 or version not in out:
        raise RuntimeError(f"Kafka classpath smoke test failed (exit {res.returncode}):\n{out[-3000:]}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent ``ensure_kafka`` calls (CLI + tests) so Maven never runs twice at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_kafka(version: str = KAFKA_VERSION, *, cache_dir: Path | None = None) -> Path:
    """Return a directory holding the broker's runtime jars, resolving them from Maven Central once.

    ``cache_dir`` defaults to ``Settings.cache_dir`` (``PIPELINE_CACHE_DIR``, ``~/.cache/pipeline``).
    A stamp file makes every later call a no-op; the jars are copied into a scratch directory
    and renamed into place only after the smoke test, so an interrupted run never looks complete.
    """
    root = cache_dir if cache_dir is not None else load_settings().cache_dir
    kdir = root / "kafka" / version
    libs = kdir / "libs"
    if (libs / _STAMP).is_file():
        return libs
    with _file_lock(kdir / ".lock"):
        if (libs / _STAMP).is_file():
            return libs
        started = time.monotonic()
        (kdir / "pom.xml").write_text(_pom(version))
        partial = kdir / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _run_maven(kdir, partial, root / "m2", version)
        _smoke_test(partial, version)
        (partial / _STAMP).write_text(version + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        progress(f"Kafka {version} ready: {sum(1 for _ in libs.glob('*.jar'))} jars "
             f"in {time.monotonic() - started:.1f}s")
    return libs


# --------------------------------------------------------------------------- broker process
