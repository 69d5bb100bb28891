"""The cluster's history, pulled synchronously with ``prometheus-api-client`` (batch range queries);
`TrainingFailed` says why nothing could be trained."""

from __future__ import annotations

import math
import re
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import stamina
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from pipeline.config import Settings

CHUNK_S = 6 * 3600  # one range query covers at most this much (Prometheus caps a query at 11,000 points)
_TRANSIENT = re.compile(r"HTTP Status Code (502|503|504)\b")


class TrainingFailed(Exception):
    """Nothing to train on, or Prometheus could not answer; the message says which."""



# ----------------------------------------------------------------------------- Prometheus (sync)
Samples = list[tuple[float, float]]


class History:
    """Range queries through ``prometheus-api-client``, one client per thread, stamina retries on
    connection errors and 502/503/504; the pipeline's Prometheus settings (token, CA, Thanos flags)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self._local = threading.local()
        self.queries = 0

    def _client(self) -> PrometheusConnect:
        client: PrometheusConnect | None = getattr(self._local, "client", None)
        if client is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = self.settings.prometheus_ca_file or self.settings.prometheus_tls_verify
            token = self.settings.prometheus_token.get_secret_value() or _read(
                self.settings.prometheus_token_file
            )
            client = PrometheusConnect(
                self.url,
                headers={"Authorization": f"Bearer {token}"} if token else None,
                retry=Retry(total=0, raise_on_status=False),  # stamina retries, below
                session=session,
                timeout=self.settings.prometheus_timeout_s,
            )
            self._local.client = client
        return client

    def range(self, expr: str, start: float, end: float, step_s: int) -> list[tuple[dict[str, str], Samples]]:
        """``query_range`` at start, start+step, ..., end, cut in chunks of CHUNK_S; series by labels."""
        merged: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], Samples]] = {}
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + CHUNK_S)
            for result in self._query(expr, chunk_start, chunk_end, step_s):
                labels = dict(result.get("metric") or {})
                key = tuple(sorted(labels.items()))
                samples = merged.setdefault(key, (labels, []))[1]
                for ts, value in result.get("values") or []:
                    t = float(ts)
                    if not samples or t > samples[-1][0]:
                        samples.append((t, _float(value)))
            chunk_start = chunk_end + step_s
        return list(merged.values())

    def _query(self, expr: str, start: float, end: float, step_s: int) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if self.settings.thanos_dedup is not None:
            params["dedup"] = str(self.settings.thanos_dedup).lower()
        if self.settings.thanos_partial_response is not None:
            params["partial_response"] = str(self.settings.thanos_partial_response).lower()
        self.queries += 1
        try:
            for attempt in stamina.retry_context(
                on=_transient,
                attempts=self.settings.prometheus_retry_attempts,
                timeout=self.settings.prometheus_timeout_s * 2,
                wait_initial=0.1,
                wait_max=2.0,
            ):
                with attempt:
                    result: list[dict[str, Any]] = self._client().custom_query_range(
                        expr,
                        start_time=datetime.fromtimestamp(start, UTC),
                        end_time=datetime.fromtimestamp(end, UTC),
                        step=str(step_s),
                        params=params,
                    )
        except requests.RequestException as exc:
            raise TrainingFailed(f"cannot reach Prometheus at {redact(self.url)}: {exc}") from None
        except PrometheusApiClientException as exc:
            raise TrainingFailed(f"Prometheus refused {expr!r}: {str(exc)[:300]}") from None
        return result


def _transient(exc: Exception) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, PrometheusApiClientException) and bool(_TRANSIENT.search(str(exc)))


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def redact(url: str) -> str:
    """The URL without user:password, for reports and metadata."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
