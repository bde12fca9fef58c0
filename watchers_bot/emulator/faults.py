"""Fault injection: ack rules, the send rate limit, and link faults
(drop, kick, freeze, thaw).

:class:`AckRules` and :class:`RateLimit` are consulted by the gateway on
every request; :class:`LinkFaults` acts on the live sockets through the
running :class:`~.server.Generation`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any, Dict, Optional

import attrs

from ..protocol.events import EVENT_LISTEN, EVENT_SEND
from ..protocol.server import rate_limit_refusal
from ..ratelimit import TokenBucket
from .server import JOIN_TIMEOUT, Server
from .state import Client, State, close_raw

__all__ = ["ACK_MODES", "AckRule", "AckRules", "FaultSwitches", "LinkFaults", "RateLimit"]

logger = logging.getLogger("watchers_bot.emulator")

#: The modes :meth:`Emulator.set_ack` accepts.
ACK_MODES = ("normal", "delay", "withhold", "error", "exception")


@attrs.define
class AckRule:
    """How the server answers one event (see :meth:`Emulator.set_ack`)."""

    mode: str = "normal"
    delay: float = 0.0
    error: Any = None
    remaining: Optional[int] = None


class AckRules:
    """The rule of each request event; guarded by the state's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.rules: Dict[str, AckRule] = {EVENT_LISTEN: AckRule(), EVENT_SEND: AckRule()}

    def set(self, event: str, mode: str, *, delay: float, error: object,
            times: Optional[int]) -> None:
        """Validate and install a rule (``ValueError`` naming the bad argument)."""
        if event not in self.rules:
            raise ValueError(f"event must be {EVENT_SEND!r} or {EVENT_LISTEN!r}, not {event!r}")
        if mode not in ACK_MODES:
            raise ValueError(f"mode must be one of {', '.join(ACK_MODES)}, not {mode!r}")
        if not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a number of seconds >= 0, not {delay!r}")
        if mode == "delay" and delay <= 0:
            raise ValueError('mode "delay" needs delay > 0')
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError(f"times must be a positive int or None, not {times!r}")
        if error is not None:
            try:
                json.dumps(error)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"error must be JSON-serializable: {exc}") from None
        with self._lock:
            self.rules[event] = AckRule(mode, float(delay), error, times)

    def take(self, event: str) -> Optional[AckRule]:
        """The rule for one request of ``event`` (counting down ``times``);
        None for an event that is not a request.  Call with the lock held."""
        rule = self.rules.get(event)
        if rule is None:
            return None
        if rule.mode == "normal":
            return rule  # never changed by the caller: no copy needed
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self.rules[event] = AckRule()
        return attrs.evolve(rule)

    def any_delay(self) -> bool:
        """Whether a ``delay`` rule is in force (its acks wait on threads of their own)."""
        with self._lock:
            return any(r.mode == "delay" for r in self.rules.values())


class RateLimit:
    """The optional send rate limit over all sockets (see :meth:`Emulator.set_rate_limit`)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._bucket: Optional[TokenBucket] = None
        self._hint = True
        self.refused = 0  # sends refused for the rate limit

    def set(self, per_second: Optional[float], *, burst: float, retry_after: bool) -> None:
        if per_second is None:
            with self._lock:
                self._bucket = None
            return
        for name, value in (("per_second", per_second), ("burst", burst)):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        with self._lock:
            self._bucket = TokenBucket(float(per_second), float(burst))
            self._hint = bool(retry_after)

    def check(self) -> None:
        """Take a token for one send, or raise the 429 :class:`Refused`."""
        if self._bucket is None:
            return
        with self._lock:
            bucket = self._bucket
            if bucket is None:
                return
            wait = bucket.wait_for_token(time.monotonic())
            if wait <= 0:
                bucket.take()
                return
            self.refused += 1
        raise rate_limit_refusal(wait if self._hint else None)


class LinkFaults:
    """Faults on live links, through the running server generation."""

    def __init__(self, state: State, server: Server) -> None:
        self._state = state
        self._server = server

    def drop(self, sid: Optional[str]) -> int:
        self._server.running_gen()
        clients = self._state.select(sid)
        for c in clients:
            close_raw(c.raw_sock)
        gone = {c.sid for c in clients}
        state = self._state
        try:
            with state.changed:
                end = time.monotonic() + JOIN_TIMEOUT
                while gone & state.clients.keys():
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    state.changed.wait(min(left, 0.5))
        except TimeoutError:  # pragma: no cover - the server reads EOF at once
            logger.debug("dropped links still registered after %ss", JOIN_TIMEOUT)
        return len(clients)

    def kick(self, sid: Optional[str]) -> int:
        gen = self._server.running_gen()
        clients = self._state.select(sid)
        for c in clients:
            gen.kick(c.sid)
        return len(clients)

    def freeze(self, sid: Optional[str], duration: Optional[float]) -> int:
        gen = self._server.running_gen()
        if duration is not None and duration < 0:
            raise ValueError("duration must be >= 0")
        clients = self._state.select(sid)
        end = None if duration is None else time.monotonic() + duration
        for c in clients:
            c.thaw.clear()
            c.frozen = True

            def release(c: Client = c) -> bool:
                wait = 0.05 if end is None else min(0.05, max(end - time.monotonic(), 0))
                c.thaw.wait(wait)
                return (
                    c.thaw.is_set()
                    or gen.stopping.is_set()
                    or (end is not None and time.monotonic() >= end)
                )

            gen.stall(c.eio_sid, release)
        return len(clients)

    def thaw(self, sid: Optional[str]) -> None:
        with self._state.lock:
            clients = self._state.clients
            chosen = list(clients.values()) if sid is None else (
                [clients[sid]] if sid in clients else [])
        for c in chosen:
            c.frozen = False
            c.thaw.set()



class FaultSwitches:
    """The fault switches of :class:`~watchers_bot.emulator.Emulator` (a part of its
    public API, kept here with the faults it switches)."""

    # set by Emulator.__init__
    _state: State
    _server: Server
    _rules: AckRules
    _rate: RateLimit
    _links: LinkFaults

    def _needs_threads(self) -> bool:  # pragma: no cover - Emulator defines it
        raise NotImplementedError

    def set_ack(self, event: str, mode: str = "normal", *, delay: float = 0.0,
                error: object = None, times: Optional[int] = None) -> None:
        """Choose how the server answers ``event`` (``"external/send"`` or ``"external/listen"``).

        Modes:

        - ``"normal"``: answer as documented.
        - ``"delay"``: do the work at once (join the room, record and
          broadcast the message) but send the answer ``delay`` seconds later.
          Other requests and other sockets are not held up.
        - ``"withhold"``: do the work, never send an ack.
        - ``"error"``: do nothing; ack with ``error`` (default
          :data:`DEFAULT_ERROR`; a tuple is sent as several ack arguments).
        - ``"exception"``: do nothing and send no ack; emit a NestJS-style
          ``exception`` event to the socket: ``{"status": "error", "message":
          ..., "cause": {"pattern": event, "data": <the request payload>}}``.
          ``error`` may be a message string, or a dict used as the body
          (``cause`` is added when missing).

        ``times``: apply the mode to the next ``times`` requests only, then
        go back to ``"normal"``; ``None`` (default) keeps it until changed.
        """
        with self._state.lock:
            self._rules.set(event, mode, delay=delay, error=error, times=times)
            gen = self._server.gen
            if gen is not None:
                gen.set_async_handlers(self._needs_threads())

    def set_rate_limit(self, per_second: Optional[float], *, burst: float = 1.0,
                       retry_after: bool = True) -> None:
        """Refuse sends beyond ``per_second`` (bursts of ``burst``) over all sockets, as a
        rate-limited server might: ``{"statusCode": 429, "message": "Too Many Requests",
        "retryAfter": <seconds>}``, nothing posted.  ``retry_after=False`` leaves the hint
        out.  ``None`` turns the limit off (the default).
        """
        self._rate.set(per_second, burst=burst, retry_after=retry_after)

    @property
    def rate_limited(self) -> int:
        """Sends refused for the rate limit since creation."""
        return self._rate.refused

    def drop(self, sid: Optional[str] = None) -> int:
        """Cut the TCP link of one socket (or of all), with no Socket.IO or
        Engine.IO close: the client sees a transport error and should
        reconnect.  Returns how many links were cut.

        When it returns, the server has seen the links go (the sids are gone
        from :attr:`clients` and :meth:`listeners`; bounded wait of 2 s), so a
        following ``wait_for_listeners`` waits for the reconnected client.
        """
        return self._links.drop(sid)

    def kick(self, sid: Optional[str] = None) -> int:
        """Disconnect one socket (or all) from the server side: the client gets
        ``io server disconnect``, which Socket.IO clients do not retry by
        themselves.  Returns how many were disconnected."""
        return self._links.kick(sid)

    def freeze(self, sid: Optional[str] = None, duration: Optional[float] = None) -> int:
        """Stop sending anything to one socket (or all) while the TCP link stays
        open: a half-open link as the client sees it.  Requests are still
        read.  Lasts ``duration`` seconds, or until :meth:`thaw` or stop.
        With short :meth:`set_ping` settings the client should notice the
        missing pings within interval + timeout; so does the server.
        Returns how many sockets were frozen."""
        return self._links.freeze(sid, duration)

    def thaw(self, sid: Optional[str] = None) -> None:
        """End a :meth:`freeze` of one socket (or of all); queued packets then go out."""
        self._links.thaw(sid)
