"""What the Bot tells about itself: its properties, stats and health, state changes."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from ..models import Health, Stats
from .bot_base import BotBase
from .connection import State

__all__ = ["Status"]


class Status(BotBase):
    """The Bot's status (see :class:`~watchers_bot.Bot`)."""

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The resolved endpoint."""
        return self._url

    @property
    def bot_id(self) -> Optional[str]:
        """The bot's user id (the sender of sends), if configured."""
        return self._bot_id

    @property
    def state(self) -> str:
        """``idle``, ``connecting``, ``connected``, ``reconnecting``, ``failed`` or ``closed``."""
        return State.CLOSED.value if self._inherited else self._conn.state.value

    @property
    def connected(self) -> bool:
        """Whether the bot is connected and listening to all its rooms right now."""
        return not self._inherited and self._conn.state is State.CONNECTED

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def rooms(self) -> Tuple[str, ...]:
        """Rooms the server acknowledged; listened to again after every reconnect."""
        return self._conn.rooms.listening

    @property
    def stats(self) -> Stats:
        """A snapshot of the bot's counters."""
        counters = self._counters
        backlog, pool_dropped = self._runners.counts()
        return Stats(
            received=counters.received,
            delivered=self._inbox.delivered,
            dropped=self._inbox.dropped + pool_dropped,
            skipped_own=counters.skipped_own,
            malformed=counters.malformed,
            sent=counters.sent,
            send_failures=counters.send_failures,
            reconnects=counters.reconnects,
            pending=len(self._conn.requests),
            queued=self._inbox.qsize(),
            backlog=backlog,
        )

    def __repr__(self) -> str:
        rooms = list(self.rooms)
        return (
            f"<Bot url={self._url!r} state={self.state!r} "
            f"bot_id={self._bot_id!r} rooms={rooms!r}>"
        )

    # ------------------------------------------------------------------ integration

    def on_state_change(
        self, callback: Callable[[str, str], object]
    ) -> Callable[[str, str], object]:
        """Call ``callback(old, new)`` on every change of :attr:`state`.

        Runs on a thread of the bot's own, in order, never on the socket thread;
        an exception is logged.  Usable as a decorator.
        """
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._conn.add_state_listener(callback)
        return callback

    def health(self) -> Health:
        """A snapshot for a health check or a status line: state, times, counters."""
        conn = self._conn
        stats = self.stats
        error = conn.fatal or self._counters.last_error
        backlog, oldest_wait = self._runners.backlog()
        return Health(
            state=self.state,
            ok=conn.state is State.CONNECTED and conn.rooms.listening_to_all,
            url=self._url,
            rooms=self.rooms,
            last_message_at=self._counters.last_message_at,
            connected_since=conn.connected_at if conn.state is State.CONNECTED else None,
            state_since=conn.state_changed_at,
            reconnects=stats.reconnects,
            pending=stats.pending,
            queued=stats.queued,
            dropped=stats.dropped,
            last_error=None if error is None else f"{type(error).__name__}: {error}",
            refused=conn.rooms.refused,
            backlog=backlog,
            oldest_wait=oldest_wait,
        )
