"""Value classes handed to users."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import attrs

__all__ = ["Message", "Stats"]


@attrs.frozen
class Message:
    """A message posted in a room the bot listens to.

    ``raw`` is the whole payload as the server sent it: the server may add
    fields this class does not name.
    """

    room_id: str
    id: Union[int, str]
    text: str
    user_id: Optional[str]
    project: Optional[str]
    raw: Mapping[str, Any] = attrs.field(repr=False, eq=False)

    def __str__(self) -> str:
        return f"[{self.room_id}] {self.user_id}: {self.text}"


@attrs.frozen
class Stats:
    """A snapshot of a bot's counters (see :attr:`watchers_bot.Bot.stats`)."""

    #: ``message`` events read from the server (including dropped and skipped ones).
    received: int
    #: messages put in the inbox for the user.
    delivered: int
    #: messages discarded because the inbox was full or the bot closed unread.
    dropped: int
    #: the bot's own messages not delivered (``include_own=False``).
    skipped_own: int
    #: ``message`` events whose payload could not be read.
    malformed: int
    #: sends the server acknowledged as successful.
    sent: int
    #: sends that raised (server error, timeout, lost link, closed).
    send_failures: int
    #: successful reconnections.
    reconnects: int
    #: requests waiting for their acknowledgement right now.
    pending: int
    #: messages waiting in the inbox right now.
    queued: int
