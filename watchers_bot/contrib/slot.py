"""The bot slot: one bot per app and process, created lazily, thread-safe, fork-aware.

The one slot the Flask and Django integrations keep their bot in.  Framework-neutral.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Callable, List, Optional

from ..client.bot import Bot

__all__ = ["BotSlot"]

log = logging.getLogger("watchers_bot")

_slots: "weakref.WeakSet[BotSlot]" = weakref.WeakSet()


class BotSlot:
    """Holds the bot of one app in this process.

    :meth:`get` creates it on first use with ``factory`` (no network: a
    :class:`~watchers_bot.Bot` connects on first use), under a lock, so
    concurrent first requests share one bot.  After ``fork()`` the child starts
    with an empty slot and never touches the parent's connection.
    """

    def __init__(self, factory: Callable[[], Bot], *, name: str = "watchers bot") -> None:
        self._factory = factory
        self._name = name
        self._lock = threading.Lock()
        self._bot: Optional[Bot] = None
        self._pid = os.getpid()
        self._on_close: List[Callable[[], None]] = []
        self._threads: List[threading.Thread] = []
        self.started = False
        _slots.add(self)

    def after_fork(self) -> None:
        """Forget the parent's bot (called in a forked child)."""
        self._lock = threading.Lock()  # may have been held by a thread that is gone
        # The inherited bot is already abandoned by watchers_bot.client.bot's own fork
        # hook (no I/O on the parent's socket, off the exit hook): just drop it.
        self._bot = None
        self._on_close = []
        self._threads = []
        self.started = False
        self._pid = os.getpid()

    @property
    def owned_here(self) -> bool:
        """Whether the slot was made (or last reset) in this process."""
        return self._pid == os.getpid()

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked without the hook (should not happen)
            self.after_fork()

    def get(self, on_create: Optional[Callable[[Bot], None]] = None) -> Bot:
        """The bot, created on first call; ``on_create(bot)`` runs once, under the lock."""
        self._check_pid()
        bot = self._bot
        if bot is not None and not bot.closed:
            return bot
        with self._lock:
            bot = self._bot
            if bot is None or bot.closed:
                bot = self._factory()
                self._bot = bot
                log.debug("%s: created %r in process %d", self._name, bot, os.getpid())
                if on_create is not None:
                    on_create(bot)
            return bot

    def peek(self) -> Optional[Bot]:
        """The bot if one was created in this process, else ``None``."""
        self._check_pid()
        return self._bot

    def start_once(self, launch: Callable[[Bot], None]) -> Bot:
        """The bot; the first call in this process (since the last :meth:`close`)
        also runs ``launch(bot)``, under the lock.  Sets :attr:`started`."""
        bot = self.get()
        if self.started:
            return bot
        with self._lock:
            if not self.started and self._bot is bot:
                launch(bot)
                self.started = True
        return bot

    def add_close_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` before the bot is closed (e.g. stop a handler thread)."""
        self._on_close.append(hook)

    def add_thread(self, thread: threading.Thread) -> None:
        """Join ``thread`` (bounded) after the bot is closed."""
        self._threads.append(thread)

    def close(self, timeout: float = 5.0) -> None:
        """Run the close hooks, close the bot, join the threads and empty the
        slot; the next :meth:`get` creates a new bot.  Idempotent."""
        self._check_pid()
        with self._lock:
            bot, self._bot = self._bot, None
            hooks, self._on_close = self._on_close, []
            threads, self._threads = self._threads, []
            self.started = False
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("%s: a close hook raised", self._name)
        if bot is not None:
            bot.close()
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(timeout)


def _after_fork_in_child() -> None:
    for slot in list(_slots):
        slot.after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_slots() -> None:
    # Registered after watchers_bot.client.bot's own exit hook, so it runs first:
    # handler threads stop before their bots close.
    for slot in list(_slots):
        if slot.owned_here:
            try:
                slot.close()
            except Exception:  # pragma: no cover - never fail interpreter exit
                log.debug("error closing a bot at exit", exc_info=True)
