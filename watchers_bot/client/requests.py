"""Requests in flight: the one table, and the one place a request's future is settled.

Caller -> :meth:`RequestTable.add` -> the link (python-socketio's ``emit``) ->
the server's ack on the read thread -> :meth:`RequestTable.on_ack` ->
:meth:`RequestTable.settle` -> the caller's :class:`AckFuture`.

Every end of a request goes through :meth:`RequestTable.settle`: the ack, the
server's ``exception`` event, a dropped link, both expiry paths (a caller's
wait running out, the supervisor's sweep) and ``close()``.  A request given up
on before its ack (expired, or failed by an ``exception`` event) is also
removed from python-socketio's own callback table, which would otherwise keep
it until an ack that never comes.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .. import protocol
from ..errors import RateLimited, ServerError
from .counters import Counters

if TYPE_CHECKING:
    from .link import Link

__all__ = ["AckFuture", "CallbackRunner", "Request", "RequestTable"]

log = logging.getLogger("watchers_bot")

# How long a send waits after a rate-limit refusal that gave no retry hint.
RETRY_WITHOUT_HINT = 1.0


class CallbackRunner:
    """Runs user callbacks of futures on a thread of the bot's own, in order."""

    def __init__(self) -> None:
        # SimpleQueue: put and get without a Condition (most of a pipelined
        # done-callback's cost otherwise).
        self._queue: "queue.SimpleQueue[Optional[Tuple[Callable[[Any], Any], Any]]]" = (
            queue.SimpleQueue())
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


class AckFuture(Future):  # type: ignore[type-arg]
    """The future of a send or listen, resolved when the server acknowledges it.

    ``result()`` returns the server's answer or raises :class:`ServerError`,
    :class:`AckTimeout`, :class:`ConnectionLost` or :class:`BotClosed`.
    Callbacks given to :meth:`add_done_callback` run on a thread of the bot's
    own, never on the socket thread, so they may block or call the bot.
    """

    def __init__(self, runner: Optional[CallbackRunner] = None) -> None:
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


class Request:
    """A request on the wire (``link`` set), or waiting (``link`` None) for a link or
    for its turn (``not_before``)."""

    __slots__ = ("ack_callback", "ack_id", "budget", "deadline", "event", "future", "id",
                 "link", "not_before", "on_success", "payload", "reader", "retry",
                 "timeout", "whole")

    def __init__(
        self,
        req_id: int,
        event: str,
        payload: Mapping[str, Any],
        reader: Callable[[Tuple[Any, ...]], Any],
        future: AckFuture,
        deadline: float,
        on_success: Optional[Callable[[], None]],
        *,
        timeout: float,
        budget: float,
        whole: bool = False,
        retry: bool = False,
    ) -> None:
        self.id = req_id
        self.link: Optional["Link"] = None
        self.event = event
        self.payload = payload
        self.reader = reader
        self.future = future
        # On the wire: when the ack is overdue.  Waiting: when to stop waiting.
        self.deadline = deadline
        self.on_success = on_success
        self.timeout = timeout  # the ack wait, once on the wire (unless ``whole``)
        self.budget = budget  # the seconds this deadline allows (for error messages)
        self.whole = whole  # the deadline bounds the whole request, link wait included
        self.retry = retry  # a rate-limit refusal is sent again after the server's hint
        self.not_before = 0.0  # waiting for its turn until then (monotonic)
        self.ack_id: Optional[int] = None  # python-socketio's id of it, when known
        self.ack_callback: Optional[Callable[..., None]] = None

    def unknown_outcome(self) -> str:
        return ("the message may or may not have been posted"
                if self.event == protocol.EVENT_SEND else "the room may or may not be subscribed")


ErrorFor = Union[BaseException, Callable[[Request], BaseException]]


class RequestTable:
    """Every request of one bot that is not settled yet.  ``lock`` is the
    connection's condition (the table changes with the state, atomically)."""

    def __init__(self, lock: threading.Condition, counters: Counters,
                 runner: CallbackRunner, wake: Callable[[], None]) -> None:
        self._lock = lock
        self._counters = counters
        self._runner = runner
        self._wake = wake
        self._ids = itertools.count(1)  # next() is atomic: no lock per request
        self._pending: Dict[int, Request] = {}  # on the wire, by id
        self._waiting: Dict[int, Request] = {}  # for a link or a turn, in order
        #: The earliest deadline or turn in the table (the supervisor sleeps until then).
        self.next_due = float("inf")

    def __len__(self) -> int:
        return len(self._pending) + len(self._waiting)

    def new(self, event: str, payload: Mapping[str, Any],
            reader: Callable[[Tuple[Any, ...]], Any], deadline: float,
            on_success: Optional[Callable[[], None]] = None, *, timeout: float,
            budget: float, whole: bool = False, retry: bool = False) -> Request:
        return Request(next(self._ids), event, payload, reader, AckFuture(self._runner), deadline,
                       on_success, timeout=timeout, budget=budget, whole=whole, retry=retry)

    # ------------------------------------------------------------------ in (caller holds lock)

    def _due(self, when: float) -> None:
        if when < self.next_due:
            self.next_due = when
            self._wake()

    def wait(self, req: Request) -> None:
        """Keep ``req`` until a link comes up (or its turn comes); caller holds the lock."""
        req.link = None
        self._waiting[req.id] = req
        if req.not_before:
            self._due(req.not_before)
        self._due(req.deadline)

    def put_on_wire(self, req: Request, link: "Link") -> bool:
        """Emit ``req`` on ``link``; False (and nothing sent) if the link is down.

        The emit itself happens outside the lock unless the caller holds it (a
        flush holds it, so that waiting requests go out before later ones)."""
        req_id = req.id
        callback = req.ack_callback
        if callback is None:
            callback = req.ack_callback = lambda *args: self.on_ack(req_id, args)
        with self._lock:
            req.link = link
            self._pending[req_id] = req
            self._due(req.deadline)
        ok, ack_id = link.send(req.event, req.payload, callback)
        if ok:
            req.ack_id = ack_id
        else:
            with self._lock:
                self._pending.pop(req_id, None)
                req.link = None
        return ok

    def take_waiting(self, now: float) -> List[Request]:
        """The waiting requests whose turn came, in order; caller holds the lock."""
        ready = [r for r in self._waiting.values() if r.not_before <= now]
        for r in ready:
            del self._waiting[r.id]
        return ready

    # ------------------------------------------------------------------ out

    def take_all(self) -> Tuple[List[Request], List[Request]]:
        """(on the wire, waiting): everything, for close() or a final failure."""
        with self._lock:
            pending, waiting = list(self._pending.values()), list(self._waiting.values())
            self._pending.clear()
            self._waiting.clear()
        return pending, waiting

    def take_unsent(self) -> List[Request]:
        with self._lock:
            waiting = list(self._waiting.values())
            self._waiting.clear()
        return waiting

    def take_link(self, link: "Link") -> List[Request]:
        """The requests on ``link`` (it dropped)."""
        with self._lock:
            lost = [r for r in self._pending.values() if r.link is link]
            for r in lost:
                del self._pending[r.id]
        return lost

    def take_future(self, future: Future) -> Optional[Request]:  # type: ignore[type-arg]
        with self._lock:
            for table in (self._pending, self._waiting):
                req = next((r for r in table.values() if r.future is future), None)
                if req is not None:
                    del table[req.id]
                    return req
        return None

    def take_overdue(self, now: float) -> List[Request]:
        with self._lock:
            due = [r for t in (self._pending, self._waiting) for r in t.values()
                   if r.deadline <= now]
            for r in due:
                (self._pending if r.link is not None else self._waiting).pop(r.id, None)
            # A waiting request is due at its deadline, or at its turn if that is
            # still ahead (a past turn waits for a link, not for the clock).
            self.next_due = min(
                [r.deadline for r in self._pending.values()]
                + [min(r.deadline, r.not_before) if r.not_before > now else r.deadline
                   for r in self._waiting.values()],
                default=float("inf"))
        return due

    def match_exception(self, link: "Link", pattern: Optional[str],
                        data: Any) -> Optional[Request]:
        """Take the request a NestJS ``exception`` event is about, if one matches."""
        with self._lock:
            candidates = [r for r in self._pending.values()
                          if r.link is link and (pattern is None or r.event == pattern)]
            match = next((r for r in candidates if data is not None
                          and protocol.exception_matches(data, r.payload)), None)
            if match is None and len(candidates) == 1:
                match = candidates[0]
            if match is not None:
                del self._pending[match.id]
        return match

    # ------------------------------------------------------------------ settling

    def on_ack(self, req_id: int, args: Tuple[Any, ...]) -> None:
        """The server's answer to a request, on the read thread."""
        with self._lock:
            req = self._pending.pop(req_id, None)
        if req is None:
            log.debug("late or unknown ack ignored (request %d)", req_id)
            return
        try:
            result = req.reader(args)
        except ServerError as exc:
            if not (isinstance(exc, RateLimited) and self._retry_later(req, exc)):
                self.settle([req], exc)
            return
        except Exception as exc:  # a reader bug must not kill the read thread
            log.exception("could not read the ack of %s", req.event)
            self.settle([req], ServerError(f"unreadable answer: {exc}", event=req.event))
            return
        if req.on_success is not None:
            req.on_success()
        self.settle([req], result=result)

    def _retry_later(self, req: Request, refused: RateLimited) -> bool:
        """Send a refused send again after the server's hint, if that fits its deadline;
        otherwise settle it with a RateLimited that says so.  Always True once handled."""
        if not req.retry:
            return False
        hint = refused.retry_after
        pause = RETRY_WITHOUT_HINT if hint is None else hint
        now = time.monotonic()
        if pause >= req.deadline - now:
            told = "no retry hint" if hint is None else f"retry after {hint:g}s"
            error = RateLimited(
                refused.message,
                note=f"not posted: the server refused it for its rate limit ({told}) "
                f"and the {req.budget:g}s timeout runs out first",
                retry_after=hint, code=refused.code, event=refused.event, raw=refused.raw)
            error.__cause__ = refused
            self.settle([req], error)
            return True
        log.info("%s refused for the rate limit; retrying in %.3gs", req.event, pause)
        with self._lock:
            req.not_before = now + pause
            req.whole = True  # the retry keeps the deadline the first attempt had
            self.wait(req)
        return True

    def settle(self, reqs: Sequence[Request], error: Optional[ErrorFor] = None, *,
               result: Any = None, counted: bool = True, forget: bool = False) -> None:
        """The one place a request ends: count it, and settle its future.

        ``error``: an exception, or a function making one per request.
        ``counted``: the error is new (else it follows from one already kept as
        ``last_error``).  ``forget``: the request was given up on while its link
        lives, so python-socketio's callback for it goes too."""
        if forget:
            by_link: Dict[int, Tuple["Link", List[Request]]] = {}
            for r in reqs:
                if r.link is not None and r.ack_callback is not None:
                    by_link.setdefault(id(r.link), (r.link, []))[1].append(r)
            for link, on_link in by_link.values():
                link.forget_acks([(r.ack_id, r.ack_callback) for r in on_link
                                  if r.ack_callback is not None])
        counters = self._counters
        for r in reqs:
            exc = error(r) if callable(error) else error
            counters.request_done(r.event, ok=exc is None, error=exc if counted else None)
            # A future may be settled already by a racing path (ack vs. disconnect
            # vs. expiry): the first one wins and the others are no-ops.
            try:
                if exc is None:
                    r.future.set_result(result)
                else:
                    r.future.set_exception(exc)
            except Exception:  # InvalidStateError: settled already
                pass

    def refused(self, event: str, error: BaseException) -> AckFuture:
        """A future failed at once with ``error`` (nothing was sent), counted as a failure."""
        future = AckFuture(self._runner)
        self._counters.request_done(event, ok=False)
        future.set_exception(error)
        return future

    def waiting_requests(self) -> Iterable[Request]:
        return list(self._waiting.values())
