"""Split rooms between listener processes with no coordination: ``index/count`` shards.

A room belongs to shard ``crc32(room_id) % count``. CRC-32 (not Python's ``hash``, which is
salted per process) gives every process on every machine, after every restart, the same
answer, so ``count`` listeners started with ``0/count`` ... ``count-1/count`` cover each room
exactly once.
"""

from __future__ import annotations

import zlib
from typing import Iterable, List

import attrs

__all__ = ["Shard", "shard_of"]


def shard_of(room_id: str, count: int) -> int:
    """The index of the shard (of ``count``) that owns ``room_id``."""
    if not isinstance(room_id, str):
        raise TypeError(f"room_id must be a str, not {type(room_id).__name__}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    return zlib.crc32(room_id.encode("utf-8")) % count


@attrs.frozen
class Shard:
    """One of ``count`` shards: ``Shard(2, 8)`` or ``Shard.parse("2/8")``."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"shard {name} must be an int, not {type(value).__name__}")
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be in 0..{self.count - 1} for {self.count} shards, "
                f"got {self.index}"
            )

    @classmethod
    def parse(cls, spec: str) -> "Shard":
        """Read ``"index/count"`` (``"2/8"``: the third of eight shards, counting from 0)."""
        if not isinstance(spec, str):
            raise TypeError(f"shard spec must be a str, not {type(spec).__name__}")
        index, sep, count = spec.strip().partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"shard spec must look like INDEX/COUNT (e.g. 2/8), got {spec!r}")
        return cls(int(index), int(count))

    def owns(self, room_id: str) -> bool:
        """Whether ``room_id`` belongs to this shard."""
        return shard_of(room_id, self.count) == self.index

    def select(self, room_ids: Iterable[str]) -> List[str]:
        """The rooms of ``room_ids`` this shard owns, in their order."""
        return [room for room in room_ids if self.owns(room)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
