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

import functools
import itertools
import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .. import protocol
from ..errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConnectFailed,
)
from .connecting import Connecting
from .counters import Counters
from .link import JOIN_TIMEOUT, Link, LinkHandlers
from .requests import AckFuture, CallbackRunner, Request, RequestTable
from .rooms import Rooms
from .state import State
from .supervisor import Supervisor

__all__ = ["Connection", "State"]

log = logging.getLogger("watchers_bot")


class Connection(Connecting, Supervisor):
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
