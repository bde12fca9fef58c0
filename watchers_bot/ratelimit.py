"""Client-side send rate limits: a global and a per-room token bucket (``Bot(send_rate=...)``)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Dict, Optional, Union

import attrs

__all__ = ["SendLimiter", "SendRate", "TokenBucket"]

# Buckets of rooms not sent to lately are forgotten beyond this many rooms (a full
# bucket is the same as no bucket, so nothing is lost by forgetting one).
_MAX_ROOM_BUCKETS = 10_000


def _rate(value: Any, name: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of sends per second, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of sends per second, "
                         f"got {value!r}")
    return float(value)


def _total(value: Any) -> Optional[float]:
    return _rate(value, "total")


def _per_room(value: Any) -> Optional[float]:
    return _rate(value, "per_room")


def _burst(value: Any) -> Optional[float]:
    return _rate(value, "burst")


@attrs.frozen
class SendRate:
    """How fast the bot may send: ``total`` sends per second over all rooms, ``per_room`` in
    any one room (``None``: no limit), allowing bursts of ``burst`` sends (default: one
    second's worth, at least 1)."""

    total: Optional[float] = attrs.field(default=None, converter=_total)
    per_room: Optional[float] = attrs.field(default=None, converter=_per_room)
    burst: Optional[float] = attrs.field(default=None, converter=_burst)

    def burst_for(self, rate: float) -> float:
        return self.burst if self.burst is not None else max(1.0, rate)


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``.  Not locked: :class:`SendLimiter` locks."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def wait_for_token(self, now: float) -> float:
        """Seconds from ``now`` until a token is there (0: one is there now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        # May go below zero: a reservation the next callers wait behind.
        self.tokens -= 1


class SendLimiter:
    """Reserves a send slot in both buckets, waiting at most until the call's deadline."""

    def __init__(self, rate: SendRate) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._total = (None if rate.total is None
                       else TokenBucket(rate.total, rate.burst_for(rate.total)))
        self._rooms: Dict[str, TokenBucket] = {}
        self.waited = 0.0  # seconds callers spent waiting, for stats

    def reserve(self, room_id: str, deadline: float) -> Optional[float]:
        """Take a slot; return how long to wait for it, or ``None`` (nothing taken) if that
        would pass ``deadline`` (a ``time.monotonic()`` value)."""
        now = time.monotonic()
        with self._lock:
            room = None
            if self.rate.per_room is not None:
                room = self._rooms.get(room_id)
                if room is None:
                    if len(self._rooms) >= _MAX_ROOM_BUCKETS:
                        self._forget_full(now)
                    rate = self.rate.per_room
                    room = self._rooms[room_id] = TokenBucket(rate, self.rate.burst_for(rate))
            wait = 0.0
            for bucket in (self._total, room):
                if bucket is not None:
                    wait = max(wait, bucket.wait_for_token(now))
            if now + wait > deadline:
                return None
            for bucket in (self._total, room):
                if bucket is not None:
                    bucket.take()
            self.waited += wait
            return wait

    def _forget_full(self, now: float) -> None:
        for room_id, bucket in list(self._rooms.items()):
            if bucket.wait_for_token(now) == 0 and bucket.tokens >= bucket.capacity:
                del self._rooms[room_id]


def send_rate(value: Union[float, SendRate, None]) -> Optional[SendRate]:
    """Read ``Bot(send_rate=...)``: ``None``, a number (total sends per second) or a SendRate."""
    if value is None or isinstance(value, SendRate):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("send_rate must be a number of sends per second, a SendRate or None, "
                        f"not {type(value).__name__}")
    return SendRate(total=value)
