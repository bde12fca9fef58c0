"""The bounded inbox between the socket thread and the user's threads.

The socket thread must never block, so :meth:`Inbox.offer` never waits: when
the inbox is full it drops a message (the oldest by default), counts it and
logs a rate-limited warning.  Readers block in :meth:`Inbox.take` with a
timeout.  Closing ends every reader at once; failing lets readers drain what
is queued and then raises the error.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any, List, Optional

__all__ = ["CLOSED", "OVERFLOW_POLICIES", "Inbox"]

log = logging.getLogger("watchers_bot")

#: Returned by :meth:`Inbox.take` once the inbox is closed.
CLOSED: Any = object()

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")

# One warning per this many seconds at most while messages are being dropped.
_DROP_WARNING_INTERVAL = 5.0
_WAIT_SLICE = 0.5


class Inbox(queue.Queue):  # type: ignore[type-arg]
    """A ``queue.Queue`` that never blocks its producer.

    ``maxsize`` of 0 means unbounded.  Uses the base class's ``mutex`` and
    ``not_empty`` condition so that close and fail wake every reader.
    """

    def __init__(self, maxsize: int = 0, overflow: str = "drop_oldest") -> None:
        super().__init__(maxsize)
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}"
            )
        self.overflow = overflow
        self.delivered = 0
        self.dropped = 0
        self._closed = False
        self._error: Optional[BaseException] = None
        self._drops_unreported = 0
        self._last_drop_warning = float("-inf")

    # ------------------------------------------------------------ producer side

    def offer(self, item: Any) -> bool:
        """Queue ``item`` without blocking; False when a message was dropped instead."""
        dropped_one = False
        with self.mutex:
            if self._closed or self._error is not None:
                self.dropped += 1
                dropped_one = True
            elif 0 < self.maxsize <= self._qsize():
                self.dropped += 1
                dropped_one = True
                if self.overflow == "drop_oldest":
                    self._get()
                    self._put(item)
                    self.delivered += 1
                    self.not_empty.notify()
            else:
                self._put(item)
                self.delivered += 1
                self.not_empty.notify()
        if dropped_one:
            self._report_drop()
        return not dropped_one

    def _report_drop(self) -> None:
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL:
            log.warning(
                "inbox full (%d messages, policy %s): dropped %d message(s); "
                "read faster or raise max_queue",
                self.maxsize,
                self.overflow,
                self._drops_unreported,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    # ------------------------------------------------------------ consumer side

    def take(self, timeout: Optional[float] = None) -> Any:
        """Return the next item, or :data:`CLOSED` once closed.

        Raises ``queue.Empty`` after ``timeout`` seconds with nothing, and the
        error given to :meth:`fail` once everything queued before it was taken.
        """
        with self.not_empty:
            if timeout is None:
                # Waiting in slices keeps the wait interruptible (Ctrl-C,
                # Jupyter's "interrupt kernel") on every platform.
                while not self._qsize() and not self._closed and self._error is None:
                    self.not_empty.wait(_WAIT_SLICE)
            else:
                deadline = time.monotonic() + timeout
                while not self._qsize() and not self._closed and self._error is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Empty
                    self.not_empty.wait(remaining)
            if self._closed:
                return CLOSED
            if self._qsize():
                return self._get()
            assert self._error is not None
            raise self._error

    def take_batch(self, timeout: float, limit: int) -> Any:
        """Like :meth:`take` with a timeout, but return a list of up to ``limit`` items:
        one taken at a time costs a lock round per item, which a dispatcher can skip."""
        first = self.take(timeout)
        if first is CLOSED:
            return CLOSED
        batch = [first]
        with self.mutex:
            while len(batch) < limit and self._qsize() and not self._closed:
                batch.append(self._get())
        return batch

    # ------------------------------------------------------------ lifecycle

    def close(self) -> int:
        """Close: wake every reader; return how many unread messages were discarded."""
        with self.mutex:
            if self._closed:
                return 0
            self._closed = True
            unread = self._qsize()
            self.queue.clear()
            self.dropped += unread
            self.not_empty.notify_all()
        return unread

    def fail(self, error: BaseException) -> None:
        """Let readers drain what is queued, then raise ``error``."""
        with self.mutex:
            if self._closed or self._error is not None:
                return
            self._error = error
            self.not_empty.notify_all()

    def give_back(self, items: List[Any]) -> int:
        """Put messages a consumer took but did not handle back at the front, in order.

        Once closed they are counted as dropped, like unread ones.  Returns how many
        were dropped.  ``delivered`` is not counted again.
        """
        with self.mutex:
            if self._closed:
                self.dropped += len(items)
                dropped = len(items)
            else:
                self.queue.extendleft(reversed(items))
                dropped = 0
                self.not_empty.notify_all()
        if dropped:
            log.warning("closed with %d message(s) not yet handled; counted as dropped", dropped)
        return dropped

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed
