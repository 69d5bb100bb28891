"""Kubernetes resource quantities in the exact form the API writes them (`512Mi`, `1G`, `1e9`), and the
memory limit a `raise_memory_limit` step sets. (The analysis routes' human-readable sizes, `1.5Gi`, are
`domain.capacity.format_bytes`.)"""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTPE]i?|[kmun]|e[0-9]+)?$")
_FACTORS = {
    None: 1, "": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 1e-3, "u": 1e-6, "n": 1e-9,
}


def parse_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes (`512Mi`, `1G`, `1e9`, `1048576`)."""
    m = _QUANTITY.match(quantity.strip())
    if not m:
        raise ValueError(f"not a quantity: {quantity!r}")
    number, suffix = float(m.group(1)), m.group(2)
    if suffix and suffix.startswith("e"):
        return int(number * 10 ** int(suffix[1:]))
    return int(number * _FACTORS[suffix])


def format_quantity(value: int) -> str:
    """Bytes as the largest binary unit that divides them (`1536Mi`, `2Gi`), else plain bytes."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = _FACTORS[suffix]
        if value % factor == 0 and value >= factor:
            return f"{value // factor}{suffix}"
    return str(value)


def raised_memory(current: str | None, factor: float, max_bytes: int) -> str | None:
    """The raised limit, rounded up to whole MiB and capped; None when it cannot be raised (no limit set, or
    already at the cap)."""
    if not current:
        return None
    now = parse_bytes(current)
    if now >= max_bytes:
        return None
    mib = 2**20
    raised = min(max_bytes, -(-int(now * factor) // mib) * mib)
    return format_quantity(raised) if raised > now else None
