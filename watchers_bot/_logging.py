"""Loggers, and the filter that keeps secrets out of every log line.

python-socketio and python-engineio log whole packets at INFO, and the
CONNECT packet carries the bearer token while every request carries the API
key.  The bot hands them loggers of its own with a redacting filter, and puts
the same filter on websocket-client's logger, so that DEBUG logging is safe.

No handler is installed on the ``watchers_bot`` logger (not even a
NullHandler): while the application configures no logging at all, Python's
``logging.lastResort`` prints WARNING and above to stderr, so that an error
in user code run on the bot's threads is seen, as ``threading.excepthook``
shows a thread that died.  Routine events log at INFO or DEBUG.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable

__all__ = ["ENGINEIO_LOG", "LOG", "SOCKETIO_LOG", "forget_secrets", "redact", "register_secrets"]

LOG = logging.getLogger("watchers_bot")

_KEYS = r"(?:bearer|apiKey|api_key|apikey|token|authorization|password|secret)"
# JSON ("apiKey":"x") and Python repr ('apiKey': 'x') forms.
_VALUE = r"""(?P<v>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
_PAIR = re.compile(
    r"""(?P<k>(?P<q>["'])""" + _KEYS + r"""(?P=q)\s*:\s*)""" + _VALUE, re.IGNORECASE
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")

_lock = threading.Lock()
_secrets: "Counter[str]" = Counter()
_pattern: "re.Pattern[str] | None" = None


# Shorter values would mask ordinary words everywhere; the key-value patterns
# above still mask them where they appear in packets.
_MIN_SECRET_LENGTH = 4


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that any log line containing them is masked."""
    global _pattern
    with _lock:
        _secrets.update(v for v in values if len(v) >= _MIN_SECRET_LENGTH)
        _pattern = _compile()


def forget_secrets(values: Iterable[str]) -> None:
    """Undo one :func:`register_secrets` of these values."""
    global _pattern
    with _lock:
        _secrets.subtract(v for v in values if len(v) >= _MIN_SECRET_LENGTH)
        for v in [v for v, n in _secrets.items() if n <= 0]:
            del _secrets[v]
        _pattern = _compile()


def _compile() -> "re.Pattern[str] | None":
    if not _secrets:
        return None
    # Longest first so that a secret containing another is masked whole.
    alternatives = sorted(_secrets, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in alternatives))


def redact(text: str) -> str:
    """``text`` with every known secret and every secret-looking pair masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub("***", text)
    text = _PAIR.sub(lambda m: m.group("k") + m.group("q") + "***" + m.group("q"), text)
    return _BEARER.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is still worth showing, masked
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        return True


if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:  # not subscriptable at run time before Python 3.11
    _Adapter = logging.LoggerAdapter


class _DemotingLogger(_Adapter):
    """The logger handed to python-socketio and python-engineio.

    They warn on every closed link, even a normal close, and on an ack that
    comes after its link was given up (the bot has already failed that
    request with ConnectionLost).  The bot reports lost links itself, once,
    with what it does next, so their warnings are logged as INFO.  The level
    is decided here, before the logger checks it: a filter would relabel the
    record only after it had passed a WARNING level check."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level == logging.WARNING:
            level = logging.INFO
        super().log(level, msg, *args, **kwargs)


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)

_FILTER = RedactingFilter()
for _name in ("watchers_bot", "watchers_bot.socketio", "watchers_bot.engineio", "websocket"):
    logging.getLogger(_name).addFilter(_FILTER)
SOCKETIO_LOG = _DemotingLogger(logging.getLogger("watchers_bot.socketio"), {})
ENGINEIO_LOG = _DemotingLogger(logging.getLogger("watchers_bot.engineio"), {})
