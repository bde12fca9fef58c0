"""The supervisor: link events (a drop, an ``exception``), overdue requests, and
reconnection with the one backoff formula until the bot is back or gives up."""

from __future__ import annotations

import logging
import threading
import time
from typing import (
    Any,
    Tuple,
)

from .. import protocol
from ..backoff import backoff
from ..errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    WatchersError,
)
from .link import Link
from .state import WAIT_SLICE, State, StateMachine

__all__ = ["Supervisor"]

log = logging.getLogger("watchers_bot")


class Supervisor(StateMachine):
    """What happens to a connection after its first link: drops and reconnects."""

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
                              WAIT_SLICE * 4)
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
