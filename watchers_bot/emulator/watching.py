"""What a test reads from the emulator: records, clients, rooms, and the waits.

:class:`Watching` is the read side of :class:`~watchers_bot.emulator.Emulator`'s
public API, kept next to nothing else so the facade stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Set

from .records import Records, RequestRecord, SentMessage, WrittenMessage
from .state import State

if TYPE_CHECKING:
    from . import Emulator

__all__ = ["Watching"]


class Watching:
    """Records and waits of :class:`~watchers_bot.emulator.Emulator`."""

    # set by Emulator.__init__
    _state: State
    _records: Records

    @property
    def sent(self) -> List[SentMessage]:
        """Messages bots sent and the emulator accepted, oldest first (a copy)."""
        return self._records.copy(self._records.sent)

    @property
    def written(self) -> List[WrittenMessage]:
        """``message`` events written to sockets, in write order (a copy).

        Recorded only with ``Emulator(record_writes=True)`` (empty otherwise):
        see :class:`WrittenMessage` for what "written" means.
        """
        return self._records.copy(self._records.written)

    def clear_written(self) -> None:
        """Forget the :attr:`written` record."""
        self._records.clear_written()

    def clear_sent(self) -> None:
        """Forget the :attr:`sent` and :attr:`requests` records."""
        self._records.clear_sent()

    @property
    def requests(self) -> List[RequestRecord]:
        """Every request sockets made, valid or not, oldest first (a copy)."""
        return self._records.copy(self._records.requests)

    @property
    def clients(self) -> List[str]:
        """Sids of the connected sockets, in connection order."""
        with self._state.lock:
            return list(self._state.clients)

    def listeners(self, room_id: str) -> Set[str]:
        """Sids of the sockets listening to ``room_id``."""
        return self._state.listeners(room_id)

    @property
    def connections(self) -> int:
        """Connections accepted since this emulator was created (across restarts)."""
        return self._state.connections

    @property
    def refused(self) -> int:
        """Connection attempts refused (bad or missing token) since creation."""
        return self._state.refused

    # ------------------------------------------------------------------ waits

    def wait_for(
        self, predicate: Callable[["Emulator"], bool], timeout: float = 5.0, *, what: str = ""
    ) -> None:
        """Block until ``predicate(self)`` is true; re-checked on every state change.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        me: "Emulator" = self  # type: ignore[assignment]
        self._records.wait(lambda: predicate(me), timeout, what or str(predicate))

    def wait_for_sent(self, count: int, timeout: float = 5.0) -> List[SentMessage]:
        """Block until at least ``count`` messages were sent; returns all of :attr:`sent`."""
        return self._records.wait_for_sent(count, timeout)

    def wait_for_requests(
        self, count: int, event: Optional[str] = None, timeout: float = 5.0
    ) -> List[RequestRecord]:
        """Block until at least ``count`` requests (of ``event``, if given) arrived;
        returns those requests."""
        return self._records.wait_for_requests(count, event, timeout)

    def wait_for_clients(self, count: int, timeout: float = 5.0) -> List[str]:
        """Block until exactly ``count`` sockets are connected; returns their sids.

        ``wait_for_clients(0)`` waits until everyone is gone.
        """
        state = self._state
        try:
            self._records.wait(lambda: len(state.clients) == count, timeout, "clients")
        except TimeoutError:
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} connected "
                f"client(s); {len(self.clients)} connected, {self.connections} accepted "
                f"and {self.refused} refused so far"
            ) from None
        return self.clients

    def wait_for_listeners(
        self, room_id: str, count: int = 1, timeout: float = 5.0
    ) -> Set[str]:
        """Block until exactly ``count`` sockets listen to ``room_id``; returns their sids."""
        rooms = self._state.rooms
        try:
            self._records.wait(lambda: len(rooms.get(room_id, ())) == count, timeout,
                               "listeners")
        except TimeoutError:
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} listener(s) "
                f"of room {room_id!r}; it has {len(self.listeners(room_id))}"
            ) from None
        return self.listeners(room_id)
