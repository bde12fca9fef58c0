"""The link to the server: connect, reconnect, re-listen, and requests as futures.

This is the only module that drives socketio.  Its threads (python-engineio's
read thread, and the bot's own supervisor) only parse, enqueue and resolve
futures: they never run user code and never block on a user.

Design notes, answering what python-socketio does underneath:

* A fresh ``socketio.Client`` per connection attempt, with python-socketio's
  own reconnection off.  The supervisor thread reconnects after *any* loss of
  the link (transport error, server-side disconnect, restart), with capped,
  jittered exponential backoff, and listens again to every room before the
  bot counts as connected.  A refused token stops it (no retry storm).
* Pending requests are ours, not python-socketio's: when a link drops they
  fail at once with :class:`ConnectionLost` (python-socketio would silently
  discard the callbacks and let ``call()`` wait out its timeout).
* A NestJS-style ``exception`` event fails the matching pending request.
* ``handle_sigint=False`` always: no process-wide SIGINT handler.
* Loggers handed to socketio/engineio mask secrets (see ``_logging``).
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import queue
import random
import ssl
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import socketio

from . import protocol
from ._logging import ENGINEIO_LOG, SOCKETIO_LOG
from ._transport import SocketIOClient
from .errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    ServerError,
    WatchersError,
)

__all__ = ["AckFuture", "Connection", "State"]

log = logging.getLogger("watchers_bot")

# How long close() waits for each of the bot's threads to end.
_JOIN_TIMEOUT = 5.0
# The longest a waiting thread sleeps before looking again (keeps waits
# interruptible and bounds the effect of any missed wake-up).
_WAIT_SLICE = 0.5


class State(str, enum.Enum):
    """Where a bot's connection stands."""

    #: Not connected yet (constructed, or the first connect failed).
    IDLE = "idle"
    #: A caller is establishing the first connection.
    CONNECTING = "connecting"
    #: Connected, and listening to every room in ``bot.rooms``.
    CONNECTED = "connected"
    #: The link was lost; the bot is reconnecting on its own.
    RECONNECTING = "reconnecting"
    #: The bot gave up for good (token refused, reconnection exhausted or off).
    FAILED = "failed"
    #: ``close()`` was called.
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


class _CallbackRunner:
    """Runs user callbacks of futures on a thread of the bot's own, in order."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[Optional[Tuple[Callable[[Any], Any], Any]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> bool:
        with self._lock:
            if self._stopped:
                return False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="watchers-bot-callbacks", daemon=True
                )
                self._thread.start()
            self._queue.put((fn, arg))
            return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, arg = item
            try:
                fn(arg)
            except Exception:
                log.exception("a callback raised (future done-callback or state listener)")

    def stop(self, timeout: float) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            if thread is not threading.current_thread():
                thread.join(timeout)


def _call_listener(args: Tuple[Callable[[str, str], Any], str, str]) -> None:
    listener, old, new = args
    listener(old, new)


class AckFuture(Future):  # type: ignore[type-arg]
    """The future of a send or listen, resolved when the server acknowledges it.

    ``result()`` returns the server's answer or raises :class:`ServerError`,
    :class:`AckTimeout`, :class:`ConnectionLost` or :class:`BotClosed`.
    Callbacks given to :meth:`add_done_callback` run on a thread of the bot's
    own, never on the socket thread, so they may block or call the bot.
    """

    def __init__(self, runner: Optional[_CallbackRunner] = None) -> None:
        super().__init__()
        self._runner = runner

    def add_done_callback(self, fn: Callable[["Future[Any]"], object]) -> None:
        runner = self._runner
        if runner is None:
            super().add_done_callback(fn)
            return

        def hop(future: Any) -> None:
            if not runner.submit(fn, future):
                try:  # the bot is closed: run it here, in whoever resolved the future
                    fn(future)
                except Exception:
                    log.exception("a done-callback of a send or listen future raised")

        super().add_done_callback(hop)


class _Link:
    """One socketio.Client and what we learned about it."""

    __slots__ = ("alive", "client", "number", "refusal")

    def __init__(self, client: SocketIOClient, number: int) -> None:
        self.client = client
        self.number = number
        self.alive = True
        self.refusal: Optional[Tuple[Any, ...]] = None


class _Request:
    """A request on the wire (``link`` set), or waiting for a link (``link`` None)."""

    __slots__ = ("budget", "deadline", "event", "future", "id", "link", "on_success",
                 "payload", "reader", "timeout", "whole")

    def __init__(
        self,
        req_id: int,
        link: Optional[_Link],
        event: str,
        payload: Mapping[str, Any],
        reader: Callable[[Tuple[Any, ...]], Any],
        future: AckFuture,
        deadline: float,
        on_success: Optional[Callable[[], None]],
        *,
        timeout: float = 0.0,
        budget: float = 0.0,
        whole: bool = False,
    ) -> None:
        self.id = req_id
        self.link = link
        self.event = event
        self.payload = payload
        self.reader = reader
        self.future = future
        # On the wire: when the ack is overdue.  Waiting: when to stop waiting for a link.
        self.deadline = deadline
        self.on_success = on_success
        self.timeout = timeout  # the ack wait, once on the wire (unless ``whole``)
        self.budget = budget  # the seconds this deadline allows (for error messages)
        self.whole = whole  # the deadline bounds the whole request, link wait included


def _root_cause(exc: BaseException) -> BaseException:
    # python-socketio and python-engineio re-raise a bare "Connection error";
    # the real reason (refused, DNS, TLS) is further down the chain.
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _settle(future: Future, *, result: Any = None, error: Optional[BaseException] = None) -> None:  # type: ignore[type-arg]
    # A future may already be settled by a racing path (ack vs. disconnect vs.
    # expiry); the first one wins and the others are no-ops.
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except Exception:  # InvalidStateError: settled already
        pass


class Connection:
    """Owns the link to one server for one bot."""

    def __init__(
        self,
        url: str,
        auth: Callable[[], Dict[str, Any]],
        *,
        api_key: str,
        connect_timeout: float,
        reconnect: bool,
        reconnect_delay: float,
        reconnect_delay_max: float,
        reconnect_attempts: Optional[int],
        on_message: Callable[[Tuple[Any, ...]], None],
        on_fatal: Callable[[BaseException], None],
        ssl_verify: bool = True,
        ca_certs: Optional[str] = None,
        socketio_path: str = "socket.io",
    ) -> None:
        self.url = url
        self._auth = auth
        self._api_key = api_key
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.reconnect_attempts = reconnect_attempts
        self._on_message = on_message
        self._on_fatal = on_fatal
        self._ssl_verify = ssl_verify
        self._ca_certs = ca_certs
        self._socketio_path = socketio_path

        self._cond = threading.Condition()  # guards state, link, pending, rooms
        self._state = State.IDLE
        self._link: Optional[_Link] = None
        self._links = itertools.count(1)
        self._pending: Dict[int, _Request] = {}
        # Requests made with no link (send_async): flushed when a link comes
        # up, failed by the expiry path or when connecting fails for good.
        self._waiting: Dict[int, _Request] = {}
        self._request_ids = itertools.count(1)
        self._rooms: Dict[str, None] = {}
        self._wanted: Dict[str, None] = {}  # every room the user asked to listen to
        self._refused: Dict[str, str] = {}  # room -> why the server refused it
        self._fatal: Optional[BaseException] = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._need_reconnect = False
        self._next_expiry = float("inf")
        self._supervisor: Optional[threading.Thread] = None
        self._reconnector: Optional[threading.Thread] = None
        self._connector: Optional[threading.Thread] = None
        self._torn_down = False
        self.callbacks = _CallbackRunner()
        self._state_listeners: List[Callable[[str, str], Any]] = []
        self.state_changed_at = time.time()
        self.connected_at: Optional[float] = None

        self.reconnects = 0
        self.acked: Dict[str, int] = {protocol.EVENT_SEND: 0, protocol.EVENT_LISTEN: 0}
        self.failed: Dict[str, int] = {protocol.EVENT_SEND: 0, protocol.EVENT_LISTEN: 0}
        self.unmatched_exceptions = 0
        self.last_error: Optional[BaseException] = None

    # ------------------------------------------------------------------ state

    def _set_state(self, new: State) -> None:
        """Change state; the caller holds ``_cond``.  Listeners hear of it on the
        callback thread, in order, never on a socket thread."""
        old = self._state
        if new is old:
            return
        self._state = new
        self.state_changed_at = time.time()
        if new is State.CONNECTED:
            self.connected_at = self.state_changed_at
        for listener in self._state_listeners:
            self.callbacks.submit(_call_listener, (listener, old.value, new.value))

    def add_state_listener(self, listener: Callable[[str, str], Any]) -> None:
        with self._cond:
            self._state_listeners.append(listener)

    # ------------------------------------------------------------------ views

    @property
    def state(self) -> State:
        return self._state

    @property
    def rooms(self) -> Tuple[str, ...]:
        with self._cond:
            return tuple(self._rooms)

    @property
    def fatal(self) -> Optional[BaseException]:
        """The error the bot gave up with, if it did."""
        return self._fatal

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._waiting)

    # ------------------------------------------------------------------ connecting

    def connect(self, timeout: Optional[float] = None) -> None:
        """Connect unless connected; wait for a reconnection in progress."""
        budget = self.connect_timeout if timeout is None else timeout
        self._ready_link(time.monotonic() + budget, budget)

    def _reason(self) -> str:
        error = self.last_error
        return "" if error is None else f"; last error: {type(error).__name__}: {error}"

    def _not_connected(self, budget: float, state: State) -> ConnectFailed:
        return ConnectFailed(
            f"not connected to {self.url} after waiting {budget:g}s ({state.value}); "
            f"nothing was sent{self._reason()}"
        )

    def _ready_link(self, deadline: float, budget: float) -> _Link:
        """The current link once connected, connecting first if nobody is."""
        with self._cond:
            while True:
                state = self._state
                if state is State.CONNECTED:
                    assert self._link is not None
                    return self._link
                if state is State.CLOSED:
                    raise BotClosed("the bot is closed")
                if state is State.FAILED:
                    assert self._fatal is not None
                    raise self._fatal
                if state is State.IDLE:
                    self._set_state(State.CONNECTING)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._not_connected(budget, state)
                self._cond.wait(min(remaining, _WAIT_SLICE))
        return self._first_connect(deadline, budget)

    def _first_connect(self, deadline: float, budget: float) -> _Link:
        """Connect (the state is CONNECTING, set by the caller) and start the supervisor."""
        try:
            link = self._connect_until(deadline, budget)
        except BaseException as exc:
            with self._cond:
                if self._state is State.CONNECTING:
                    self._set_state(State.IDLE)
                waiting = list(self._waiting.values())
                self._waiting.clear()
                self._cond.notify_all()
            for r in waiting:
                self._fail_request(r, exc if isinstance(exc, (AuthError, BotClosed)) else
                                   ConnectFailed(f"{exc}; nothing was sent"), count_error=False)
            raise
        self._start_supervisor()
        return link

    def _connect_until(self, deadline: float, budget: float) -> _Link:
        """First connection: retry transport failures until the deadline, never a refusal."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                link = self._open_and_listen(max(remaining, 0.05))
            except (ConnectFailed, ConnectionLost, AckTimeout) as exc:
                self.last_error = exc
                if isinstance(exc, ConnectFailed) and not exc.retryable:
                    raise
                remaining = deadline - time.monotonic()
                delay = min(self._backoff(attempt), remaining)
                attempt += 1
                if delay <= 0 or self._closing.wait(delay):
                    if self._closing.is_set():
                        raise BotClosed("the bot was closed while connecting") from None
                    raise ConnectFailed(
                        f"{exc} (gave up after trying for {budget:g}s)"
                    ) from None
                continue
            with self._cond:
                if self._state is not State.CONNECTING or not link.alive:
                    closed = self._state is State.CLOSED
                else:
                    self._link = link
                    self._set_state(State.CONNECTED)
                    self._flush_waiting(link)
                    self._cond.notify_all()
                    return link
            self._retire(link)
            if closed:
                raise BotClosed("the bot was closed while connecting")

    def _open_link(self, timeout: float) -> _Link:
        """Open one Socket.IO connection; AuthError if refused, ConnectFailed otherwise."""
        client = SocketIOClient(
            reconnection=False,
            handle_sigint=False,
            logger=SOCKETIO_LOG,
            engineio_logger=ENGINEIO_LOG,
            request_timeout=timeout,
            ssl_verify=self._ssl_verify,
            websocket_extra_options=(
                {"sslopt": {"ca_certs": self._ca_certs}}
                if self._ca_certs and self._ssl_verify else None
            ),
        )
        link = _Link(client, next(self._links))
        client.on("disconnect", lambda reason=None: self._on_disconnect(link, reason))
        client.on("connect_error", lambda *args: self._on_connect_error(link, args))
        client.on(protocol.EVENT_MESSAGE, lambda *args: self._on_message(args))
        client.on(protocol.EVENT_EXCEPTION, lambda *args: self._on_exception(link, args))
        log.debug("connecting to %s (link %d)", self.url, link.number)
        try:
            # Asked here, not by python-socketio, so that its failure is told
            # apart from the network's: it would repeat on every attempt.
            auth = self._auth()
        except Exception as exc:
            raise ConnectFailed(
                f"could not connect to {self.url}: the token callable failed: "
                f"{type(exc).__name__}: {exc}",
                retryable=False,
            ) from exc
        try:
            client.connect(
                self.url,
                auth=auth,
                transports=["websocket"],
                socketio_path=self._socketio_path,
                wait_timeout=timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            link.alive = False
            refused = bool(client.failed_namespaces)
            self._retire(link)
            if refused:
                raise AuthError(
                    protocol.describe_connect_error(list(link.refusal or ())),
                    raw=protocol.mask_secrets(list(link.refusal or ())),
                ) from None
            root = _root_cause(exc)
            if isinstance(root, ssl.SSLError):
                # A certificate or TLS failure repeats on every attempt: say so, at once.
                raise ConnectFailed(
                    f"could not connect to {self.url}: TLS failed: "
                    f"{getattr(root, 'verify_message', None) or root.reason or root} "
                    "(check ca_certs=, or the server's certificate)",
                    retryable=False,
                ) from None
            detail = exc if root is exc else f"{exc} ({type(root).__name__}: {root})"
            raise ConnectFailed(f"could not connect to {self.url}: {detail}") from None
        except Exception as exc:  # anything else python-socketio raised while connecting
            link.alive = False
            self._retire(link)
            raise ConnectFailed(
                f"could not connect to {self.url}: {type(exc).__name__}: {exc}"
            ) from None
        log.info("connected to %s (link %d)", self.url, link.number)
        return link

    def _open_and_listen(self, timeout: float) -> _Link:
        """A new link, listening to every room; closed again if that fails."""
        link = self._open_link(timeout)
        try:
            self._relisten(link)
        except BaseException:
            self._retire(link)
            raise
        return link

    def _relisten(self, link: _Link) -> None:
        """Listen again to every room on a new link before it counts as connected."""
        rooms = self.rooms
        if not rooms:
            return
        futures = [
            (room, self._request_on(link, protocol.EVENT_LISTEN,
                                    protocol.listen_payload(room, self._api_key),
                                    protocol.read_listen_ack, self.connect_timeout))
            for room in rooms
        ]
        for room, future in futures:
            try:
                future.result(self.connect_timeout + 1.0)
            except ServerError as exc:
                # The room stays in bot.rooms: the next reconnect tries again.
                log.error("could not listen again to room %r after reconnecting: %s", room, exc)
                self.refuse_room(room, exc)
                continue
            except FutureTimeout:
                self._expire(future)
                raise AckTimeout(f"no ack for {protocol.EVENT_LISTEN} while reconnecting") from None
            with self._cond:
                self._refused.pop(room, None)
        log.info("listening again to %d room(s)", len(rooms))

    # ------------------------------------------------------------------ requests

    def request(
        self,
        event: str,
        payload: Mapping[str, Any],
        reader: Callable[[Tuple[Any, ...]], Any],
        timeout: float,
        on_success: Optional[Callable[[], None]] = None,
        *,
        whole: bool = False,
        start: Optional[float] = None,
    ) -> AckFuture:
        """Send a request once connected (blocking until then); its future
        settles on ack, error, drop or expiry.

        ``whole``: ``timeout`` after ``start`` (default now) is the deadline of
        the whole request, the wait for a link included (an explicit per-call
        timeout).  Otherwise the link may take ``connect_timeout`` and the ack
        ``timeout`` after it.
        """
        if start is None:
            start = time.monotonic()
        budget = timeout if whole else self.connect_timeout
        while True:
            try:
                link = self._ready_link(start + budget, budget)
            except ConnectFailed as exc:
                self._count(event, ok=False)
                if "nothing was sent" in str(exc):
                    raise
                raise ConnectFailed(f"{exc}; nothing was sent", retryable=exc.retryable) from None
            except (AuthError, BotClosed):
                self._count(event, ok=False)
                raise
            ack = max(start + timeout - time.monotonic(), 0.0) if whole else timeout
            future: Optional[AckFuture] = self._request_on(
                link, event, payload, reader, ack, on_success, budget=timeout)
            if future is not None:
                return future
            # The link died before the request went on the wire: safe to wait and retry.

    def request_async(
        self,
        event: str,
        payload: Mapping[str, Any],
        reader: Callable[[Tuple[Any, ...]], Any],
        timeout: float,
        *,
        whole: bool = False,
    ) -> AckFuture:
        """Like :meth:`request`, but never blocks: with no link the request
        waits for one inside its future (connecting in the background if
        nobody is), and fails with ConnectFailed if none comes in time."""
        with self._cond:
            state = self._state
            if state is State.CLOSED:
                raise BotClosed("the bot is closed")
            if state is State.FAILED:
                assert self._fatal is not None
                raise self._fatal
            link = self._link if state is State.CONNECTED else None
        if link is not None:
            future: Optional[AckFuture] = self._request_on(
                link, event, payload, reader, timeout, budget=timeout)
            if future is not None:
                return future
        future = AckFuture(self.callbacks)
        budget = timeout if whole else self.connect_timeout
        req = _Request(next(self._request_ids), None, event, payload, reader, future,
                       time.monotonic() + budget, None, timeout=timeout, budget=budget,
                       whole=whole)
        connect = False
        with self._cond:
            state = self._state
            if state is State.CLOSED:
                raise BotClosed("the bot is closed")
            if state is State.FAILED:
                assert self._fatal is not None
                raise self._fatal
            if state is State.CONNECTED and self._link is not None and self._link.alive:
                # Connected meanwhile: the flush has happened, so go on the wire now.
                self._put_on_wire(req, self._link)
                return future
            self._waiting[req.id] = req
            self._next_expiry = min(self._next_expiry, req.deadline)
            if state is State.IDLE:
                self._set_state(State.CONNECTING)
                connect = True
        if connect:
            self._connector = threading.Thread(
                target=self._connect_in_background, name="watchers-bot-connect", daemon=True)
            self._connector.start()
        self._start_supervisor()
        self._wake.set()
        return future

    def _connect_in_background(self) -> None:
        # For as long as a waiting request may wait, and at least connect_timeout.
        now = time.monotonic()
        with self._cond:
            deadline = max([now + self.connect_timeout]
                           + [r.deadline for r in self._waiting.values()])
        try:
            self._first_connect(deadline, deadline - now)
        except Exception as exc:  # the waiting requests carry the error
            log.info("connecting for a waiting request failed: %s", exc)

    def _flush_waiting(self, link: _Link) -> None:
        """Put every waiting request on a link that just came up, in order.

        The caller holds ``_cond`` (re-entrant) and has just set CONNECTED, so no
        request made after these can overtake them."""
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for req in waiting:
            self._put_on_wire(req, link)

    def _put_on_wire(self, req: _Request, link: _Link) -> None:
        """Emit a waiting request on ``link``; the caller holds ``_cond``."""
        if not req.whole:
            req.deadline = time.monotonic() + req.timeout
        req.budget = req.timeout
        req.link = link
        self._pending[req.id] = req
        if req.deadline < self._next_expiry:
            self._next_expiry = req.deadline
            self._wake.set()
        req_id = req.id
        try:
            link.client.emit(req.event, req.payload,
                             callback=lambda *args: self._on_ack(req_id, args))
        except socketio.exceptions.SocketIOError:
            # The link died already: nothing went out; wait for the next one.
            del self._pending[req_id]
            req.link = None
            self._waiting[req_id] = req

    def _request_on(
        self,
        link: _Link,
        event: str,
        payload: Mapping[str, Any],
        reader: Callable[[Tuple[Any, ...]], Any],
        timeout: float,
        on_success: Optional[Callable[[], None]] = None,
        *,
        budget: Optional[float] = None,
    ) -> Any:
        future = AckFuture(self.callbacks)
        req_id = next(self._request_ids)
        req = _Request(req_id, link, event, payload, reader, future,
                       time.monotonic() + timeout, on_success,
                       timeout=timeout, budget=timeout if budget is None else budget)
        with self._cond:
            if not link.alive:
                return None
            self._pending[req_id] = req
            wake = req.deadline < self._next_expiry
            if wake:
                self._next_expiry = req.deadline
        if wake:
            self._wake.set()
        try:
            link.client.emit(event, payload, callback=lambda *args: self._on_ack(req_id, args))
        except socketio.exceptions.SocketIOError:
            # Not connected any more: the packet was not queued, so nothing went out.
            with self._cond:
                self._pending.pop(req_id, None)
            return None
        return future

    def _on_ack(self, req_id: int, args: Tuple[Any, ...]) -> None:
        # On the read thread: read the answer, settle the future, nothing else.
        with self._cond:
            req = self._pending.pop(req_id, None)
        if req is None:
            log.debug("late or unknown ack ignored (request %d)", req_id)
            return
        try:
            result = req.reader(args)
        except ServerError as exc:
            self._count(req.event, ok=False, error=exc)
            _settle(req.future, error=exc)
            return
        except Exception as exc:  # a reader bug must not kill the read thread
            log.exception("could not read the ack of %s", req.event)
            self._count(req.event, ok=False, error=exc)
            _settle(req.future, error=ServerError(f"unreadable answer: {exc}", event=req.event))
            return
        if req.on_success is not None:
            req.on_success()
        self._count(req.event, ok=True)
        _settle(req.future, result=result)

    def _count(self, event: str, *, ok: bool, error: Optional[BaseException] = None) -> None:
        with self._cond:
            if ok:
                self.acked[event] = self.acked.get(event, 0) + 1
            else:
                self.failed[event] = self.failed.get(event, 0) + 1
                if error is not None:
                    self.last_error = error

    def _on_exception(self, link: _Link, args: Tuple[Any, ...]) -> None:
        error, pattern, data = protocol.parse_exception(args)
        with self._cond:
            candidates = [
                r for r in self._pending.values()
                if r.link is link and (pattern is None or r.event == pattern)
            ]
            match = next(
                (r for r in candidates
                 if data is not None and protocol.exception_matches(data, r.payload)),
                None,
            )
            if match is None and len(candidates) == 1:
                match = candidates[0]
            if match is not None:
                del self._pending[match.id]
            else:
                self.unmatched_exceptions += 1
        if match is None:
            log.warning("the server reported an error that matches no pending request: %s", error)
            return
        error.event = match.event
        self._count(match.event, ok=False, error=error)
        _settle(match.future, error=error)

    def wait(self, future: AckFuture, timeout: float) -> Any:
        """Block for a request's outcome; expire it at its timeout."""
        try:
            return future.result(timeout)
        except FutureTimeout:
            self._expire(future)
            # Settled now, by the expiry or by an ack that won the race.
            return future.result(_JOIN_TIMEOUT)

    def _expire(self, future: AckFuture) -> None:
        with self._cond:
            req = next((r for r in self._pending.values() if r.future is future), None)
            if req is not None:
                del self._pending[req.id]
            else:
                req = next((r for r in self._waiting.values() if r.future is future), None)
                if req is not None:
                    del self._waiting[req.id]
            state = self._state
        if req is not None:
            self._fail_overdue(req, state)

    def _fail_overdue(self, req: _Request, state: State) -> None:
        if req.link is None:
            self._fail_request(req, self._not_connected(req.budget, state), count_error=False)
        else:
            self._fail_request(req, self._timeout_error(req))

    def _timeout_error(self, req: _Request) -> AckTimeout:
        what = ("the message may or may not have been posted"
                if req.event == protocol.EVENT_SEND else "the room may or may not be subscribed")
        return AckTimeout(
            f"no acknowledgement of {req.event} within the {req.budget:g}s timeout; {what}")

    def _fail_request(self, req: _Request, error: BaseException, *,
                      count_error: bool = True) -> None:
        # count_error=False: the failure is a consequence of the link's error
        # (kept as last_error), not a new one.
        self._count(req.event, ok=False, error=error if count_error else None)
        _settle(req.future, error=error)

    def _expire_due(self) -> None:
        now = time.monotonic()
        with self._cond:
            due = [r for r in self._pending.values() if r.deadline <= now]
            for r in due:
                del self._pending[r.id]
            due_waiting = [r for r in self._waiting.values() if r.deadline <= now]
            for r in due_waiting:
                del self._waiting[r.id]
            self._next_expiry = min(
                itertools.chain((r.deadline for r in self._pending.values()),
                                (r.deadline for r in self._waiting.values())),
                default=float("inf"))
            state = self._state
        for r in due + due_waiting:
            self._fail_overdue(r, state)

    # ------------------------------------------------------------------ link events

    def _on_connect_error(self, link: _Link, args: Tuple[Any, ...]) -> None:
        link.refusal = args

    def _on_disconnect(self, link: _Link, reason: Any = None) -> None:
        # On a socketio thread: mark the link dead, fail its requests at once,
        # and hand reconnection to the supervisor.
        with self._cond:
            if not link.alive:
                return
            link.alive = False
            lost = [r for r in self._pending.values() if r.link is link]
            for r in lost:
                del self._pending[r.id]
            current = link is self._link and self._state is State.CONNECTED
            if current:
                if self.reconnect:
                    self._set_state(State.RECONNECTING)
                    self._need_reconnect = True
                else:
                    self._set_state(State.FAILED)
                    self._fatal = ConnectionLost(
                        f"the link to {self.url} was lost ({reason}) and reconnect=False"
                    )
                self._cond.notify_all()
        if lost:
            log.warning("link lost (%s): failing %d pending request(s)", reason, len(lost))
        for r in lost:
            what = ("the message may or may not have been posted"
                    if r.event == protocol.EVENT_SEND else "the room may or may not be subscribed")
            self._fail_request(r, ConnectionLost(
                f"the link dropped ({reason}) before the server acknowledged {r.event}; {what}"
            ))
        if current:
            log.warning("link to %s lost (%s)%s", self.url, reason,
                        "; reconnecting" if self.reconnect else "")
            if self.reconnect:
                self._wake.set()
            else:
                assert self._fatal is not None
                self._on_fatal(self._fatal)

    # ------------------------------------------------------------------ supervisor

    def _start_supervisor(self) -> None:
        with self._cond:
            if self._supervisor is not None or self._state is State.CLOSED:
                return
            self._supervisor = threading.Thread(
                target=self._supervise, name="watchers-bot-supervisor", daemon=True
            )
            self._supervisor.start()

    def _supervise(self) -> None:
        try:
            while not self._closing.is_set():
                timeout = min(max(self._next_expiry - time.monotonic(), 0.0), _WAIT_SLICE * 4)
                self._wake.wait(timeout)
                self._wake.clear()
                if self._closing.is_set():
                    return
                self._expire_due()
                if self._need_reconnect:
                    self._need_reconnect = False
                    # On a thread of its own: the expiry above must keep running
                    # while a reconnection waits or blocks.
                    self._reconnector = threading.Thread(
                        target=self._reconnect, name="watchers-bot-reconnect", daemon=True)
                    self._reconnector.start()
        except Exception:  # pragma: no cover - a bug here must not pass silently
            log.exception("the supervisor thread failed")
            self._give_up(WatchersError("internal error in the supervisor thread; see the log"))

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter (half to full of the step)."""
        step = min(self.reconnect_delay_max, self.reconnect_delay * (2 ** min(attempt, 30)))
        return random.uniform(step / 2, step)

    def _reconnect(self) -> None:
        old = self._link
        if old is not None:
            self._retire(old, initiate=False)
        attempt = 0
        while True:
            delay = self._backoff(attempt)
            log.info("reconnecting to %s in %.2fs (attempt %d)", self.url, delay, attempt + 1)
            if self._closing.wait(delay):
                return
            attempt += 1
            try:
                link = self._open_and_listen(self.connect_timeout)
            except BotClosed:
                return
            except AuthError as exc:
                log.error("reconnection refused: %s; giving up", exc)
                self._give_up(exc)
                return
            except (ConnectFailed, ConnectionLost, AckTimeout) as exc:
                self.last_error = exc
                log.info("reconnection attempt %d failed: %s", attempt, exc)
                if self.reconnect_attempts is not None and attempt >= self.reconnect_attempts:
                    self._give_up(ConnectFailed(
                        f"gave up reconnecting to {self.url} after {attempt} attempt(s): {exc}"
                    ))
                    return
                continue
            with self._cond:
                if self._state is State.RECONNECTING and link.alive:
                    self._link = link
                    self._set_state(State.CONNECTED)
                    self._flush_waiting(link)
                    self.reconnects += 1
                    self._cond.notify_all()
                    log.info("reconnected to %s (link %d)", self.url, link.number)
                    return
                closed = self._state is State.CLOSED
            self._retire(link)
            if closed:
                return
            # The new link died before it could be used: go round again.

    def _give_up(self, error: BaseException) -> None:
        with self._cond:
            if self._state is State.CLOSED:
                return
            self._set_state(State.FAILED)
            self._fatal = error
            waiting = list(self._waiting.values())
            self._waiting.clear()
            self._cond.notify_all()
        for r in waiting:
            self._fail_request(r, error, count_error=False)
        self._on_fatal(error)

    def _retire(self, link: _Link, *, initiate: bool = True) -> None:
        """Close a link (unless it is closing by itself) and wait, bounded, for its threads."""
        link.alive = False
        client = link.client
        eio = client.eio
        # A link that dropped closes itself: python-socketio disconnects it on
        # its own thread after a server-side disconnect.  A second, concurrent
        # disconnect would drain the write loop's stop sentinel and leave the
        # read loop waiting ~30 s, so only links still up are disconnected here.
        if initiate and eio.state == "connected":
            try:
                client.disconnect()
            except Exception as exc:  # half torn down already
                log.debug("error while closing link %d: %r", link.number, exc)
        me = threading.current_thread()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        reader = eio.read_loop_task
        if isinstance(reader, threading.Thread) and reader is not me:
            reader.join(min(_WAIT_SLICE, _JOIN_TIMEOUT))
            if reader.is_alive():
                eio.queue.put(None)  # wake a write loop whose sentinel was drained
                reader.join(max(deadline - time.monotonic(), 0.0))
        writer = eio.write_loop_task
        if isinstance(writer, threading.Thread) and writer is not me:
            writer.join(max(deadline - time.monotonic(), 0.0))

    # ------------------------------------------------------------------ rooms

    def listen(self, rooms: Iterable[str], timeout: float,
               *, whole: bool = False) -> List[Tuple[str, AckFuture]]:
        """Send a listen per room; each room joins ``rooms`` when its ack arrives.

        ``whole``: ``timeout`` bounds all of it, the wait for a link included."""
        out: List[Tuple[str, AckFuture]] = []
        start = time.monotonic()
        for room in rooms:
            with self._cond:
                self._wanted[room] = None
            payload = protocol.listen_payload(room, self._api_key)
            future = self.request(protocol.EVENT_LISTEN, payload, protocol.read_listen_ack,
                                  timeout, on_success=functools.partial(self._add_room, room),
                                  whole=whole, start=start)
            out.append((room, future))
        return out

    def _add_room(self, room: str) -> None:
        with self._cond:
            self._rooms[room] = None
            self._refused.pop(room, None)

    def refuse_room(self, room: str, error: BaseException) -> None:
        """Note that the server refused to listen to ``room`` (shown in health())."""
        with self._cond:
            self._refused[room] = f"{type(error).__name__}: {error}"

    @property
    def wanted(self) -> Tuple[str, ...]:
        """Every room the user asked to listen to (acknowledged or not)."""
        with self._cond:
            return tuple(self._wanted)

    @property
    def refused(self) -> Dict[str, str]:
        with self._cond:
            return dict(self._refused)

    @property
    def listening_to_all(self) -> bool:
        """Whether every room the user asked for is acknowledged and not refused."""
        with self._cond:
            return not self._refused and all(room in self._rooms for room in self._wanted)

    def forget_room(self, room: str) -> bool:
        with self._cond:
            self._wanted.pop(room, None)
            self._refused.pop(room, None)
            return self._rooms.pop(room, False) is None

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Fail pending requests with BotClosed, close the link, join threads."""
        with self._cond:
            if self._torn_down:
                return
            self._set_state(State.CLOSED)
            self._closing.set()
            pending = list(self._pending.values())
            self._pending.clear()
            waiting = list(self._waiting.values())
            self._waiting.clear()
            link = self._link
            self._cond.notify_all()
        self._wake.set()
        for r in pending:
            self._fail_request(r, BotClosed(
                f"the bot was closed before the server acknowledged {r.event}; "
                "the outcome is unknown"
            ))
        for r in waiting:
            self._fail_request(r, BotClosed(
                f"the bot was closed before {r.event} could be sent; nothing was sent"
            ), count_error=False)
        if link is not None:
            self._retire(link)
        me = threading.current_thread()
        for thread in (self._supervisor, self._reconnector, self._connector):
            if thread is not None and thread is not me:
                thread.join(_JOIN_TIMEOUT)
                if thread.is_alive():  # pragma: no cover - a connect attempt still in flight
                    log.warning("the %s thread is still finishing a connection attempt",
                                thread.name)
        self.callbacks.stop(_JOIN_TIMEOUT)
        self._torn_down = True
