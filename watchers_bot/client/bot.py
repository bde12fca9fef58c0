"""The public facade: :class:`Bot`."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from .. import protocol, settings
from .._logging import forget_secrets, register_secrets
from ..errors import BotClosed, ConfigError, RateLimited, ReceiveTimeout, ServerError
from ..models import Health, Message, Stats
from ..ratelimit import SendLimiter, SendRate
from ..ratelimit import send_rate as read_send_rate
from ..regions import DEFAULT_REGION, resolve_url
from ..settings import check_id, check_secret, is_insecure_remote, seconds
from .connection import Connection, State
from .counters import Counters
from .delivery import Delivery
from .handler import HandlerThread, Runners
from .inbox import CLOSED, OVERFLOW_POLICIES, Inbox
from .options import check_ca_certs, optional_seconds
from .requests import AckFuture

__all__ = ["Bot", "DuplicateBotWarning"]

log = logging.getLogger("watchers_bot")

#: A token, or a function returning the current token (called on every connect).
TokenSource = Union[str, Callable[[], str]]

_open_bots: "weakref.WeakSet[Bot]" = weakref.WeakSet()

# How often Bot.run looks up from waiting (Ctrl-C lands between two looks).
_RUN_POLL = 0.25
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


class Bot:
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

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The resolved endpoint."""
        return self._url

    @property
    def bot_id(self) -> Optional[str]:
        """The bot's user id (the sender of sends), if configured."""
        return self._bot_id

    @property
    def state(self) -> str:
        """``idle``, ``connecting``, ``connected``, ``reconnecting``, ``failed`` or ``closed``."""
        return State.CLOSED.value if self._inherited else self._conn.state.value

    @property
    def connected(self) -> bool:
        """Whether the bot is connected and listening to all its rooms right now."""
        return not self._inherited and self._conn.state is State.CONNECTED

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def rooms(self) -> Tuple[str, ...]:
        """Rooms the server acknowledged; listened to again after every reconnect."""
        return self._conn.rooms.listening

    @property
    def stats(self) -> Stats:
        """A snapshot of the bot's counters."""
        counters = self._counters
        backlog, pool_dropped = self._runners.counts()
        return Stats(
            received=counters.received,
            delivered=self._inbox.delivered,
            dropped=self._inbox.dropped + pool_dropped,
            skipped_own=counters.skipped_own,
            malformed=counters.malformed,
            sent=counters.sent,
            send_failures=counters.send_failures,
            reconnects=counters.reconnects,
            pending=len(self._conn.requests),
            queued=self._inbox.qsize(),
            backlog=backlog,
        )

    def __repr__(self) -> str:
        rooms = list(self.rooms)
        return (
            f"<Bot url={self._url!r} state={self.state!r} "
            f"bot_id={self._bot_id!r} rooms={rooms!r}>"
        )

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

    def _ack_wait(self, timeout: Any) -> float:
        return self._ack_timeout if timeout is None else seconds(timeout, "timeout")

    @staticmethod
    def _left(end: float) -> float:
        return max(end - time.monotonic(), 0.0)

    def _check_open(self) -> None:
        if self._closed:
            if self._inherited:
                raise BotClosed(
                    "this bot was created in a parent process before fork(); "
                    "create a new Bot in this process"
                )
            raise BotClosed("the bot is closed")

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

    # ------------------------------------------------------------------ listening

    def listen(self, *room_ids: str, timeout: Optional[float] = None) -> None:
        """Subscribe to rooms; block until the server acknowledges each one.

        Rooms are remembered in :attr:`rooms` and listened to again after every
        reconnect.  Raises :class:`ServerError` (the first refusal, after every
        room was answered), :class:`AckTimeout` or :class:`ConnectionLost`, and
        :class:`ConnectFailed` when no link came.  An explicit ``timeout`` is the
        deadline of the whole call, the wait for a (re)connection included;
        without one the link may take ``connect_timeout`` and each answer
        ``ack_timeout``.
        """
        self._check_open()
        if not room_ids:
            raise TypeError("listen() needs at least one room id")
        rooms = []
        for room in room_ids:
            if isinstance(room, (list, tuple, set, frozenset)):
                raise TypeError("room ids are passed one by one: use listen(*rooms)")
            rooms.append(check_id(room, "room_id"))
        wait = self._ack_wait(timeout)
        whole = timeout is not None
        end = time.monotonic() + wait
        self._before_network()
        futures = self._conn.listen(rooms, wait, whole=whole)
        first_error: Optional[BaseException] = None
        for room, future in futures:
            try:
                self._conn.wait(future, self._left(end) if whole else wait)
            except Exception as exc:
                if isinstance(exc, ServerError):
                    self._conn.rooms.refuse(room, exc)
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    # ------------------------------------------------------------------ receiving

    def receive(self, timeout: Optional[float] = None) -> Message:
        """The next message; waits up to ``timeout`` seconds (``None``: until one comes).

        Raises :class:`ReceiveTimeout` (a ``TimeoutError``) when none came,
        :class:`BotClosed` once closed, and the bot's fatal error
        (:class:`AuthError`, :class:`ConnectFailed`, :class:`ConnectionLost`)
        once it gave up and the inbox is empty.
        """
        self._check_open()
        timeout = optional_seconds(timeout, "timeout")
        if timeout is None:
            self._warn_if_waiting_for_nothing("receive")
        try:
            item = self._inbox.take(timeout)
        except queue.Empty:
            raise ReceiveTimeout(f"no message in {timeout:g}s") from None
        if item is CLOSED:
            raise BotClosed("the bot is closed")
        return item  # type: ignore[no-any-return]

    def messages(self, timeout: Optional[float] = None) -> Iterator[Message]:
        """Iterate messages in the order the server sent them.

        Ends when the bot is closed, or when no message came for ``timeout``
        seconds.  If the bot gives up for good it raises that error after
        yielding what was already queued.
        """
        self._check_open()
        timeout = optional_seconds(timeout, "timeout")
        if timeout is None:
            self._warn_if_waiting_for_nothing("messages")
        return self._iterate(timeout)

    def _warn_if_waiting_for_nothing(self, call: str) -> None:
        # A wait without a timeout on a bot that listens to nothing never ends
        # (until close()): say so once, instead of leaving the user staring.
        if self._warned_no_rooms or self._conn.rooms.wanted or self._inbox.qsize():
            return
        self._warned_no_rooms = True
        log.warning(
            "%s() without a timeout on a bot that listens to no room: it waits until a "
            "message comes, and none will; call bot.listen(room) first (or pass timeout=)",
            call,
        )

    def _iterate(self, timeout: Optional[float]) -> Iterator[Message]:
        take = self._inbox.take
        while True:
            try:
                item = take(timeout)
            except queue.Empty:
                return
            if item is CLOSED:
                return
            yield item

    # ------------------------------------------------------------------ sending

    def _send_payload(self, room_id: Any, text: Any) -> Dict[str, str]:
        self._check_open()
        room_id = check_id(room_id, "room_id")
        if self._bot_id is None:
            raise ConfigError(
                "bot_id is required to send: pass bot_id= (or set WATCHERS_BOT_ID) "
                "with the bot's id from the admin panel"
            )
        return protocol.check_send(room_id, self._api_key, self._bot_id, text)

    def send_async(self, room_id: str, text: str, *, timeout: Optional[float] = None) -> AckFuture:
        """Send without waiting; returns a future of the server's acknowledgement.

        Returns at once, always.  Arguments are checked here, before anything
        is sent.  With no link, the request waits for one inside the future
        (connecting in the background if nobody is) and goes out when it comes
        up.  The future fails with :class:`ConnectFailed` ("nothing was sent")
        if no link came in time, with :class:`AckTimeout` if the server did not
        answer in time.  An explicit ``timeout`` bounds the whole request, the
        wait for a link included; without one, the link may take
        ``connect_timeout`` and the answer ``ack_timeout`` after it.  Raises at
        once (not in the future) for bad arguments, a closed bot, or the error
        a bot that gave up for good failed with.
        """
        payload = self._send_payload(room_id, text)
        wait = self._ack_wait(timeout)
        self._before_network()
        return self._send_async_within_limits(room_id, payload, wait, whole=timeout is not None)

    def send(self, room_id: str, text: str, *, timeout: Optional[float] = None) -> Any:
        """Post ``text`` in a room as the bot; block until the server acknowledges it.

        Returns the server's answer (``None`` for the documented empty ack).
        Raises :class:`ServerError` if the server refused it; :class:`AckTimeout`
        or :class:`ConnectionLost` if the outcome is unknown; :class:`ConnectFailed`
        if it could not be sent at all.  An explicit ``timeout`` is the deadline
        of the whole call, the wait for a (re)connection included; without one
        the link may take ``connect_timeout`` and the answer ``ack_timeout``.
        With ``send_rate`` the call first waits for its turn, and a rate-limit
        refusal is retried after the server's hint; both within the deadline,
        else :class:`RateLimited` (not posted).
        """
        payload = self._send_payload(room_id, text)
        wait = self._ack_wait(timeout)
        whole = timeout is not None
        self._before_network()
        return self._send_within_limits(room_id, payload, wait, whole=whole)

    def reply(self, message: Message, text: str, *, timeout: Optional[float] = None) -> Any:
        """Send ``text`` in the room ``message`` came from."""
        if not isinstance(message, Message):
            raise TypeError(f"message must be a Message, not {type(message).__name__}")
        return self.send(message.room_id, text, timeout=timeout)

    # ------------------------------------------------------------------ integration

    def on_state_change(
        self, callback: Callable[[str, str], object]
    ) -> Callable[[str, str], object]:
        """Call ``callback(old, new)`` on every change of :attr:`state`.

        Runs on a thread of the bot's own, in order, never on the socket thread;
        an exception is logged.  Usable as a decorator.
        """
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._conn.add_state_listener(callback)
        return callback

    def health(self) -> Health:
        """A snapshot for a health check or a status line: state, times, counters."""
        conn = self._conn
        stats = self.stats
        error = conn.fatal or self._counters.last_error
        backlog, oldest_wait = self._runners.backlog()
        return Health(
            state=self.state,
            ok=conn.state is State.CONNECTED and conn.rooms.listening_to_all,
            url=self._url,
            rooms=self.rooms,
            last_message_at=self._counters.last_message_at,
            connected_since=conn.connected_at if conn.state is State.CONNECTED else None,
            state_since=conn.state_changed_at,
            reconnects=stats.reconnects,
            pending=stats.pending,
            queued=stats.queued,
            dropped=stats.dropped,
            last_error=None if error is None else f"{type(error).__name__}: {error}",
            refused=conn.rooms.refused,
            backlog=backlog,
            oldest_wait=oldest_wait,
        )

    # ------------------------------------------------------------------ handlers

    def run_in_thread(
        self,
        handler: Callable[..., Any],
        *,
        workers: int = 1,
        backlog: Optional[int] = None,
        slow_after: Optional[float] = 30.0,
        name: str = "watchers-bot-handler",
    ) -> HandlerThread:
        """Call ``handler`` for every message, on threads of their own; returns their handle.

        ``handler(msg)`` or ``handler(msg, ctx)`` (see :class:`~watchers_bot.Context`), or a
        :class:`~watchers_bot.Router`.  A returned string is sent as the reply in the
        message's room.  Messages of one room are handled one at a time in server order;
        different rooms at once on up to ``workers`` threads (``1``: one message at a time).

        :param backlog: how many messages may wait for a handler (default: the bot's
            ``max_queue``; ``0``: unbounded); beyond it the bot's ``overflow`` policy drops
            one, counted in :attr:`stats` ``.dropped`` and logged.
        :param slow_after: seconds after which a handler still running is reported once
            (WARNING, with its room and the stack where it is); ``None`` turns it off.

        A handler that raises is logged with its traceback and counted, never ends the
        loop; ``handle.stop()`` ends it, and so does closing the bot.  Use one consumer per
        bot: two would share the messages between them.
        """
        self._check_open()
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if backlog is None:
            backlog = self._inbox.maxsize
        if isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int or None, not {type(backlog).__name__}")
        if backlog < 0:
            raise ValueError("backlog must be >= 0 (0: unbounded)")
        slow = optional_seconds(slow_after, "slow_after")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        handle = HandlerThread(
            self, handler, name, self._inbox, workers=workers, backlog=backlog,
            overflow=self._inbox.overflow, slow_after=slow,
        )
        return self._runners.start(handle)

    def run(
        self,
        handler: Callable[..., Any],
        *,
        workers: int = 1,
        backlog: Optional[int] = None,
        slow_after: Optional[float] = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Handle every message until the bot is closed or Ctrl-C; blocks.

        Takes the arguments of :meth:`run_in_thread`.  Ctrl-C (or Jupyter's "interrupt
        kernel") stops it cleanly: no new message is started, running handlers get up to
        ``stop_timeout`` seconds to finish, messages not started go back to the inbox, and
        ``run`` returns.  ``close()`` from another thread ends it the same way.  If the bot
        gives up for good, ``run`` raises that error.
        """
        stop_timeout = seconds(stop_timeout, "stop_timeout")
        handle = self.run_in_thread(
            handler, workers=workers, backlog=backlog, slow_after=slow_after
        )
        try:
            while not self._runners.wait(handle, _RUN_POLL):
                pass
            handle.join(stop_timeout)
        except KeyboardInterrupt:
            log.info("interrupted: stopping the handlers (up to %gs)", stop_timeout)
            if not handle.stop(stop_timeout):
                log.warning("handlers still running %gs after the interrupt; left running",
                            stop_timeout)
            return
        if handle.error is not None:
            raise handle.error

    # ------------------------------------------------------------------ send rate limits

    def _send_within_limits(
        self, room_id: str, payload: Dict[str, str], wait: float, *, whole: bool
    ) -> Any:
        # The whole of it (turn in the limiter, retries after refusals) fits in ``wait``;
        # a rate-limit refusal is sent again by the request table (retry=True).
        start = time.monotonic()
        deadline = start + wait
        limiter = self._limiter
        if limiter is not None:
            pause = limiter.reserve(room_id, deadline)
            if pause is None:
                raise self._no_turn(limiter, room_id, wait)
            if pause > 0:
                time.sleep(pause)
                self._check_open()
        remaining = deadline - time.monotonic()
        # A whole-call deadline is given as the caller's timeout from the call's
        # start (so errors name the timeout the caller gave, not what is left of it).
        future = self._conn.request(
            protocol.EVENT_SEND, payload, protocol.read_send_ack,
            wait if whole else max(remaining, 1e-3), whole=whole,
            start=start if whole else None, retry=True,
        )
        # An explicit timeout bounds the whole call; otherwise the link wait
        # (connect_timeout) comes before the answer's own wait.
        left = deadline - time.monotonic() if whole else remaining
        return self._conn.wait(future, max(left, 1e-3))

    def _send_async_within_limits(
        self, room_id: str, payload: Dict[str, str], wait: float, *, whole: bool
    ) -> AckFuture:
        # As _send_within_limits, without blocking: a turn later in the limiter waits
        # in the request table (not_before), not in the caller.
        now = time.monotonic()
        limiter = self._limiter
        pause = 0.0
        if limiter is not None:
            turn = limiter.reserve(room_id, now + wait)
            if turn is None:
                return self._conn.requests.refused(
                    protocol.EVENT_SEND, self._no_turn(limiter, room_id, wait))
            pause = turn
        return self._conn.request_async(
            protocol.EVENT_SEND, payload, protocol.read_send_ack, wait, whole=whole,
            retry=True, not_before=now + pause if pause > 0 else 0.0)

    @staticmethod
    def _no_turn(limiter: SendLimiter, room_id: str, wait: float) -> RateLimited:
        return RateLimited(
            f"not posted: the client-side send_rate ({limiter.rate}) leaves no "
            f"turn in room {room_id!r} within the {wait:g}s timeout",
            event=protocol.EVENT_SEND,
        )
