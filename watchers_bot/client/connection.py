"""The bot's connection: its state, the supervisor that reconnects, and rooms.

Threads: callers connect and make requests; python-engineio's read thread
delivers events and acks (:mod:`.delivery`, :mod:`.requests`) and reports a
drop; the bot's supervisor sweeps overdue requests and starts reconnections.
None of them runs user code (state listeners and done-callbacks run on the
callback thread of :mod:`.requests`).

After *any* loss of the link the supervisor reconnects with capped, jittered
exponential backoff, and listens again to every room before the bot counts as
connected.  A refused token stops it (no retry storm); a refusal that is not
about the credentials (a server shutting down or restarting) is retried.
Requests on a link that drops fail at once with :class:`ConnectionLost`
(python-socketio would silently discard their callbacks).
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .. import protocol
from ..backoff import backoff
from ..errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    ServerError,
    WatchersError,
)
from .counters import Counters
from .link import JOIN_TIMEOUT, Link, LinkHandlers
from .requests import AckFuture, CallbackRunner, Request, RequestTable
from .rooms import Rooms

__all__ = ["Connection", "State"]

log = logging.getLogger("watchers_bot")

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


def _call_listener(args: Tuple[Callable[[str, str], Any], str, str]) -> None:
    listener, old, new = args
    listener(old, new)


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
        counters: Counters,
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
        self._on_fatal = on_fatal
        self._link_options = dict(ssl_verify=ssl_verify, ca_certs=ca_certs,
                                  socketio_path=socketio_path)
        self._handlers = LinkHandlers(on_message, self._on_exception, self._on_disconnect)
        self.counters = counters

        self._cond = threading.Condition()  # guards state, link and the request table
        self._state = State.IDLE
        self._link: Optional[Link] = None
        self._links = itertools.count(1)
        self._fatal: Optional[BaseException] = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._need_reconnect = False
        self._supervisor: Optional[threading.Thread] = None
        self._reconnector: Optional[threading.Thread] = None
        self._connector: Optional[threading.Thread] = None
        self._torn_down = False
        self.callbacks = CallbackRunner()
        self.requests = RequestTable(self._cond, counters, self.callbacks, self._wake.set)
        self.rooms = Rooms()
        self._state_listeners: List[Callable[[str, str], Any]] = []
        self.state_changed_at = time.time()
        self.connected_at: Optional[float] = None

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

    @property
    def state(self) -> State:
        return self._state

    @property
    def link(self) -> Optional[Link]:
        """The current link, if any (alive or not)."""
        return self._link

    @property
    def fatal(self) -> Optional[BaseException]:
        """The error the bot gave up with, if it did."""
        return self._fatal

    def _check_usable(self) -> None:
        # The caller holds _cond.
        if self._state is State.CLOSED:
            raise BotClosed("the bot is closed")
        if self._state is State.FAILED:
            assert self._fatal is not None
            raise self._fatal

    def _went_up(self, link: Link) -> None:
        """``link`` is the bot's link now; the caller holds ``_cond``."""
        self._link = link
        self._set_state(State.CONNECTED)
        self._flush(link)
        self._cond.notify_all()

    def _flush(self, link: Link) -> None:
        """Put every waiting request whose turn came on ``link``, in order (the caller
        holds ``_cond`` and the state is CONNECTED: no later request overtakes them)."""
        now = time.monotonic()
        table = self.requests
        for req in table.take_waiting(now):
            if not req.whole:
                req.deadline = now + req.timeout
            req.budget = req.timeout
            if not table.put_on_wire(req, link):
                table.wait(req)  # the link died already: nothing went out

    # ------------------------------------------------------------------ connecting

    def connect(self, timeout: Optional[float] = None) -> None:
        """Connect unless connected; wait for a reconnection in progress."""
        budget = self.connect_timeout if timeout is None else timeout
        self.ready_link(time.monotonic() + budget, budget)

    def _reason(self) -> str:
        error = self.counters.last_error
        return "" if error is None else f"; last error: {type(error).__name__}: {error}"

    def not_connected(self, budget: float, state: Optional[State] = None) -> ConnectFailed:
        return ConnectFailed(
            f"not connected to {self.url} after waiting {budget:g}s "
            f"({(state or self._state).value}); nothing was sent{self._reason()}"
        )

    def ready_link(self, deadline: float, budget: float) -> Link:
        """The current link once connected, connecting first if nobody is."""
        with self._cond:
            while True:
                state = self._state
                if state is State.CONNECTED:
                    assert self._link is not None
                    return self._link
                self._check_usable()
                if state is State.IDLE:
                    self._set_state(State.CONNECTING)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self.not_connected(budget, state)
                self._cond.wait(min(remaining, _WAIT_SLICE))
        return self._first_connect(deadline, budget)

    def _first_connect(self, deadline: float, budget: float) -> Link:
        """Connect (the state is CONNECTING, set by the caller) and start the supervisor."""
        try:
            link = self._connect_until(deadline, budget)
        except BaseException as exc:
            with self._cond:
                if self._state is State.CONNECTING:
                    self._set_state(State.IDLE)
                self._cond.notify_all()
            error = exc if isinstance(exc, (AuthError, BotClosed)) else ConnectFailed(
                f"{exc}; nothing was sent")
            self.requests.settle(self.requests.take_unsent(), error, counted=False)
            raise
        self._start_supervisor()
        return link

    def _connect_until(self, deadline: float, budget: float) -> Link:
        """First connection: retry transport failures until the deadline, never a refusal."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                link = self._open_and_listen(max(remaining, 0.05))
            except (ConnectFailed, ConnectionLost, AckTimeout) as exc:
                self.counters.last_error = exc
                if isinstance(exc, ConnectFailed) and not exc.retryable:
                    raise
                delay = min(self._backoff(attempt), deadline - time.monotonic())
                attempt += 1
                if delay <= 0 or self._closing.wait(delay):
                    if self._closing.is_set():
                        raise BotClosed("the bot was closed while connecting") from None
                    raise ConnectFailed(f"{exc} (gave up after trying for {budget:g}s)") from None
                continue
            with self._cond:
                usable = self._state is State.CONNECTING and link.alive
                closed = self._state is State.CLOSED
                if usable:
                    self._went_up(link)
                    return link
            link.retire()
            if closed:
                raise BotClosed("the bot was closed while connecting")

    def _open_and_listen(self, timeout: float) -> Link:
        """A new link, listening to every room; closed again if that fails."""
        link = Link.open(next(self._links), self.url, self._auth, self._handlers, timeout,
                         **self._link_options)  # type: ignore[arg-type]
        try:
            self._relisten(link)
        except BaseException:
            link.retire()
            raise
        return link

    def _relisten(self, link: Link) -> None:
        """Listen again to every room on a new link before it counts as connected."""
        rooms = self.rooms.listening
        if not rooms:
            return
        futures = []
        for room in rooms:
            future = self.request_on(link, protocol.EVENT_LISTEN,
                                     protocol.listen_payload(room, self._api_key),
                                     protocol.read_listen_ack, self.connect_timeout)
            if future is None:
                raise ConnectionLost("the new link dropped while listening again")
            futures.append((room, future))
        for room, future in futures:
            try:
                future.result(self.connect_timeout + 1.0)
            except ServerError as exc:
                # The room stays in bot.rooms: the next reconnect tries again.
                log.error("could not listen again to room %r after reconnecting: %s", room, exc)
                self.rooms.refuse(room, exc)
                continue
            except FutureTimeout:
                self.expire(future)
                raise AckTimeout(f"no ack for {protocol.EVENT_LISTEN} while reconnecting") from None
            self.rooms.acked(room)
        log.info("listening again to %d room(s)", len(rooms))

    # ------------------------------------------------------------------ requests

    def request(self, event: str, payload: Mapping[str, Any],
                reader: Callable[[Tuple[Any, ...]], Any], timeout: float,
                on_success: Optional[Callable[[], None]] = None, *, whole: bool = False,
                start: Optional[float] = None, retry: bool = False) -> AckFuture:
        """Send a request once connected (blocking until then); its future settles on
        ack, error, drop or expiry.

        ``whole``: ``timeout`` after ``start`` (default now) is the deadline of the
        whole request, the wait for a link included (an explicit per-call timeout).
        Otherwise the link may take ``connect_timeout`` and the ack ``timeout`` after it.
        """
        if start is None:
            start = time.monotonic()
        budget = timeout if whole else self.connect_timeout
        while True:
            try:
                link = self.ready_link(start + budget, budget)
            except ConnectFailed as exc:
                self.counters.request_done(event, ok=False)
                if "nothing was sent" in str(exc):
                    raise
                raise ConnectFailed(f"{exc}; nothing was sent", retryable=exc.retryable) from None
            except (AuthError, BotClosed):
                self.counters.request_done(event, ok=False)
                raise
            ack = max(start + timeout - time.monotonic(), 0.0) if whole else timeout
            future = self.request_on(link, event, payload, reader, ack, on_success,
                                     budget=timeout, retry=retry)
            if future is not None:
                return future
            # The link died before the request went on the wire: safe to wait and retry.

    def request_async(self, event: str, payload: Mapping[str, Any],
                      reader: Callable[[Tuple[Any, ...]], Any], timeout: float, *,
                      whole: bool = False, retry: bool = False,
                      not_before: float = 0.0) -> AckFuture:
        """Like :meth:`request`, but never blocks: with no link (or before
        ``not_before``) the request waits inside its future (connecting in the
        background if nobody is), and fails with ConnectFailed if no link comes in time."""
        now = time.monotonic()
        budget = timeout if whole else self.connect_timeout
        req = self.requests.new(event, payload, reader, now + budget,
                                timeout=timeout, budget=budget, whole=whole, retry=retry)
        req.not_before = not_before
        connect = False
        with self._cond:
            self._check_usable()
            link = self._link
            if (not not_before and self._state is State.CONNECTED and link is not None
                    and link.alive):
                if not whole:
                    req.deadline = now + timeout
                req.budget = timeout
                if self.requests.put_on_wire(req, link):
                    return req.future
            self.requests.wait(req)
            if self._state is State.IDLE:
                self._set_state(State.CONNECTING)
                connect = True
        if connect:
            self._connector = threading.Thread(
                target=self._connect_in_background, name="watchers-bot-connect", daemon=True)
            self._connector.start()
        self._start_supervisor()
        return req.future

    def _connect_in_background(self) -> None:
        # For as long as a waiting request may wait, and at least connect_timeout.
        now = time.monotonic()
        with self._cond:
            deadline = max([now + self.connect_timeout]
                           + [r.deadline for r in self.requests.waiting_requests()])
        try:
            self._first_connect(deadline, deadline - now)
        except Exception as exc:  # the waiting requests carry the error
            log.info("connecting for a waiting request failed: %s", exc)

    def request_on(self, link: Link, event: str, payload: Mapping[str, Any],
                   reader: Callable[[Tuple[Any, ...]], Any], timeout: float,
                   on_success: Optional[Callable[[], None]] = None, *,
                   budget: Optional[float] = None, retry: bool = False) -> Optional[AckFuture]:
        """A request on ``link`` now; None if the link is down (nothing went out)."""
        req = self.requests.new(event, payload, reader, time.monotonic() + timeout,
                                on_success, timeout=timeout,
                                budget=timeout if budget is None else budget, retry=retry)
        if not self.requests.put_on_wire(req, link):
            return None
        return req.future

    def wait(self, future: AckFuture, timeout: float) -> Any:
        """Block for a request's outcome; expire it at its timeout."""
        try:
            return future.result(timeout)
        except FutureTimeout:
            self.expire(future)
            # Settled now, by the expiry or by an ack that won the race.
            return future.result(JOIN_TIMEOUT)

    def expire(self, future: AckFuture) -> None:
        req = self.requests.take_future(future)
        if req is not None:
            self._fail_overdue([req])

    def _fail_overdue(self, reqs: List[Request]) -> None:
        state = self._state
        unsent = [r for r in reqs if r.link is None]
        sent = [r for r in reqs if r.link is not None]
        if unsent:
            self.requests.settle(unsent, lambda r: self.not_connected(r.budget, state),
                                 counted=False)
        if sent:
            self.requests.settle(sent, lambda r: AckTimeout(
                f"no acknowledgement of {r.event} within the {r.budget:g}s timeout; "
                f"{r.unknown_outcome()}"), forget=True)

    # ------------------------------------------------------------------ link events

    def _on_exception(self, link: Link, args: Tuple[Any, ...]) -> None:
        error, pattern, data = protocol.parse_exception(args)
        match = self.requests.match_exception(link, pattern, data)
        if match is None:
            self.counters.unmatched_exception()
            log.warning("the server reported an error that matches no pending request: %s", error)
            return
        error.event = match.event
        self.requests.settle([match], error, forget=True)

    def _on_disconnect(self, link: Link, reason: Any = None) -> None:
        # On a socketio thread: mark the link dead, fail its requests at once,
        # and hand reconnection to the supervisor.
        with self._cond:
            if not link.alive:
                return
            link.alive = False
            current = link is self._link and self._state is State.CONNECTED
            if current:
                if self.reconnect:
                    self._set_state(State.RECONNECTING)
                    self._need_reconnect = True
                else:
                    self._set_state(State.FAILED)
                    self._fatal = ConnectionLost(
                        f"the link to {self.url} was lost ({reason}) and reconnect=False")
                self._cond.notify_all()
        lost = self.requests.take_link(link)
        if lost:
            log.warning("link lost (%s): failing %d pending request(s)", reason, len(lost))
            self.requests.settle(lost, lambda r: ConnectionLost(
                f"the link dropped ({reason}) before the server acknowledged {r.event}; "
                f"{r.unknown_outcome()}"))
        if current:
            log.warning("link to %s lost (%s)%s", self.url, reason,
                        "; reconnecting" if self.reconnect else "")
            if self.reconnect:
                self._wake.set()
            else:
                assert self._fatal is not None
                self._give_up(self._fatal)

    # ------------------------------------------------------------------ supervisor

    def _start_supervisor(self) -> None:
        with self._cond:
            if self._supervisor is not None or self._state is State.CLOSED:
                return
            self._supervisor = threading.Thread(
                target=self._supervise, name="watchers-bot-supervisor", daemon=True)
            self._supervisor.start()

    def _supervise(self) -> None:
        try:
            while not self._closing.is_set():
                timeout = min(max(self.requests.next_due - time.monotonic(), 0.0),
                              _WAIT_SLICE * 4)
                self._wake.wait(timeout)
                self._wake.clear()
                if self._closing.is_set():
                    return
                due = self.requests.take_overdue(time.monotonic())
                if due:
                    self._fail_overdue(due)
                with self._cond:
                    if self._state is State.CONNECTED and self._link is not None:
                        self._flush(self._link)  # requests whose turn came
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
        return backoff(attempt, self.reconnect_delay, self.reconnect_delay_max)

    def _reconnect(self) -> None:
        old = self._link
        if old is not None:
            old.retire(initiate=False)
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
                self.counters.last_error = exc
                log.info("reconnection attempt %d failed: %s", attempt, exc)
                if self.reconnect_attempts is not None and attempt >= self.reconnect_attempts:
                    self._give_up(ConnectFailed(
                        f"gave up reconnecting to {self.url} after {attempt} attempt(s): {exc}"))
                    return
                continue
            with self._cond:
                usable = self._state is State.RECONNECTING and link.alive
                closed = self._state is State.CLOSED
                if usable:
                    self._went_up(link)
                    self.counters.reconnected()
                    log.info("reconnected to %s (link %d)", self.url, link.number)
                    return
            link.retire()
            if closed:
                return
            # The new link died before it could be used: go round again.

    def _give_up(self, error: BaseException) -> None:
        with self._cond:
            if self._state is State.CLOSED:
                return
            self._set_state(State.FAILED)
            self._fatal = error
            self._cond.notify_all()
        self.requests.settle(self.requests.take_unsent(), error, counted=False)
        self._on_fatal(error)

    # ------------------------------------------------------------------ rooms

    def listen(self, rooms: Iterable[str], timeout: float,
               *, whole: bool = False) -> List[Tuple[str, AckFuture]]:
        """Send a listen per room; each room joins ``rooms`` when its ack arrives.

        ``whole``: ``timeout`` bounds all of it, the wait for a link included."""
        out: List[Tuple[str, AckFuture]] = []
        start = time.monotonic()
        for room in rooms:
            self.rooms.want(room)
            payload = protocol.listen_payload(room, self._api_key)
            future = self.request(protocol.EVENT_LISTEN, payload, protocol.read_listen_ack,
                                  timeout, on_success=functools.partial(self.rooms.acked, room),
                                  whole=whole, start=start)
            out.append((room, future))
        return out

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Fail pending requests with BotClosed, close the link, join threads."""
        with self._cond:
            if self._torn_down:
                return
            self._set_state(State.CLOSED)
            self._closing.set()
            link = self._link
            self._cond.notify_all()
        pending, waiting = self.requests.take_all()
        self._wake.set()
        self.requests.settle(pending, lambda r: BotClosed(
            f"the bot was closed before the server acknowledged {r.event}; "
            "the outcome is unknown"))
        self.requests.settle(waiting, lambda r: BotClosed(
            f"the bot was closed before {r.event} could be sent; nothing was sent"),
            counted=False)
        if link is not None:
            link.retire()
        me = threading.current_thread()
        for thread in (self._supervisor, self._reconnector, self._connector):
            if thread is not None and thread is not me:
                thread.join(JOIN_TIMEOUT)
                if thread.is_alive():  # pragma: no cover - a connect attempt still in flight
                    log.warning("the %s thread is still finishing a connection attempt",
                                thread.name)
        self.callbacks.stop(JOIN_TIMEOUT)
        self._torn_down = True
