"""The CLI's terminal: status lines, logging to stderr, secret masking, stdin and stdout."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import unicodedata
from typing import Iterator, List, Optional, Tuple

from .._logging import RedactingFilter, redact
from .parser import PROG

__all__ = [
    "Secrets", "logging_to_stderr", "one_line", "printable", "read_text", "silence_stdout",
    "status",
]


class Secrets:
    """Values that must never reach the terminal.

    :meth:`mask` is the CLI's one masking function: every error line, doctor
    line and ``-vv`` traceback goes through it.
    """

    def __init__(self) -> None:
        self.values: List[str] = []

    # Shorter values would mask ordinary letters everywhere (as in the library's log filter).
    MIN_LENGTH = 4

    def add(self, *values: Optional[str]) -> None:
        """Mask ``values`` (and their stripped forms) from now on; short ones are ignored."""
        for value in values:
            if value and len(value.strip()) >= self.MIN_LENGTH:
                self.values.append(value.strip())
                if value != value.strip():
                    self.values.append(value)

    def mask(self, text: str) -> str:
        """``text`` with every known secret, and anything secret-looking, as ``***``."""
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return redact(text)


def one_line(text: str) -> str:
    """``text`` on one line: any run of whitespace, newlines included, as one space."""
    return " ".join(text.split())


def status(args: argparse.Namespace, text: str) -> None:
    """A status line on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def logging_to_stderr(verbosity: int, quiet: bool) -> Iterator[None]:
    """Send the library's log records to stderr for the duration of a command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if verbosity >= 2:
        level = logging.DEBUG
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
        ))
    elif verbosity == 1:
        level = logging.INFO
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    else:
        level = logging.ERROR if quiet else logging.WARNING
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    # python-socketio/engineio log every packet at INFO (and their warnings, such
    # as "WebSocket connection was closed" on a normal close(), as INFO too):
    # show them only at -vv; the library's own records (lost links, reconnects)
    # tell what matters.
    wire_level = logging.DEBUG if verbosity >= 2 else logging.ERROR
    loggers: List[Tuple[logging.Logger, int]] = [
        (logging.getLogger("watchers_bot"), level),
        (logging.getLogger("watchers_bot.socketio"), wire_level),
        (logging.getLogger("watchers_bot.engineio"), wire_level),
        (logging.getLogger("websocket"), wire_level),
    ]
    saved = [(lg, lg.level, lg.propagate) for lg, _ in loggers]
    for lg, lvl in loggers:
        lg.setLevel(lvl)
    root_logger, websocket_logger = loggers[0][0], loggers[3][0]
    root_logger.addHandler(handler)
    websocket_logger.addHandler(handler)
    websocket_logger.propagate = False
    try:
        yield
    finally:
        root_logger.removeHandler(handler)
        websocket_logger.removeHandler(handler)
        for lg, lvl, propagate in saved:
            lg.setLevel(lvl)
            lg.propagate = propagate


def printable(text: str) -> str:
    """``text`` with control characters (terminal escapes included) shown as ``\\xNN``."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def silence_stdout() -> None:
    """Point stdout at /dev/null: the reader went away, and the exit must not fail on it."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def read_text(text: str) -> str:
    """A TEXT argument; ``-`` reads it from stdin."""
    if text != "-":
        return text
    data = sys.stdin.read()
    # `echo hi | watchers-bot send room -`: the final line ending is not part of the message.
    if data.endswith("\r\n"):
        return data[:-2]
    if data.endswith("\n"):
        return data[:-1]
    return data
