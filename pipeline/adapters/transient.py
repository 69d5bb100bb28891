"""Which HTTP answers are worth another attempt: the one classification every retrying adapter uses.

A 502, 503 or 504 says a proxy or the server could not serve the request now, and did no work for it;
`raise_if_transient` turns such an answer into `TransientStatus`, the exception the adapters' stamina
retries are told to retry on. Any other status is an answer and is returned to the caller as it is.
"""

from __future__ import annotations

import httpx

TRANSIENT_STATUS = frozenset({502, 503, 504})


class TransientStatus(Exception):
    """A 502/503/504: worth another attempt; `response` is the last answer."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status_code}")


def raise_if_transient(response: httpx.Response) -> httpx.Response:
    """The response, unless its status is transient (then `TransientStatus`)."""
    if response.status_code in TRANSIENT_STATUS:
        raise TransientStatus(response)
    return response
