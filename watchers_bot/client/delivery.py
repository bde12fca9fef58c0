"""The read thread's message path: parse, skip the bot's own, hand to the inbox.

Runs on python-engineio's read thread for every ``message`` event, in server
order; never blocks and never runs user code (a full inbox drops by its
policy, counted).  Malformed payloads are counted and logged, never raised:
bad data from the server must not kill the read thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Tuple

from .. import protocol
from .counters import Counters
from .inbox import Inbox

__all__ = ["Delivery"]

log = logging.getLogger("watchers_bot")


class Delivery:
    """Turns ``message`` events into :class:`~watchers_bot.Message` objects in the inbox."""

    __slots__ = ("_bot_id", "_counters", "_inbox", "_include_own")

    def __init__(self, inbox: Inbox, counters: Counters, *, bot_id: Optional[str],
                 include_own: bool) -> None:
        self._inbox = inbox
        self._counters = counters
        self._bot_id = bot_id
        self._include_own = include_own

    def on_message(self, args: Tuple[Any, ...]) -> None:
        counters = self._counters
        counters.message_received(time.time())
        try:
            if len(args) != 1:
                raise protocol.MalformedPayload(f"message event with {len(args)} arguments")
            msg = protocol.parse_message(args[0])
        except protocol.MalformedPayload as exc:
            counters.message_malformed()
            log.warning("skipped a malformed message from the server: %s", exc)
            return
        if not self._include_own and self._bot_id is not None and msg.user_id == self._bot_id:
            counters.message_skipped_own()
            return
        self._inbox.offer(msg)
