"""Opening the connection: the first connect (retried until its deadline), a link
opened and listened on, rooms listened to again after a reconnect."""

from __future__ import annotations

import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import (
    Optional,
)

from .. import protocol
from ..errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    ServerError,
)
from .link import Link
from .state import WAIT_SLICE, State, StateMachine

__all__ = ["Connecting"]

log = logging.getLogger("watchers_bot")


class Connecting(StateMachine):
    """How a connection gets (and waits for) a link."""

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
                self._cond.wait(min(remaining, WAIT_SLICE))
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
                         **self._link_options)
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
