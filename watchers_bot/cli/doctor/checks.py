"""What every doctor check shares: the three outcomes, the failure, durations and OS reasons."""

from __future__ import annotations

import socket
import time

__all__ = ["FAIL", "OK", "SKIP", "CheckFailed", "ms", "os_reason"]

OK, FAIL, SKIP = "ok", "FAIL", "skip"


class CheckFailed(Exception):
    """A check failed; the text is its one-line explanation."""


def ms(started: float) -> str:
    """Milliseconds since ``started`` (a ``time.monotonic()``), for a check's line."""
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def os_reason(exc: BaseException) -> str:
    """The short reason of a socket error: ``Connection refused``, ``timed out``."""
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
