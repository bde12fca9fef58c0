"""The counters :attr:`Bot.stats` and :meth:`Bot.health` read.

One object per bot, written by the read thread (delivery, acks), the
supervisor (expiry, reconnects) and callers; read as snapshots.  Plain ints
behind one lock: nothing outside this module holds a mutable counter.
"""

from __future__ import annotations

import threading
from typing import Optional

from .. import protocol

__all__ = ["Counters"]


class Counters:
    """What happened to a bot's requests, messages and link."""

    __slots__ = (
        "_listen_failures",
        "_listened",
        "_lock",
        "_malformed",
        "_received",
        "_reconnects",
        "_send_failures",
        "_sent",
        "_skipped_own",
        "_unmatched_exceptions",
        "last_error",
        "last_message_at",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = self._send_failures = 0
        self._listened = self._listen_failures = 0
        self._reconnects = 0
        self._unmatched_exceptions = 0
        self._received = self._skipped_own = self._malformed = 0
        #: The latest error of a request or of the link (shown in health()).
        self.last_error: Optional[BaseException] = None
        #: When the latest message came (``time.time()``), if any.
        self.last_message_at: Optional[float] = None

    # ------------------------------------------------------------------ requests

    def request_done(self, event: str, *, ok: bool, error: Optional[BaseException] = None) -> None:
        """A request's final outcome.  ``error``: a new error worth showing (a failure
        that follows from the link's own error passes None)."""
        send = event == protocol.EVENT_SEND
        with self._lock:
            if ok:
                if send:
                    self._sent += 1
                else:
                    self._listened += 1
            else:
                if send:
                    self._send_failures += 1
                else:
                    self._listen_failures += 1
                if error is not None:
                    self.last_error = error

    def unmatched_exception(self) -> None:
        with self._lock:
            self._unmatched_exceptions += 1

    def reconnected(self) -> None:
        with self._lock:
            self._reconnects += 1

    # ------------------------------------------------------------------ messages (read thread)

    def message_received(self, at: float) -> None:
        # One writer (the read thread); the lock keeps readers' snapshots whole.
        with self._lock:
            self._received += 1
            self.last_message_at = at

    def message_malformed(self) -> None:
        with self._lock:
            self._malformed += 1

    def message_skipped_own(self) -> None:
        with self._lock:
            self._skipped_own += 1

    # ------------------------------------------------------------------ reading

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def send_failures(self) -> int:
        return self._send_failures

    @property
    def listened(self) -> int:
        return self._listened

    @property
    def listen_failures(self) -> int:
        return self._listen_failures

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @property
    def unmatched_exceptions(self) -> int:
        return self._unmatched_exceptions

    @property
    def received(self) -> int:
        return self._received

    @property
    def skipped_own(self) -> int:
        return self._skipped_own

    @property
    def malformed(self) -> int:
        return self._malformed
