"""What the parts of :class:`~watchers_bot.Bot` share: the state they read, the checks
they make before a call.  The parts are the Bot's own construction and lifecycle
(:mod:`.bot`), its requests (:mod:`.outgoing`) and its message reading (:mod:`.reading`)."""

from __future__ import annotations

import time
from typing import Any, List, Optional

from ..errors import BotClosed
from ..ratelimit import SendLimiter
from ..settings import seconds
from .connection import Connection
from .counters import Counters
from .handler import Runners
from .inbox import Inbox

__all__ = ["BotBase"]


class BotBase:
    """The attributes every part of the Bot uses (set by ``Bot.__init__``) and
    the checks they share."""

    _conn: Connection
    _inbox: Inbox
    _counters: Counters
    _runners: Runners
    _limiter: Optional[SendLimiter]
    _api_key: str
    _bot_id: Optional[str]
    _url: str
    _ack_timeout: float
    _closed: bool
    _inherited: bool
    _warned_no_rooms: bool
    _secrets: List[str]

    def _before_network(self) -> None:
        """Called before a call's first network step (the Bot warns of duplicates here)."""

    def _ack_wait(self, timeout: Any) -> float:
        return self._ack_timeout if timeout is None else seconds(timeout, "timeout")

    @staticmethod
    def _left(end: float) -> float:
        return max(end - time.monotonic(), 0.0)

    def _check_open(self) -> None:
        if self._closed:
            if self._inherited:
                raise BotClosed(
                    "this bot was created in a parent process before fork(); "
                    "create a new Bot in this process"
                )
            raise BotClosed("the bot is closed")
