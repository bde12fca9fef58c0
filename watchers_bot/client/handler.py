"""Running a message handler on threads of its own: ``Bot.run_in_thread`` and ``Bot.run``."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from .inbox import Inbox
from .pool import RoomPool

if TYPE_CHECKING:
    from .bot import Bot

__all__ = ["HandlerThread", "Runners"]

log = logging.getLogger("watchers_bot")


class HandlerThread:
    """Handlers running for every message a bot receives; rooms in parallel, each room in order.

    Returned by :meth:`Bot.run_in_thread`.  With ``workers=1`` one message is handled at a
    time, in server order.  With more, messages of different rooms are handled at once on
    up to ``workers`` threads, and each room's messages one at a time, in server order.

    A handler that raises is logged at ERROR (with its traceback, on the
    ``watchers_bot.handler`` logger) and counted in :attr:`errors`; the room goes on with its
    next message.  A returned string is sent as the reply in the message's room; a reply
    that fails is logged the same way (saying whether it may have been posted) and counted in
    :attr:`reply_failures`.  The loop ends on :meth:`stop`, when the bot is closed, or when the
    bot gives up for good (the error is then in :attr:`error`).
    """

    def __init__(
        self,
        bot: "Bot",
        handler: Callable[..., Any],
        name: str,
        inbox: Inbox,
        *,
        workers: int = 1,
        backlog: int = 0,
        overflow: str = "drop_oldest",
        slow_after: Optional[float] = 30.0,
    ) -> None:
        self._pool = RoomPool(
            bot, inbox, handler, workers=workers, backlog=backlog, overflow=overflow,
            slow_after=slow_after, name=name,
        )
        self._name = name

    def _start(self) -> "HandlerThread":
        self._pool.start()
        return self

    @property
    def workers(self) -> int:
        """How many threads call the handler."""
        return self._pool.workers

    @property
    def handled(self) -> int:
        """Messages the handler returned on (whether or not the reply then failed)."""
        return self._pool.handled

    @property
    def errors(self) -> int:
        """Messages on which the handler raised."""
        return self._pool.errors

    @property
    def reply_failures(self) -> int:
        """Returned replies whose send raised."""
        return self._pool.reply_failures

    @property
    def dropped(self) -> int:
        """Messages dropped because the backlog was full (also in ``bot.stats.dropped``)."""
        return self._pool.dropped

    @property
    def slow_reports(self) -> int:
        """How many handler calls the watchdog reported as slow."""
        return self._pool.slow_reports

    @property
    def error(self) -> Optional[BaseException]:
        """The bot's fatal error if that is what ended the loop."""
        return self._pool.error

    def backlog(self) -> Dict[str, int]:
        """Messages waiting for a handler, per room (rooms with none are left out)."""
        return self._pool.backlog()

    def oldest_wait(self) -> Optional[float]:
        """How many seconds the oldest message waiting for a handler has waited (``None``: none)."""
        return self._pool.oldest_wait()

    @property
    def running(self) -> bool:
        """Whether the loop is still running."""
        return self._pool.alive

    def stop(self, timeout: Optional[float] = 5.0) -> bool:
        """Take no new message, let running handlers finish; wait up to ``timeout``.

        Messages no handler started yet go back to the bot's inbox, in order (a later
        ``messages()`` or ``run`` gets them).  Returns whether every thread ended.  Safe to
        call from a handler (it then returns at once, ``False``).
        """
        self._pool.request_stop()
        if self._pool.is_worker(threading.current_thread()):
            return False
        return self.join(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the loop to end (``None``: until it does); returns whether it did."""
        return self._pool.join(timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<HandlerThread {self._name} {state} workers={self.workers} "
            f"handled={self.handled} errors={self.errors}>"
        )


class Runners:
    """The handler loops of one bot: started, counted in its stats, stopped at close."""

    def __init__(self) -> None:
        self._handles: "weakref.WeakSet[HandlerThread]" = weakref.WeakSet()

    def start(self, handle: HandlerThread) -> HandlerThread:
        self._handles.add(handle)
        return handle._start()

    @staticmethod
    def wait(handle: HandlerThread, poll: float) -> bool:
        """Wait up to ``poll`` seconds for ``handle``'s loop to end (Ctrl-C lands between)."""
        return handle._pool.done.wait(poll)

    def stop_all(self, timeout: float) -> None:
        # close(): the inbox is closed, so every dispatcher ends; wait for handlers in flight.
        me = threading.current_thread()
        for handle in list(self._handles):
            handle.stop(timeout)
            if handle.running and not handle._pool.is_worker(me):
                log.warning("%r still running after close(); a handler does not return", handle)

    def counts(self) -> Tuple[int, int]:
        """(messages waiting for handlers, messages the handler pools dropped)."""
        waiting = dropped = 0
        for handle in list(self._handles):
            waiting += handle._pool.waiting()
            dropped += handle.dropped
        return waiting, dropped

    def backlog(self) -> Tuple[Dict[str, int], Optional[float]]:
        """(messages waiting per room, the oldest wait in seconds) over every loop."""
        rooms: Dict[str, int] = {}
        oldest: Optional[float] = None
        for handle in list(self._handles):
            for room, count in handle.backlog().items():
                rooms[room] = rooms.get(room, 0) + count
            age = handle.oldest_wait()
            if age is not None and (oldest is None or age > oldest):
                oldest = age
        return rooms, oldest
