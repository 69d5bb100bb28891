"""Many small, similar records held compressed in memory, by key (pure).

A read model that keeps 100,000 incidents as their ~1.2 KB JSON records holds 110 MB; compressed one by one they
shrink only by half (too little repetition inside one record), but blocks of BLOCK records compress tenfold,
since records of one schema repeat each other's field names and values. A record is appended to the open block
(uncompressed); a full block is compressed (zstd, ~2 µs per record); reading one record decompresses its block
(~40 µs for 64 records), and the last block read stays decompressed, so neighbours are read at once.

A removed or replaced record leaves a dead slot in its block; a block whose records are all dead is freed, and
once dead slots outnumber live ones every live record is written into new blocks (amortised over the removals
that made them dead).
"""

from __future__ import annotations

from collections.abc import Iterator

import cramjam

BLOCK = 64  # records per compressed block: 10x smaller than the records at 64, 11x at 128, but slower reads
LEVEL = 1  # zstd level: 3 compresses these blocks by 1 % more at 1.2x the time


class _Block:
    __slots__ = ("data", "ends", "live")

    def __init__(self, records: list[bytes]) -> None:
        ends, end = [], 0
        for record in records:
            end += len(record)
            ends.append(end)
        self.data = bytes(cramjam.zstd.compress(b"".join(records), level=LEVEL))
        self.ends = ends  # where each record ends in the decompressed block
        self.live = len(records)


class RecordStore:
    """bytes by key, compressed in blocks; the dict operations a read model uses."""

    def __init__(self, block: int = BLOCK) -> None:
        self.block = block
        self._where: dict[str, int] = {}  # key -> block number * block + slot
        self._blocks: dict[int, _Block] = {}
        self._open: list[bytes] = []  # the block being filled (number `_next`), uncompressed
        self._open_keys: list[str | None] = []
        self._next = 0
        self._dead = 0
        self._cached: tuple[int, bytes] | None = None  # the last block read, decompressed

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __setitem__(self, key: str, value: bytes) -> None:
        self._discard(key)
        self._where[key] = self._next * self.block + len(self._open)
        self._open.append(value)
        self._open_keys.append(key)
        if len(self._open) == self.block:
            self._close()

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        at = self._where.get(key)
        if at is None:
            return default
        number, slot = divmod(at, self.block)
        if number == self._next:
            return self._open[slot]
        found = self._blocks[number]
        if self._cached is None or self._cached[0] != number:
            self._cached = (number, bytes(cramjam.zstd.decompress(found.data)))
        return self._cached[1][found.ends[slot - 1] if slot else 0:found.ends[slot]]

    def pop(self, key: str, default: bytes | None = None) -> bytes | None:
        value = self.get(key)
        if value is None:
            return default
        self._discard(key)
        return value

    def __delitem__(self, key: str) -> None:
        if key not in self._where:
            raise KeyError(key)
        self._discard(key)

    def discard(self, key: str) -> None:
        """Remove a record if it is there (nothing is decompressed)."""
        self._discard(key)

    @property
    def compressed_bytes(self) -> int:
        """What the closed blocks hold (the open block is not counted)."""
        return sum(len(b.data) for b in self._blocks.values())

    def _close(self) -> None:
        self._blocks[self._next] = block = _Block(self._open)
        block.live = sum(1 for key in self._open_keys if key is not None)
        if block.live:
            self._dead += len(self._open) - block.live
        else:
            del self._blocks[self._next]
        self._next += 1
        self._open, self._open_keys = [], []

    def _discard(self, key: str) -> None:
        at = self._where.pop(key, None)
        if at is None:
            return
        number, slot = divmod(at, self.block)
        if number == self._next:  # still open: the slot stays, its record is not kept in the block
            self._open_keys[slot] = None
            self._open[slot] = b""
            return
        found = self._blocks[number]
        found.live -= 1
        self._dead += 1
        if not found.live:
            del self._blocks[number]
            self._dead -= len(found.ends)
            if self._cached is not None and self._cached[0] == number:
                self._cached = None
        if self._dead > len(self._where):
            self._repack()

    def _repack(self) -> None:
        """Write every live record into new blocks (dead slots outnumber live records)."""
        live = [(key, self.get(key)) for key in list(self._where)]
        self._where.clear()
        self._blocks.clear()
        self._open, self._open_keys, self._next, self._dead, self._cached = [], [], 0, 0, None
        for key, value in live:
            assert value is not None
            self[key] = value
