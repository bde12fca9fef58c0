"""The Redis side of the bridge: claims, per-room lanes, lane locks, reply records, stats.

Every fact the bridge keeps lives under one key prefix (``watchers`` by default):

``{p}:claim:{project}:{room}:{id}``
    ``SET NX`` by the listener that forwards the message; the others count a duplicate.
``{p}:lane:{project}:{room}``
    The room's list of messages not yet handled, in the order they were claimed.
``{p}:lock:{project}:{room}``
    Which worker drains the lane now (a random token, with an expiry).
``{p}:reply:{project}:{room}:{id}``
    The reply to that incoming message and its fate: ``sending`` (written before the send,
    so a re-run knows the fate is unknown), ``unsent`` (the send failed before reaching the
    server), ``refused`` (the server said no) or ``replied`` (the server acknowledged it).
    Expires after ``reply_ttl``.
``{p}:uncertain``
    The latest message ids (``room_key:id``) whose reply was re-sent with its fate unknown.
``{p}:active``
    The lanes that may hold messages (swept by listeners so no lane is forgotten).
``{p}:stats``
    Counters and the handler-time histogram buckets of every listener and worker.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ["HANDLER_BUCKETS", "Lanes"]

#: How many uncertain message ids :meth:`Lanes.uncertain` keeps (the newest).
UNCERTAIN_KEPT = 1000

#: Upper bounds (seconds) of the handler-time histogram.
HANDLER_BUCKETS: Tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                                      5.0, 10.0, 30.0)

# Claim and enqueue in one step: a listener that dies in between cannot lose the message.
_CLAIM_PUSH = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], KEYS[2])
  redis.call('HINCRBY', KEYS[4], 'messages_in', 1)
  return 1
end
redis.call('HINCRBY', KEYS[4], 'duplicates', 1)
return 0
"""

# Only the lock's holder may extend it, pop the head, or release it.
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_POP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('LPOP', KEYS[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], KEYS[2])
  return 0
end
return 1
"""


def _part(value: Any) -> str:
    # Key parts are user data: escape the separator so "a:b"/"c" and "a"/"b:c" differ.
    return str(value).replace("%", "%25").replace(":", "%3A")


class Lanes:
    """The bridge's Redis operations (one instance per process; redis-py pools are fork-safe)."""

    def __init__(self, client: Any, *, prefix: str = "watchers", claim_ttl: float = 86400.0,
                 reply_ttl: float = 86400.0, lock_ttl: float = 60.0) -> None:
        self.redis = client
        self.prefix = prefix
        self.claim_ttl = int(max(1, claim_ttl))
        self.reply_ttl = int(max(1, reply_ttl))
        self.lock_ttl_ms = int(max(1, lock_ttl * 1000))
        self._claim_push = client.register_script(_CLAIM_PUSH)
        self._refresh = client.register_script(_REFRESH)
        self._pop = client.register_script(_POP)
        self._release = client.register_script(_RELEASE)

    # ------------------------------------------------------------------ keys

    def room_key(self, project: Optional[str], room_id: str) -> str:
        """The key part naming a room of a project (``-`` for no project)."""
        return f"{_part(project or '-')}:{_part(room_id)}"

    def lane(self, room_key: str) -> str:
        """The Redis key of the room's lane."""
        return f"{self.prefix}:lane:{room_key}"

    def lock(self, room_key: str) -> str:
        """The Redis key of the room's lock."""
        return f"{self.prefix}:lock:{room_key}"

    @property
    def active(self) -> str:
        """The Redis key of the set of lanes that may hold messages."""
        return f"{self.prefix}:active"

    @property
    def stats_key(self) -> str:
        """The Redis key of the counters hash."""
        return f"{self.prefix}:stats"

    # ------------------------------------------------------------------ listener side

    def claim_push(self, payload: Mapping[str, Any], project: Optional[str], room_id: str,
                   message_id: Any) -> Tuple[bool, str]:
        """Claim the message and append it to its room's lane; ``(claimed, room_key)``."""
        room_key = self.room_key(project, room_id)
        claim = f"{self.prefix}:claim:{room_key}:{_part(message_id)}"
        entry = json.dumps({"payload": dict(payload), "at": time.time()}, ensure_ascii=False)
        won = self._claim_push(
            keys=[claim, self.lane(room_key), self.active, self.stats_key],
            args=[self.claim_ttl, entry],
        )
        return bool(won), room_key

    def unlocked_backlogs(self) -> List[str]:
        """Room keys with messages waiting and no worker draining them."""
        lanes = [k.decode() if isinstance(k, bytes) else k
                 for k in self.redis.smembers(self.active)]
        start = len(f"{self.prefix}:lane:")
        rooms = [lane[start:] for lane in lanes]
        if not rooms:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for room in rooms:
            pipe.exists(self.lock(room))
            pipe.llen(self.lane(room))
        answers = pipe.execute()
        return [room for i, room in enumerate(rooms)
                if not answers[2 * i] and answers[2 * i + 1]]

    # ------------------------------------------------------------------ worker side

    def acquire(self, room_key: str, token: str) -> bool:
        """Take the room's lock with ``token`` if nobody holds it."""
        return bool(self.redis.set(self.lock(room_key), token, nx=True, px=self.lock_ttl_ms))

    def refresh(self, room_key: str, token: str) -> bool:
        """Extend the lock if ``token`` still holds it; whether it did."""
        return bool(self._refresh(keys=[self.lock(room_key)], args=[token, self.lock_ttl_ms]))

    def head(self, room_key: str) -> Optional[Dict[str, Any]]:
        """The lane's first entry (``payload``, ``at``), or ``None`` when empty."""
        raw = self.redis.lindex(self.lane(room_key), 0)
        return None if raw is None else dict(json.loads(raw))

    def pop(self, room_key: str, token: str) -> bool:
        """Remove the lane's head if ``token`` holds the lock; whether it did."""
        return bool(self._pop(keys=[self.lock(room_key), self.lane(room_key)], args=[token]))

    def release(self, room_key: str, token: str) -> bool:
        """Release the lock; whether the lane still holds messages."""
        return bool(self._release(keys=[self.lock(room_key), self.lane(room_key), self.active],
                                  args=[token]))

    def reply_key(self, room_key: str, message_id: Any) -> str:
        """The Redis key of the reply record of that message."""
        return f"{self.prefix}:reply:{room_key}:{_part(message_id)}"

    def reply_record(self, room_key: str, message_id: Any) -> Optional[Dict[str, Any]]:
        """``{"state": ..., "text": ...}`` of the reply to that message, if any was made."""
        raw = self.redis.get(self.reply_key(room_key, message_id))
        return None if raw is None else dict(json.loads(raw))

    def set_reply(self, room_key: str, message_id: Any, state: str, text: str) -> None:
        """Record the reply to that message and its fate (see the module's key list)."""
        record = json.dumps({"state": state, "text": text}, ensure_ascii=False)
        self.redis.set(self.reply_key(room_key, message_id), record, ex=self.reply_ttl)

    def mark_replied(self, room_key: str, message_id: Any, text: str) -> None:
        """Record that the server acknowledged the reply, and count it."""
        record = json.dumps({"state": "replied", "text": text}, ensure_ascii=False)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.reply_key(room_key, message_id), record, ex=self.reply_ttl)
        pipe.hincrby(self.stats_key, "replies", 1)
        pipe.execute()

    def note_uncertain(self, room_key: str, message_id: Any) -> None:
        """Remember (and count) a message whose reply may have been posted already."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(f"{self.prefix}:uncertain", f"{room_key}:{_part(message_id)}")
        pipe.ltrim(f"{self.prefix}:uncertain", 0, UNCERTAIN_KEPT - 1)
        pipe.hincrby(self.stats_key, "replies_uncertain", 1)
        pipe.execute()

    def uncertain(self) -> List[str]:
        """The latest ``room_key:id`` whose reply went out again with its fate unknown."""
        return [k.decode() if isinstance(k, bytes) else str(k)
                for k in self.redis.lrange(f"{self.prefix}:uncertain", 0, -1)]

    # ------------------------------------------------------------------ stats

    def count(self, field: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``field``."""
        self.redis.hincrby(self.stats_key, field, n)

    def record_handled(self, seconds: float, waited: float, failed: bool) -> None:
        """Count one handler call (its time in the histogram, the message's wait in its
        lane, whether it raised) in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.stats_key, "handled", 1)
        pipe.hincrby(self.stats_key, "lag_sum_ms", int(max(0.0, waited) * 1000))
        if failed:
            pipe.hincrby(self.stats_key, "handler_errors", 1)
        for bound in HANDLER_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(self.stats_key, f"handler_le_{bound:g}", 1)
        pipe.hincrby(self.stats_key, "handler_count", 1)
        pipe.hincrbyfloat(self.stats_key, "handler_sum", seconds)
        pipe.execute()

    def stats(self) -> Dict[str, float]:
        """Every counter (and histogram bucket) as a number."""
        raw = self.redis.hgetall(self.stats_key)
        out: Dict[str, float] = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            out[name] = float(value)
        return out

    def backlog(self) -> Dict[str, Tuple[int, float]]:
        """Per room key: messages waiting and the age in seconds of the oldest."""
        lanes = [k.decode() if isinstance(k, bytes) else k
                 for k in self.redis.smembers(self.active)]
        start = len(f"{self.prefix}:lane:")
        now = time.time()
        out: Dict[str, Tuple[int, float]] = {}
        for lane in lanes:
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(lane)
            pipe.lindex(lane, 0)
            length, first = pipe.execute()
            if length:
                age = max(0.0, now - float(json.loads(first)["at"])) if first else 0.0
                out[lane[start:]] = (int(length), age)
        return out
