"""Loggers, and the filter that keeps secrets out of every log line.

python-socketio and python-engineio log whole packets at INFO, and the
CONNECT packet carries the bearer token while every request carries the API
key.  The bot hands them loggers of its own with a redacting filter, and puts
the same filter on websocket-client's logger, so that DEBUG logging is safe.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from typing import Iterable

__all__ = ["ENGINEIO_LOG", "LOG", "SOCKETIO_LOG", "forget_secrets", "redact", "register_secrets"]

LOG = logging.getLogger("watchers_bot")
LOG.addHandler(logging.NullHandler())
SOCKETIO_LOG = logging.getLogger("watchers_bot.socketio")
ENGINEIO_LOG = logging.getLogger("watchers_bot.engineio")

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


class _DemoteWarnings(logging.Filter):
    """python-engineio warns on every closed link, even a normal close, and
    python-socketio on an ack that comes after its link was given up (the bot
    has already failed that request with ConnectionLost).  The bot reports
    lost links itself, once, with what it does next; these pass on as INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING:
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)

_FILTER = RedactingFilter()
for _logger in (LOG, SOCKETIO_LOG, ENGINEIO_LOG, logging.getLogger("websocket")):
    _logger.addFilter(_FILTER)
ENGINEIO_LOG.addFilter(_DemoteWarnings())
SOCKETIO_LOG.addFilter(_DemoteWarnings())
