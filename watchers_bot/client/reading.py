"""The Bot's message reading: receive, messages, and handlers run for it (run, run_in_thread)."""

from __future__ import annotations

import logging
import queue
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, cast

from ..errors import BotClosed, ReceiveTimeout
from ..models import Message
from ..settings import seconds
from .bot_base import BotBase
from .handler import HandlerThread
from .inbox import CLOSED
from .options import optional_seconds

if TYPE_CHECKING:  # the Bot is made of this part and others
    from .bot import Bot

__all__ = ["Reading"]

log = logging.getLogger("watchers_bot")

# How often Bot.run looks up from waiting (Ctrl-C lands between two looks).
_RUN_POLL = 0.25
#: The thread names of a handler loop (``-dispatch``, ``-1``... are added).
HANDLER_NAME = "watchers-bot-handler"


class Reading(BotBase):
    """The Bot's reading of delivered messages (see :class:`~watchers_bot.Bot`)."""

    # ------------------------------------------------------------------ receiving

    def receive(self, timeout: Optional[float] = None) -> Message:
        """The next message; waits up to ``timeout`` seconds (``None``: until one comes).

        Raises :class:`ReceiveTimeout` (a ``TimeoutError``) when none came,
        :class:`BotClosed` once closed, and the bot's fatal error
        (:class:`AuthError`, :class:`ConnectFailed`, :class:`ConnectionLost`)
        once it gave up and the inbox is empty.
        """
        self._check_open()
        timeout = optional_seconds(timeout, "timeout")
        if timeout is None:
            self._warn_if_waiting_for_nothing("receive")
        try:
            item = self._inbox.take(timeout)
        except queue.Empty:
            raise ReceiveTimeout(f"no message in {timeout:g}s") from None
        if item is CLOSED:
            raise BotClosed("the bot is closed")
        return item  # type: ignore[no-any-return]

    def messages(self, timeout: Optional[float] = None) -> Iterator[Message]:
        """Iterate messages in the order the server sent them.

        Ends when the bot is closed, or when no message came for ``timeout``
        seconds.  If the bot gives up for good it raises that error after
        yielding what was already queued.
        """
        self._check_open()
        timeout = optional_seconds(timeout, "timeout")
        if timeout is None:
            self._warn_if_waiting_for_nothing("messages")
        return self._iterate(timeout)

    def _warn_if_waiting_for_nothing(self, call: str) -> None:
        # A wait without a timeout on a bot that listens to nothing never ends
        # (until close()): say so once, instead of leaving the user staring.
        if self._warned_no_rooms or self._conn.rooms.wanted or self._inbox.qsize():
            return
        self._warned_no_rooms = True
        log.warning(
            "%s() without a timeout on a bot that listens to no room: it waits until a "
            "message comes, and none will; call bot.listen(room) first (or pass timeout=)",
            call,
        )

    def _iterate(self, timeout: Optional[float]) -> Iterator[Message]:
        take = self._inbox.take
        while True:
            try:
                item = take(timeout)
            except queue.Empty:
                return
            if item is CLOSED:
                return
            yield item

    # ------------------------------------------------------------------ handlers

    def run_in_thread(
        self,
        handler: Callable[..., Any],
        *,
        workers: int = 1,
        backlog: Optional[int] = None,
        slow_after: Optional[float] = 30.0,
        name: str = HANDLER_NAME,
    ) -> HandlerThread:
        """Call ``handler`` for every message, on threads of their own; returns their handle.

        ``handler(msg)`` or ``handler(msg, ctx)`` (see :class:`~watchers_bot.Context`), or a
        :class:`~watchers_bot.Router`.  A returned string is sent as the reply in the
        message's room.  Messages of one room are handled one at a time in server order;
        different rooms at once on up to ``workers`` threads (``1``: one message at a time).

        :param backlog: how many messages may wait for a handler (default: the bot's
            ``max_queue``; ``0``: unbounded); beyond it the bot's ``overflow`` policy drops
            one, counted in :attr:`stats` ``.dropped`` and logged.
        :param slow_after: seconds after which a handler still running is reported once
            (WARNING, with its room and the stack where it is); ``None`` turns it off.

        A handler that raises is logged with its traceback and counted, never ends the
        loop; ``handle.stop()`` ends it, and so does closing the bot.  Use one consumer per
        bot: two would share the messages between them.
        """
        return self._runners.start(
            self._handler_thread(handler, workers, backlog, slow_after, name))

    def _handler_thread(self, handler: Callable[..., Any], workers: int,
                        backlog: Optional[int], slow_after: Optional[float],
                        name: str) -> HandlerThread:
        """The checked arguments of :meth:`run_in_thread`, as a handle not yet started."""
        self._check_open()
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if backlog is None:
            backlog = self._inbox.maxsize
        if isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int or None, not {type(backlog).__name__}")
        if backlog < 0:
            raise ValueError("backlog must be >= 0 (0: unbounded)")
        slow = optional_seconds(slow_after, "slow_after")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        return HandlerThread(
            cast("Bot", self), handler, name, self._inbox, workers=workers, backlog=backlog,
            overflow=self._inbox.overflow, slow_after=slow,
        )

    def run(
        self,
        handler: Callable[..., Any],
        *,
        workers: int = 1,
        backlog: Optional[int] = None,
        slow_after: Optional[float] = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Handle every message until the bot is closed or Ctrl-C; blocks.

        Takes the arguments of :meth:`run_in_thread`.  Ctrl-C (or Jupyter's "interrupt
        kernel") stops it cleanly: no new message is started, running handlers get up to
        ``stop_timeout`` seconds to finish, messages not started go back to the inbox, and
        ``run`` returns.  ``close()`` from another thread ends it the same way.  If the bot
        gives up for good, ``run`` raises that error.
        """
        stop_timeout = seconds(stop_timeout, "stop_timeout")
        handle = self._handler_thread(handler, workers, backlog, slow_after, HANDLER_NAME)
        try:
            self._runners.start(handle)  # a Ctrl-C here too stops it cleanly
            while not self._runners.wait(handle, _RUN_POLL):
                pass
            handle.join(stop_timeout)
        except KeyboardInterrupt:
            log.info("interrupted: stopping the handlers (up to %gs)", stop_timeout)
            if not handle.stop(stop_timeout):
                log.warning("handlers still running %gs after the interrupt; left running",
                            stop_timeout)
            return
        if handle.error is not None:
            raise handle.error
