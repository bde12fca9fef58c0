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
from typing import TYPE_CHECKING, Any

from ._redact import forget_secrets, redact, register_secrets

__all__ = [
    "ENGINEIO_LOG", "LOG", "SOCKETIO_LOG", "RedactingFilter", "forget_secrets", "redact",
    "register_secrets",
]

LOG = logging.getLogger("watchers_bot")


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked (never drops a record).

    What is masked is :func:`watchers_bot._redact.redact`'s business."""

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


_FILTER = RedactingFilter()
for _name in ("watchers_bot", "watchers_bot.socketio", "watchers_bot.engineio", "websocket"):
    logging.getLogger(_name).addFilter(_FILTER)
SOCKETIO_LOG = _DemotingLogger(logging.getLogger("watchers_bot.socketio"), {})
ENGINEIO_LOG = _DemotingLogger(logging.getLogger("watchers_bot.engineio"), {})
