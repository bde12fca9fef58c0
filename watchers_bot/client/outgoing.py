"""The Bot's requests: listen, send, send_async, reply (and the client-side send rate)."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

from .. import protocol
from ..errors import ConfigError, RateLimited, ServerError
from ..models import Message
from ..ratelimit import SendLimiter
from ..settings import check_id
from .bot_base import BotBase
from .requests import AckFuture

__all__ = ["Outgoing"]

log = logging.getLogger("watchers_bot")


class Outgoing(BotBase):
    """The Bot's requests to the server (see :class:`~watchers_bot.Bot`)."""

    # ------------------------------------------------------------------ listening

    def listen(self, *room_ids: str, timeout: Optional[float] = None) -> None:
        """Subscribe to rooms; block until the server acknowledges each one.

        Rooms are remembered in :attr:`rooms` and listened to again after every
        reconnect.  Raises :class:`ServerError` (the first refusal, after every
        room was answered), :class:`AckTimeout` or :class:`ConnectionLost`, and
        :class:`ConnectFailed` when no link came.  An explicit ``timeout`` is the
        deadline of the whole call, the wait for a (re)connection included;
        without one the link may take ``connect_timeout`` and each answer
        ``ack_timeout``.
        """
        self._check_open()
        if not room_ids:
            raise TypeError("listen() needs at least one room id")
        rooms = []
        for room in room_ids:
            if isinstance(room, (list, tuple, set, frozenset)):
                raise TypeError("room ids are passed one by one: use listen(*rooms)")
            rooms.append(check_id(room, "room_id"))
        wait = self._ack_wait(timeout)
        whole = timeout is not None
        end = time.monotonic() + wait
        self._before_network()
        futures = self._conn.listen(rooms, wait, whole=whole)
        first_error: Optional[BaseException] = None
        for room, future in futures:
            try:
                self._conn.wait(future, self._left(end) if whole else wait)
            except Exception as exc:
                if isinstance(exc, ServerError):
                    self._conn.rooms.refuse(room, exc)
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    # ------------------------------------------------------------------ sending

    def _send_payload(self, room_id: Any, text: Any) -> Dict[str, str]:
        self._check_open()
        room_id = check_id(room_id, "room_id")
        if self._bot_id is None:
            raise ConfigError(
                "bot_id is required to send: pass bot_id= (or set WATCHERS_BOT_ID) "
                "with the bot's id from the admin panel"
            )
        return protocol.check_send(room_id, self._api_key, self._bot_id, text)

    def send_async(self, room_id: str, text: str, *, timeout: Optional[float] = None) -> AckFuture:
        """Send without waiting; returns a future of the server's acknowledgement.

        Returns at once, always.  Arguments are checked here, before anything
        is sent.  With no link, the request waits for one inside the future
        (connecting in the background if nobody is) and goes out when it comes
        up.  The future fails with :class:`ConnectFailed` ("nothing was sent")
        if no link came in time, with :class:`AckTimeout` if the server did not
        answer in time.  An explicit ``timeout`` bounds the whole request, the
        wait for a link included; without one, the link may take
        ``connect_timeout`` and the answer ``ack_timeout`` after it.  Raises at
        once (not in the future) for bad arguments, a closed bot, or the error
        a bot that gave up for good failed with.
        """
        payload = self._send_payload(room_id, text)
        wait = self._ack_wait(timeout)
        self._before_network()
        return self._send_async_within_limits(room_id, payload, wait, whole=timeout is not None)

    def send(self, room_id: str, text: str, *, timeout: Optional[float] = None) -> Any:
        """Post ``text`` in a room as the bot; block until the server acknowledges it.

        Returns the server's answer (``None`` for the documented empty ack).
        Raises :class:`ServerError` if the server refused it; :class:`AckTimeout`
        or :class:`ConnectionLost` if the outcome is unknown; :class:`ConnectFailed`
        if it could not be sent at all.  An explicit ``timeout`` is the deadline
        of the whole call, the wait for a (re)connection included; without one
        the link may take ``connect_timeout`` and the answer ``ack_timeout``.
        With ``send_rate`` the call first waits for its turn, and a rate-limit
        refusal is retried after the server's hint; both within the deadline,
        else :class:`RateLimited` (not posted).
        """
        payload = self._send_payload(room_id, text)
        wait = self._ack_wait(timeout)
        whole = timeout is not None
        self._before_network()
        return self._send_within_limits(room_id, payload, wait, whole=whole)

    def reply(self, message: Message, text: str, *, timeout: Optional[float] = None) -> Any:
        """Send ``text`` in the room ``message`` came from."""
        if not isinstance(message, Message):
            raise TypeError(f"message must be a Message, not {type(message).__name__}")
        return self.send(message.room_id, text, timeout=timeout)

    # ------------------------------------------------------------------ send rate limits

    def _send_within_limits(
        self, room_id: str, payload: Dict[str, str], wait: float, *, whole: bool
    ) -> Any:
        # The whole of it (turn in the limiter, retries after refusals) fits in ``wait``;
        # a rate-limit refusal is sent again by the request table (retry=True).
        start = time.monotonic()
        deadline = start + wait
        limiter = self._limiter
        if limiter is not None:
            pause = limiter.reserve(room_id, deadline)
            if pause is None:
                raise self._no_turn(limiter, room_id, wait)
            if pause > 0:
                time.sleep(pause)
                self._check_open()
        remaining = deadline - time.monotonic()
        # A whole-call deadline is given as the caller's timeout from the call's
        # start (so errors name the timeout the caller gave, not what is left of it).
        future = self._conn.request(
            protocol.EVENT_SEND, payload, protocol.read_send_ack,
            wait if whole else max(remaining, 1e-3), whole=whole,
            start=start if whole else None, retry=True,
        )
        # An explicit timeout bounds the whole call; otherwise the link wait
        # (connect_timeout) comes before the answer's own wait.
        left = deadline - time.monotonic() if whole else remaining
        return self._conn.wait(future, max(left, 1e-3))

    def _send_async_within_limits(
        self, room_id: str, payload: Dict[str, str], wait: float, *, whole: bool
    ) -> AckFuture:
        # As _send_within_limits, without blocking: a turn later in the limiter waits
        # in the request table (not_before), not in the caller.
        now = time.monotonic()
        limiter = self._limiter
        pause = 0.0
        if limiter is not None:
            turn = limiter.reserve(room_id, now + wait)
            if turn is None:
                return self._conn.requests.refused(
                    protocol.EVENT_SEND, self._no_turn(limiter, room_id, wait))
            pause = turn
        return self._conn.request_async(
            protocol.EVENT_SEND, payload, protocol.read_send_ack, wait, whole=whole,
            retry=True, not_before=now + pause if pause > 0 else 0.0)

    @staticmethod
    def _no_turn(limiter: SendLimiter, room_id: str, wait: float) -> RateLimited:
        return RateLimited(
            f"not posted: the client-side send_rate ({limiter.rate}) leaves no "
            f"turn in room {room_id!r} within the {wait:g}s timeout",
            event=protocol.EVENT_SEND,
        )
