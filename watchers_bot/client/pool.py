"""A keyed worker pool: rooms in parallel, each room one message at a time, in server order.

One dispatcher takes messages from the bot's inbox and files them by room; up to
``workers`` threads take the next *ready* room (one with a waiting message and no
handler running) and handle that room's oldest message.  A room goes back to the
end of the ready line after each message, so a busy room cannot starve the others.

What waits for a handler is bounded (``backlog``) with the inbox's overflow policy,
counted as dropped.  When the pool stops, messages no handler started go back to the
front of the inbox in server order, so a later consumer gets them (or ``close()``
counts them as unread, as it does for the inbox).
"""

from __future__ import annotations

import collections
import logging
import queue
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from ..errors import AckTimeout, ConnectionLost
from ..models import Message
from ..router import Router
from ..routing import Context, invoke, name_of, takes_context
from .inbox import CLOSED, Inbox

if TYPE_CHECKING:
    from .bot import Bot

__all__ = ["RoomPool"]

log = logging.getLogger("watchers_bot.handler")

# How often the dispatcher looks at its stop flag and the watchdog while no message comes.
_POLL = 0.25
_DROP_WARNING_INTERVAL = 5.0

# Messages the dispatcher takes from the inbox in one lock round at most.
_BATCH = 64

# (when it was filed, its place in server order, the message)
_Item = Tuple[float, int, Message]


class _Running:
    __slots__ = ("message", "reported", "started", "thread")

    def __init__(self, message: Message, thread: threading.Thread) -> None:
        self.message = message
        self.started = time.monotonic()
        self.reported = False
        self.thread = thread


class RoomPool:
    """The dispatcher and workers behind :meth:`Bot.run` and :meth:`Bot.run_in_thread`."""

    def __init__(
        self,
        bot: "Bot",
        inbox: Inbox,
        handler: Callable[..., Any],
        *,
        workers: int,
        backlog: int,
        overflow: str,
        slow_after: Optional[float],
        name: str,
    ) -> None:
        self._bot = bot
        self._inbox = inbox
        self._handler = handler
        self._wants_context = takes_context(handler)
        self._handler_name = name_of(handler)
        self.workers = workers
        self.backlog_limit = backlog
        self.overflow = overflow
        self.slow_after = slow_after
        self._lock = threading.Condition(threading.Lock())
        self._rooms: Dict[str, Deque[_Item]] = {}
        self._ready: Deque[str] = collections.deque()
        self._running: Dict[int, _Running] = {}
        self._busy: Set[str] = set()  # rooms with a handler running
        self._waiting = 0
        self._seq = 0
        self._stopping = False
        self._stop = threading.Event()
        self.done = threading.Event()  # set once every worker ended and the rest went back
        self.handled = 0
        self.errors = 0
        self.reply_failures = 0
        self.dropped = 0
        self.slow_reports = 0
        self.error: Optional[BaseException] = None
        self._drops_unreported = 0
        self._last_drop_warning = float("-inf")
        self._last_watch = time.monotonic()
        self._workers: List[threading.Thread] = [
            threading.Thread(
                target=self._work, name=name if workers == 1 else f"{name}-{i + 1}", daemon=True
            )
            for i in range(workers)
        ]
        self._dispatcher = threading.Thread(
            target=self._dispatch, name=f"{name}-dispatch", daemon=True
        )
        self._launched: List[threading.Thread] = []  # started, or being started

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "RoomPool":
        _start_all([*self._workers, self._dispatcher], self._launched)
        return self

    def request_stop(self) -> None:
        """Take no new message; the dispatcher winds the pool down."""
        self._stop.set()

    def is_worker(self, thread: threading.Thread) -> bool:
        return thread in self._workers

    @property
    def alive(self) -> bool:
        return self._dispatcher.is_alive() or any(w.is_alive() for w in self._workers)

    def join(self, timeout: Optional[float]) -> bool:
        """Wait up to ``timeout`` (``None``: no limit) for every thread of the pool to end."""
        if not self._launched:  # never started (interrupted before): nothing to wait for
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        if me is not self._dispatcher and not self.is_worker(me):
            # An Event's wait survives Ctrl-C landing in it; Thread.join's may not.
            self.done.wait(timeout)
        for thread in [self._dispatcher, *self._workers]:
            if thread is me:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in [self._dispatcher, *self._workers] if t is not me)

    # ------------------------------------------------------------ dispatcher

    def _dispatch(self) -> None:
        take = self._inbox.take_batch
        try:
            while not self._stop.is_set():
                try:
                    item = take(_POLL, _BATCH)
                except queue.Empty:
                    self._watch()
                    continue
                except Exception as exc:  # the bot gave up for good: AuthError, ConnectFailed...
                    self.error = exc
                    log.error("message handler pool stops: %s", exc)
                    return
                if item is CLOSED:
                    return
                self._file(item)
                if time.monotonic() - self._last_watch >= _POLL:
                    self._watch()
        finally:
            try:
                self._wind_down()
            finally:
                self.done.set()

    def _file(self, batch: List[Message]) -> None:
        drops = 0
        with self._lock:
            rooms = self._rooms
            now = time.monotonic()
            for msg in batch:
                if 0 < self.backlog_limit <= self._waiting:
                    drops += 1
                    if self.overflow == "drop_newest":
                        self.dropped += 1
                        continue
                    self._drop_oldest_locked()
                self._seq += 1
                room = msg.room_id
                waiting = rooms.get(room)
                if waiting is None:
                    waiting = rooms[room] = collections.deque()
                waiting.append((now, self._seq, msg))
                self._waiting += 1
                if len(waiting) == 1 and room not in self._busy:
                    self._ready.append(room)
                    self._lock.notify()
        for _ in range(drops):
            self._report_drop()

    def _drop_oldest_locked(self) -> None:
        oldest_room = min(
            (room for room, items in self._rooms.items() if items),
            key=lambda room: self._rooms[room][0][1],
        )
        self._rooms[oldest_room].popleft()
        self._waiting -= 1
        self.dropped += 1
        if not self._rooms[oldest_room] and oldest_room in self._ready:
            self._ready.remove(oldest_room)

    def _report_drop(self) -> None:
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL:
            log.warning(
                "handlers are behind: %d messages wait (policy %s); dropped %d message(s); "
                "add workers or raise backlog",
                self.backlog_limit,
                self.overflow,
                self._drops_unreported,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    def _wind_down(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        # In-flight handlers finish; what none started goes back to the inbox, in order.
        for worker in self._workers:
            while worker.is_alive():
                worker.join(_POLL)
                self._watch()
        with self._lock:
            left = sorted(
                (item for items in self._rooms.values() for item in items), key=lambda i: i[1]
            )
            self._rooms.clear()
            self._ready.clear()
            self._waiting = 0
        if left:
            self._inbox.give_back([msg for _, _, msg in left])

    # ------------------------------------------------------------ workers

    def _work(self) -> None:
        me = threading.current_thread()
        ident = me.ident
        assert ident is not None
        lock = self._lock
        while True:
            with lock:
                while not self._ready and not self._stopping:
                    lock.wait(_POLL)
                if self._stopping:
                    return
                room = self._ready.popleft()
                waiting = self._rooms[room]
                self._busy.add(room)
            while True:
                with lock:
                    if self._stopping or not waiting:
                        break
                    _, _, msg = waiting.popleft()
                    self._waiting -= 1
                    self._running[ident] = _Running(msg, me)
                try:
                    self._handle(msg)
                finally:
                    with lock:
                        del self._running[ident]
                if self._ready:
                    break  # other rooms wait: this one goes to the back of the line
            with lock:
                self._busy.discard(room)
                if waiting:
                    self._ready.append(room)
                    lock.notify()
                elif self._rooms.get(room) is waiting:
                    del self._rooms[room]

    def _failed_name(self) -> str:
        if isinstance(self._handler, Router):
            route = self._handler.current_route()
            if route is not None:
                return f"{route.name} (route of {self._handler!r})"
        return self._handler_name

    def _handle(self, msg: Message) -> None:
        bot = self._bot
        try:
            reply = invoke(
                self._handler, msg, Context(bot, msg), wants_context=self._wants_context
            )
        except Exception:
            self.errors += 1
            log.error(
                "handler %s raised on message %s in room %r; the room goes on",
                self._failed_name(), msg.id, msg.room_id, exc_info=True,
            )
            return
        self.handled += 1
        if reply is None:
            return
        try:
            bot.send(msg.room_id, reply)
        except Exception as exc:
            self.reply_failures += 1
            unknown = isinstance(exc, (AckTimeout, ConnectionLost))
            log.error(
                "the reply to message %s in room %r failed (%s: %s); %s",
                msg.id, msg.room_id, type(exc).__name__, exc,
                "it may have been posted" if unknown else "it was not posted",
            )

    # ------------------------------------------------------------ watchdog

    def _watch(self) -> None:
        self._last_watch = now = time.monotonic()
        limit = self.slow_after
        if limit is None:
            return
        with self._lock:
            slow = [r for r in self._running.values() if not r.reported and now - r.started > limit]
            for running in slow:
                running.reported = True
        if not slow:
            return
        frames = sys._current_frames()
        for running in slow:
            frame = frames.get(running.thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(gone)\n"
            self.slow_reports += 1
            log.warning(
                "handler %s has been running for more than %gs on message %s in room %r "
                "(the room waits); thread %s is at:\n%s",
                self._handler_name, limit, running.message.id, running.message.room_id,
                running.thread.name, stack.rstrip(),
            )

    # ------------------------------------------------------------ snapshot

    def backlog(self) -> Dict[str, int]:
        """Messages waiting for a handler, per room."""
        with self._lock:
            return {room: len(items) for room, items in self._rooms.items() if items}

    def waiting(self) -> int:
        return self._waiting

    def oldest_wait(self) -> Optional[float]:
        """Seconds the oldest message waiting for a handler has waited, or ``None``."""
        with self._lock:
            heads = [items[0][0] for items in self._rooms.values() if items]
        return time.monotonic() - min(heads) if heads else None


def _start_all(threads: List[threading.Thread], launched: List[threading.Thread]) -> None:
    """Start ``threads`` in order, each added to ``launched`` first (it may be running
    when its start() raises).  A Ctrl-C landing in a start(), which waits for the new
    thread, still starts the rest before it goes on: a pool must be whole for its
    dispatcher to wind its workers down on stop()."""
    try:
        for thread in threads:
            launched.append(thread)
            thread.start()
    except BaseException:
        for thread in threads:
            if thread not in launched:
                launched.append(thread)
                thread.start()
        raise
