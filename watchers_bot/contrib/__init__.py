"""Integrations with web frameworks: :mod:`watchers_bot.contrib.flask` and
:mod:`watchers_bot.contrib.django`.

Each submodule imports its framework; importing :mod:`watchers_bot` or this
package imports neither.  The helpers here are framework-neutral.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from ..errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    ServerError,
    WatchersError,
)
from ..settings import parse_rooms

__all__ = ["error_status", "parse_rooms"]


def error_status(exc: BaseException) -> Tuple[int, Dict[str, Any]]:
    """An HTTP status and a JSON-ready body for an error raised by ``send()``.

    =================================================  ======================================
    ``ServerError``                                    502: the server refused the message
    ``AckTimeout``, ``ConnectionLost``, ``BotClosed``  504: delivery unknown (it may be posted)
    ``ConnectFailed``                                  503: nothing was sent
    ``AuthError``                                      503: the token was refused
    ``ConfigError``                                    500: the bot is misconfigured
    ``TypeError``/``ValueError`` (argument checks)     400
    =================================================  ======================================

    The body is ``{"ok": False, "error": <type>, "detail": <text>}``, plus
    ``"delivery": "unknown"`` or ``"not sent"`` where that is known; the text
    never contains a secret.  Other exceptions are re-raised.
    """
    body: Dict[str, Any] = {"ok": False, "error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, ServerError):
        body.update(code=exc.code, delivery="refused")
        return 502, body
    if isinstance(exc, (AckTimeout, ConnectionLost, BotClosed)):
        body["delivery"] = "unknown"
        return 504, body
    if isinstance(exc, (ConnectFailed, AuthError)):
        body["delivery"] = "not sent"
        return 503, body
    if isinstance(exc, ConfigError):
        body["delivery"] = "not sent"
        return 500, body
    if isinstance(exc, WatchersError):
        return 500, body
    if isinstance(exc, (TypeError, ValueError)):
        body["delivery"] = "not sent"
        return 400, body
    raise exc
