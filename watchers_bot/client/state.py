"""The connection's state machine: its states, the listeners that hear of changes,
and what every part of the connection shares (see :mod:`.connection`)."""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
)

from ..errors import (
    BotClosed,
)
from .counters import Counters
from .link import Link, LinkHandlers
from .requests import AckFuture, CallbackRunner, Request, RequestTable
from .rooms import Rooms

__all__ = ["WAIT_SLICE", "State", "StateMachine"]

log = logging.getLogger("watchers_bot")

# The longest a waiting thread sleeps before looking again (keeps waits
# interruptible and bounds the effect of any missed wake-up).
WAIT_SLICE = 0.5


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


class StateMachine:
    """The state of one bot's connection and the attributes its parts share
    (set by ``Connection.__init__``)."""

    url: str
    connect_timeout: float
    reconnect: bool
    reconnect_delay: float
    reconnect_delay_max: float
    reconnect_attempts: Optional[int]
    counters: Counters
    callbacks: CallbackRunner
    requests: RequestTable
    rooms: Rooms
    state_changed_at: float
    connected_at: Optional[float]
    _auth: Callable[[], Dict[str, Any]]
    _api_key: str
    _on_fatal: Callable[[BaseException], None]
    _link_options: Dict[str, Any]
    _handlers: LinkHandlers
    _cond: threading.Condition
    _state: State
    _link: Optional[Link]
    _links: Iterator[int]
    _fatal: Optional[BaseException]
    _closing: threading.Event
    _wake: threading.Event
    _need_reconnect: bool
    _supervisor: Optional[threading.Thread]
    _reconnector: Optional[threading.Thread]
    _connector: Optional[threading.Thread]
    _torn_down: bool
    _state_listeners: List[Callable[[str, str], Any]]

    if TYPE_CHECKING:  # implemented by the other parts (connecting, supervisor, connection)

        def connect(self, timeout: Optional[float] = None) -> None: ...

        def ready_link(self, deadline: float, budget: float) -> Link: ...

        def request_on(self, link: Link, event: str, payload: Mapping[str, Any],
                       reader: Callable[[Tuple[Any, ...]], Any], timeout: float,
                       on_success: Optional[Callable[[], None]] = None, *,
                       budget: Optional[float] = None, retry: bool = False
                       ) -> Optional[AckFuture]: ...

        def expire(self, future: AckFuture) -> None: ...

        def _open_and_listen(self, timeout: float) -> Link: ...

        def _relisten(self, link: Link) -> None: ...

        def _backoff(self, attempt: int) -> float: ...

        def _start_supervisor(self) -> None: ...

        def _give_up(self, error: BaseException) -> None: ...

        def _fail_overdue(self, reqs: List[Request]) -> None: ...

        def _on_exception(self, link: Link, args: Tuple[Any, ...]) -> None: ...

        def _on_disconnect(self, link: Link, reason: Any = None) -> None: ...

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
