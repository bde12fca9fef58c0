"""Running a message handler on a thread of its own: :meth:`Bot.run_in_thread`."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable, Optional

from .errors import BotClosed, ReceiveTimeout
from .models import Message

if TYPE_CHECKING:
    from .bot import Bot

__all__ = ["HandlerThread"]

log = logging.getLogger("watchers_bot")

# How often the loop looks at its stop flag while no message comes.
_POLL = 0.25


class HandlerThread:
    """A thread that calls a handler for every message a bot receives.

    Returned by :meth:`Bot.run_in_thread`.  A handler that raises is logged
    (with its traceback) and counted in :attr:`errors`; the loop goes on.  The
    loop ends on :meth:`stop`, when the bot is closed, or when the bot gives up
    for good (the error is then in :attr:`error`).
    """

    def __init__(self, bot: "Bot", handler: Callable[[Message], object], name: str) -> None:
        self._bot = bot
        self._handler = handler
        self._stop = threading.Event()
        self.handled = 0
        self.errors = 0
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _start(self) -> "HandlerThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        bot = self._bot
        while not self._stop.is_set():
            try:
                msg = bot.receive(timeout=_POLL)
            except ReceiveTimeout:
                continue
            except BotClosed:
                return
            except Exception as exc:  # the bot gave up for good: AuthError, ConnectFailed...
                self.error = exc
                log.error("message handler thread stops: %s", exc)
                return
            try:
                self._handler(msg)
            except Exception:
                self.errors += 1
                log.exception("the message handler raised on %r; going on", msg)
            else:
                self.handled += 1

    @property
    def running(self) -> bool:
        """Whether the loop is still running."""
        return self._thread.is_alive()

    def stop(self, timeout: Optional[float] = 5.0) -> bool:
        """Stop after the message being handled (if any); wait up to ``timeout``.

        Returns whether the thread ended.  Safe to call from the handler itself.
        """
        self._stop.set()
        return self.join(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the loop to end (``None``: until it does); returns whether it did."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<HandlerThread {self._thread.name} {state} "
            f"handled={self.handled} errors={self.errors}>"
        )
