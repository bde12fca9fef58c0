"""The exception tree.

Every error the library raises on purpose derives from :class:`WatchersError`,
except argument checks, which raise plain :class:`TypeError`/:class:`ValueError`
before anything goes on the wire.  No error text ever contains a token or an
API key.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "AckTimeout",
    "AuthError",
    "BotClosed",
    "ConfigError",
    "ConnectFailed",
    "ConnectionLost",
    "RateLimited",
    "ReceiveTimeout",
    "ServerError",
    "WatchersError",
]


class WatchersError(Exception):
    """Base class of every error raised by watchers_bot."""


class AuthError(WatchersError):
    """The server refused the bearer token.

    ``reason`` is what the server said (never the token).  The bot does not
    retry a refused token: it stops, and ``messages()`` raises this error.
    """

    def __init__(self, reason: str = "token refused", raw: Any = None) -> None:
        self.reason = reason
        self.raw = raw
        super().__init__(f"the server refused the bearer token: {reason}")


class ServerError(WatchersError):
    """The server answered a request with an error.

    ``code`` is the status code when the server gave one, ``message`` its text,
    ``event`` the request (``"external/send"``, ``"external/listen"``) and
    ``raw`` the answer as received, with any API key masked.
    """

    def __init__(
        self,
        message: str,
        *,
        code: Optional[Any] = None,
        event: Optional[str] = None,
        raw: Any = None,
    ) -> None:
        self.message = message
        self.code = code
        self.event = event
        self.raw = raw
        where = f"{event}: " if event else ""
        status = f" (code {code})" if code is not None else ""
        super().__init__(f"{where}server error{status}: {message}")


class RateLimited(ServerError):
    """The server refused a request for its rate limit: the message was **not posted**.

    ``retry_after`` is the server's hint in seconds, if it gave one.  ``Bot.send`` waits and
    retries within the call's deadline; this is raised when the deadline ran out first.
    """

    def __init__(self, message: str, *, retry_after: Optional[float] = None,
                 note: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if note:  # what the client did about it; ``message`` stays the server's text
            self.args = (f"{note}: {self.args[0]}",)


class AckTimeout(WatchersError, TimeoutError):
    """No acknowledgement came in time.

    The request went on the wire, so the server may or may not have acted on
    it: for a send, the message may or may not have been posted.
    """


class ConnectionLost(WatchersError, ConnectionError):
    """The link dropped while a request was waiting for its acknowledgement.

    The request went on the wire, so its outcome is unknown: for a send, the
    message may or may not have been posted.
    """


class ConnectFailed(WatchersError, ConnectionError):
    """No connection could be established (in time).

    Raised by ``connect()``, and by ``listen()``/``send()`` when they had to
    wait for a connection that did not come.  Nothing was sent.  Also raised
    by ``messages()`` when the bot gave up reconnecting.  ``retryable`` is
    false for failures that would repeat on every attempt (a certificate that
    does not verify).
    """

    def __init__(self, message: str = "", *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ReceiveTimeout(WatchersError, TimeoutError):
    """``receive()`` waited its whole timeout and no message came."""


class BotClosed(WatchersError):
    """The bot was closed.

    Raised by calls made after ``close()``, and by sends or listens that were
    still waiting for their acknowledgement when the bot was closed (their
    outcome is then unknown).
    """


class ConfigError(WatchersError, ValueError):
    """The bot's configuration is incomplete: a missing environment variable,
    or a send without ``bot_id``.  The text names what is missing."""
