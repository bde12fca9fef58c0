"""The public facade: :class:`Bot`."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import warnings
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from .. import settings
from .._logging import forget_secrets, register_secrets
from ..ratelimit import SendLimiter, SendRate
from ..ratelimit import send_rate as read_send_rate
from ..regions import DEFAULT_REGION, resolve_url
from ..settings import check_id, check_secret, is_insecure_remote, seconds
from .connection import Connection, State
from .counters import Counters
from .delivery import Delivery
from .handler import Runners
from .inbox import OVERFLOW_POLICIES, Inbox
from .options import check_ca_certs, optional_seconds
from .outgoing import Outgoing
from .reading import Reading
from .status import Status

__all__ = ["Bot", "DuplicateBotWarning"]

log = logging.getLogger("watchers_bot")

#: A token, or a function returning the current token (called on every connect).
TokenSource = Union[str, Callable[[], str]]

_open_bots: "weakref.WeakSet[Bot]" = weakref.WeakSet()

# How long close() waits for handlers in flight.
_CLOSE_HANDLER_WAIT = 5.0


@atexit.register
def _close_open_bots() -> None:
    # A bot left open in a notebook or script is closed cleanly at exit, so
    # the server sees a proper disconnect instead of a dead socket.
    for bot in list(_open_bots):
        with contextlib.suppress(Exception):
            bot.close()


def _abandon_inherited_bots() -> None:
    # In a child of fork() (gunicorn --preload, multiprocessing), a bot made by
    # the parent shares the parent's socket and has none of its threads.
    # Closing it would send a close frame on the parent's connection, so it is
    # abandoned instead: no I/O, out of the exit hook and the duplicate check,
    # and every call says to make a new bot in this process.
    for bot in list(_open_bots):
        bot._close_lock = threading.Lock()  # may have been held by a thread that is gone
        bot._closed = True
        bot._torn_down = True
        bot._inherited = True
        _open_bots.discard(bot)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_abandon_inherited_bots)


class DuplicateBotWarning(RuntimeWarning):
    """Another open bot in this process uses the same endpoint, credentials and
    ``bot_id``: each message would be delivered to both (typically a notebook
    cell run twice).  Bots with different ``bot_id`` are two bots on purpose."""


class Bot(Status, Outgoing, Reading):
    """A Watchers.io bot: blocking calls over a background Socket.IO connection.

    ::

        with Bot(token, api_key, bot_id) as bot:
            bot.listen("room-1")
            for msg in bot.messages():
                bot.reply(msg, "echo: " + msg.text)

    Constructing a bot does not touch the network: ``connect()``, ``listen()``
    and ``send()`` connect on first use.  The bot reconnects on its own after
    any loss of the link and listens again to every room in :attr:`rooms`.

    :param token: the bearer token from the admin panel, or a function that
        returns the current token (called on every connect and reconnect).
    :param api_key: the project's API key, sent with every request.
    :param bot_id: the bot's user id, the sender of ``send()``; also used to
        skip the bot's own messages.
    :param region: ``eu`` (default), ``us``, ``sa``, ``hk`` or ``za``.
    :param url: an explicit endpoint (``ws``, ``wss``, ``http``, ``https``);
        overrides ``region``.
    :param connect_timeout: seconds to establish a connection, and the longest
        a call waits for a reconnection in progress.
    :param ack_timeout: default seconds ``send()`` and ``listen()`` wait for the
        server's acknowledgement.
    :param reconnect: reconnect after a lost link (default).  With ``False``
        the bot fails for good at the first loss.
    :param reconnect_delay: first backoff step in seconds; doubles per attempt,
        with jitter.
    :param reconnect_delay_max: cap of the backoff step.
    :param reconnect_attempts: give up after this many failed attempts in a
        row (``None``: never give up; a refused token always stops at once).
    :param max_queue: inbox size; ``0`` or ``None`` for unbounded.  A full inbox
        drops messages (counted in :attr:`stats`, logged as a warning).
    :param overflow: ``"drop_oldest"`` (default) or ``"drop_newest"``.
    :param include_own: also deliver messages whose sender is ``bot_id``.
    :param verify_ssl: verify TLS certificates (default).
    :param ca_certs: path to a CA bundle to verify the server with; checked
        (exists, readable) here, a ``ValueError`` names the path otherwise.
    :param allow_insecure: allow an unencrypted ``ws://``/``http://`` URL to a
        host other than the loopback (refused by default: the token would
        travel in clear).
    :param on_state_change: called as ``fn(old, new)`` on every change of
        :attr:`state`, on a thread of the bot's own (see :meth:`on_state_change`).
    :param send_rate: a client-side limit on ``send()``: a number (sends per second
        over all rooms) or a :class:`~watchers_bot.SendRate` (``total``, ``per_room``,
        ``burst``).  A send waits for its turn within its timeout.
    """

    def __init__(
        self,
        token: TokenSource,
        api_key: str,
        bot_id: Optional[str] = None,
        *,
        region: str = DEFAULT_REGION,
        url: Optional[str] = None,
        connect_timeout: float = 10.0,
        ack_timeout: float = 10.0,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 30.0,
        reconnect_attempts: Optional[int] = None,
        max_queue: Optional[int] = 10_000,
        overflow: str = "drop_oldest",
        include_own: bool = False,
        verify_ssl: bool = True,
        ca_certs: Optional[str] = None,
        allow_insecure: bool = False,
        on_state_change: Optional[Callable[[str, str], object]] = None,
        send_rate: Union[float, SendRate, None] = None,
    ) -> None:
        token = check_secret(token, "token", allow_callable=True)
        self._api_key: str = check_secret(api_key, "api_key")
        self._bot_id = None if bot_id is None else check_id(bot_id, "bot_id")
        self._url = resolve_url(region, url)
        if not allow_insecure and is_insecure_remote(self._url):
            raise ValueError(
                f"url {self._url!r} is unencrypted and not on this machine: the token would "
                "travel in clear; use wss:// (or pass allow_insecure=True)"
            )
        if ca_certs is not None:
            check_ca_certs(ca_certs)
        if on_state_change is not None and not callable(on_state_change):
            raise TypeError("on_state_change must be callable")
        self._connect_timeout = seconds(connect_timeout, "connect_timeout")
        self._ack_timeout = seconds(ack_timeout, "ack_timeout")
        seconds(reconnect_delay, "reconnect_delay")
        seconds(reconnect_delay_max, "reconnect_delay_max")
        if reconnect_attempts is not None and (
            isinstance(reconnect_attempts, bool) or not isinstance(reconnect_attempts, int)
        ):
            raise TypeError("reconnect_attempts must be an int or None")
        if reconnect_attempts is not None and reconnect_attempts < 1:
            raise ValueError("reconnect_attempts must be at least 1 (or None for no limit)")
        if max_queue is None:
            max_queue = 0
        if isinstance(max_queue, bool) or not isinstance(max_queue, int):
            raise TypeError(f"max_queue must be an int or None, not {type(max_queue).__name__}")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0 (0 or None: unbounded)")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}")

        self._token = token
        self._current_token: Optional[str] = None
        self._secrets: List[str] = [self._api_key] + ([token] if isinstance(token, str) else [])
        register_secrets(self._secrets)

        self._inbox = Inbox(max_queue, overflow)
        self._counters = Counters()
        delivery = Delivery(self._inbox, self._counters, bot_id=self._bot_id,
                            include_own=bool(include_own))
        self._close_lock = threading.Lock()
        self._closed = False
        self._torn_down = False
        self._tearing_down = False
        self._inherited = False
        self._conn = Connection(
            self._url,
            self._auth,
            api_key=self._api_key,
            connect_timeout=self._connect_timeout,
            reconnect=bool(reconnect),
            reconnect_delay=float(reconnect_delay),
            reconnect_delay_max=float(reconnect_delay_max),
            reconnect_attempts=reconnect_attempts,
            on_message=delivery.on_message,
            on_fatal=self._inbox.fail,
            counters=self._counters,
            ssl_verify=bool(verify_ssl),
            ca_certs=None if ca_certs is None else os.fspath(ca_certs),
        )
        self._duplicate_checked = False
        self._warned_no_rooms = False
        self._runners = Runners()
        rate = read_send_rate(send_rate)
        self._limiter = None if rate is None else SendLimiter(rate)
        if on_state_change is not None:
            self._conn.add_state_listener(on_state_change)
        _open_bots.add(self)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Bot":
        """A bot configured from ``WATCHERS_*`` environment variables.

        Reads ``WATCHERS_TOKEN`` and ``WATCHERS_API_KEY`` (required),
        ``WATCHERS_BOT_ID``, ``WATCHERS_REGION`` and ``WATCHERS_URL``.  Keyword
        arguments override them and are passed on to :class:`Bot`.  A missing
        required variable raises :class:`ConfigError` naming it.
        """
        # ``token=None`` (say, an unset CLI option) means "not given": the variable counts.
        named = {s.argument for s in settings.BOT_SETTINGS}
        given = {k: v for k, v in overrides.items() if v is not None or k not in named}
        kwargs = settings.bot_arguments(
            [settings.env_layer(environ)],
            lambda s: f"export it (or pass {s.argument}=) to configure the bot",
            need=[s for s in settings.REQUIRED if s.argument not in given],
        )
        kwargs.update(given)
        token = kwargs.pop("token")
        api_key = kwargs.pop("api_key")
        bot_id = kwargs.pop("bot_id", None)
        return cls(token, api_key, bot_id, **kwargs)

    # ------------------------------------------------------------------ connection

    def connect(self, timeout: Optional[float] = None) -> "Bot":
        """Connect now (idempotent) and return the bot.

        Raises :class:`AuthError` if the token is refused, :class:`ConnectFailed`
        if no connection could be made within ``timeout`` (default
        ``connect_timeout``).
        """
        self._check_open()
        timeout = optional_seconds(timeout, "timeout")
        self._before_network()
        self._conn.connect(timeout)
        return self

    def _before_network(self) -> None:
        if self._conn.state is State.IDLE and not self._duplicate_checked:
            self._duplicate_checked = True
            self._warn_if_duplicate()

    def _warn_if_duplicate(self) -> None:
        for other in list(_open_bots):
            if (
                other is not self
                and not other._closed
                and other._conn.state is not State.IDLE
                and other._url == self._url
                and other._api_key == self._api_key
                and other._token == self._token
                and other._bot_id == self._bot_id
            ):
                warnings.warn(
                    f"another open Bot in this process is connected to {self._url} with the "
                    f"same credentials ({other!r}); both receive every message. Close the "
                    "old one (bot.close()) or reuse it.",
                    DuplicateBotWarning,
                    stacklevel=4,  # the user's call that connects
                )
                return

    def close(self) -> None:
        """Close the bot: end every ``messages()`` iterator, fail waiting calls,
        disconnect and join the bot's threads.  Idempotent."""
        # "Closed" (no new calls) is set first; the teardown is marked done only
        # at its end, so a close() interrupted by Ctrl-C can be finished by the
        # next close() or the exit hook instead of leaving a live socket behind.
        with self._close_lock:
            if self._torn_down or self._tearing_down:
                return
            self._closed = True
            self._tearing_down = True
        try:
            unread = self._inbox.close()
            if unread:
                log.warning("closed with %d unread message(s) in the inbox; counted as dropped",
                            unread)
            self._runners.stop_all(_CLOSE_HANDLER_WAIT)
            self._conn.close()
            forget_secrets(self._secrets)
            if self._current_token is not None and self._current_token not in self._secrets:
                forget_secrets([self._current_token])
            _open_bots.discard(self)
            self._torn_down = True
        finally:
            self._tearing_down = False

    def __enter__(self) -> "Bot":
        self._check_open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _auth(self) -> Dict[str, str]:
        # Called by python-socketio on every connection attempt: the hook for
        # token refresh when ``token`` is a callable.
        token = self._token
        if callable(token):
            fresh = token()
            if not isinstance(fresh, str):
                raise TypeError(
                    f"the token callable must return a str, not {type(fresh).__name__}")
            if not fresh.strip():
                raise ValueError("the token callable returned an empty str")
            if fresh != self._current_token:
                register_secrets([fresh])
                if self._current_token is not None:
                    forget_secrets([self._current_token])
                self._current_token = fresh
            token = fresh
        return {"bearer": token}
