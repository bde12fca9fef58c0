"""What the emulator saw and did: requests, accepted sends, written messages; and the waits.

Every record is appended under the emulator's one condition
(:attr:`~.state.State.changed`), so a wait re-checks its predicate on every
change of the state or of the records.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, List, Mapping, Optional

import attrs

__all__ = ["Records", "RequestRecord", "SentMessage", "WrittenMessage"]


@attrs.frozen
class SentMessage:
    """A message a bot posted with ``external/send`` and the emulator accepted."""

    #: the room it went to.
    room_id: str
    #: its text.
    text: str
    #: the ``userId`` the bot sent it as.
    user_id: str
    #: the Socket.IO sid of the socket that sent it.
    sid: str
    #: the request payload as received, with ``apiKey`` masked as ``"***"``.
    payload: Mapping[str, Any] = attrs.field(repr=False)
    #: ``time.monotonic()`` when it was received.
    at: float = attrs.field(repr=False)
    #: the ``message.id`` it was broadcast with.
    message_id: int = attrs.field(repr=False)


@attrs.frozen
class RequestRecord:
    """A request a socket made (``external/listen``, ``external/send`` or any other event).

    Every request is recorded, valid or not, whatever the ack mode.
    """

    #: the event name.
    event: str
    #: the Socket.IO sid of the socket that sent it.
    sid: str
    #: the first argument of the event, with secrets masked; ``None`` when absent.
    payload: Any
    #: the ack mode in force for it (``"normal"``, ``"delay"``, ...), ``None`` for other events.
    mode: Optional[str]
    #: ``time.monotonic()`` when it was received.
    at: float = attrs.field(repr=False)


@attrs.frozen
class WrittenMessage:
    """A ``message`` event the server wrote to one socket (``record_writes=True``).

    Recorded when the socket's writer thread takes the packet to write it, so a
    message held back by :meth:`Emulator.freeze` or still queued when a link
    died is not recorded.  What a client received on a socket is therefore
    always a prefix of what was written to it, and a link that ended normally
    delivered all of it.
    """

    #: the Socket.IO sid of the socket it was written to.
    sid: str
    #: the room it was posted in.
    room_id: str
    #: its ``message.id``.
    message_id: Any
    #: ``time.monotonic()`` when it was written.
    at: float = attrs.field(repr=False)


class Records:
    """The three records, guarded by ``changed`` (the emulator's one condition)."""

    def __init__(self, changed: threading.Condition, *, record_writes: bool) -> None:
        self.changed = changed
        self.record_writes = record_writes
        self.sent: List[SentMessage] = []
        self.requests: List[RequestRecord] = []
        self.written: List[WrittenMessage] = []

    # Called with ``changed`` held (by the gateway, which decides under the
    # same lock): appending and notifying is all they do.
    def add_request(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self.changed.notify_all()

    def add_sent(self, record: SentMessage) -> None:
        self.sent.append(record)
        self.changed.notify_all()

    def mode_of_last(self, sid: str, event: str) -> Optional[str]:
        """The mode the latest request of ``sid`` for ``event`` got."""
        with self.changed:
            return next((r.mode for r in reversed(self.requests)
                         if r.sid == sid and r.event == event), None)

    # On a socket's writer thread, as it takes message packets to write.
    def add_write(self, sid: str, room_id: str, message_id: Any) -> None:
        with self.changed:
            self.written.append(WrittenMessage(sid, room_id, message_id, time.monotonic()))

    def add_writes(self, sid: str, room_id: str, message_ids: Iterable[Any]) -> None:
        now = time.monotonic()
        with self.changed:
            self.written.extend(WrittenMessage(sid, room_id, m, now) for m in message_ids)

    def copy(self, which: List[Any]) -> List[Any]:
        with self.changed:
            return list(which)

    def clear_sent(self) -> None:
        with self.changed:
            self.sent.clear()
            self.requests.clear()

    def clear_written(self) -> None:
        with self.changed:
            self.written.clear()

    def matching(self, event: Optional[str]) -> List[RequestRecord]:
        with self.changed:
            return [r for r in self.requests if event is None or r.event == event]

    # ------------------------------------------------------------------ waits

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until ``predicate()`` is true, re-checked on every change;
        ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"emulator: timed out after {timeout:g}s waiting for {what}")
                self.changed.wait(min(left, 0.5))

    def wait_for_sent(self, count: int, timeout: float) -> List[SentMessage]:
        try:
            self.wait(lambda: len(self.sent) >= count, timeout, f"{count} sent message(s)")
        except TimeoutError:
            got = self.copy(self.sent)
            shown = ", ".join(repr(m.text[:40]) for m in got[-5:])
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} sent "
                f"message(s); got {len(got)}" + (f" (last: {shown})" if got else "")
            ) from None
        return self.copy(self.sent)

    def wait_for_requests(self, count: int, event: Optional[str],
                          timeout: float) -> List[RequestRecord]:
        try:
            self.wait(lambda: len(self.matching(event)) >= count, timeout, "requests")
        except TimeoutError:
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} "
                f"{event or 'request'}(s); got {len(self.matching(event))}"
            ) from None
        return self.matching(event)
