"""SIGTERM as an exception, for the long-running commands (CLI, runbot, flask watchers run).

Python's default SIGTERM action ends the process without running ``finally``
blocks or exit hooks, so a bot stopped by ``kill``, ``docker stop`` or systemd
would vanish without closing.  Inside :func:`sigterm_raises` it raises
:class:`Terminated` in the main thread instead, and everything unwinds.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

__all__ = ["Terminated", "sigterm_raises"]


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM inside :func:`sigterm_raises`.

    A ``BaseException``, like ``KeyboardInterrupt``: a handler's ``except
    Exception`` does not swallow it.
    """


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in the main thread while inside.

    Does nothing outside the main thread (signals go to the main thread only)
    or where there is no SIGTERM; the previous handler is put back on exit.
    """

    def on_sigterm(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, previous)
