"""Value classes handed to users."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import attrs

__all__ = ["Health", "Message", "Stats"]


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
    #: messages taken from the inbox waiting for a handler (``run``, ``run_in_thread``).
    backlog: int = 0


@attrs.frozen
class Health:
    """A bot's health, for a health-check endpoint or a status line (see :meth:`Bot.health`).

    Times are ``time.time()`` values (seconds since the epoch) or ``None``.
    """

    #: ``idle``, ``connecting``, ``connected``, ``reconnecting``, ``failed`` or ``closed``.
    state: str
    #: connected and listening to every room the user asked for (none refused or missing).
    ok: bool
    url: str
    rooms: Tuple[str, ...]
    #: when the last ``message`` event arrived.
    last_message_at: Optional[float]
    #: when the current connection was established (``None`` unless connected).
    connected_since: Optional[float]
    #: when :attr:`state` last changed.
    state_since: float
    reconnects: int
    #: sends and listens waiting for their acknowledgement.
    pending: int
    #: messages waiting in the inbox.
    queued: int
    dropped: int
    #: why the bot gave up, else the last error (of a connection attempt or a request),
    #: as ``"Type: text"`` (never a secret).
    last_error: Optional[str]
    #: rooms the server refused to listen to (e.g. a wrong API key), room -> reason.
    refused: Mapping[str, str] = attrs.field(factory=dict)
    #: messages waiting for a handler, per room (``run``, ``run_in_thread``).
    backlog: Mapping[str, int] = attrs.field(factory=dict)
    #: seconds the oldest message waiting for a handler has waited, or ``None``.
    oldest_wait: Optional[float] = None

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (``rooms`` as a list)."""
        data = attrs.asdict(self)
        data["rooms"] = list(self.rooms)
        data["refused"] = dict(self.refused)
        data["backlog"] = dict(self.backlog)
        return data
