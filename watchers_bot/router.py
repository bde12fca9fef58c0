"""Routes: handlers registered with filters, tried in order; a :class:`Router` is itself a handler.

::

    router = Router()

    @router.command("start")
    def start(msg, ctx):
        return f"hello {ctx.args or 'there'}"

    @router.message(regex=r"order #(\\d+)")
    def order(msg, ctx):
        return f"looking up order {ctx.match.group(1)}"

    @router.message()            # no filter: the fallback
    def other(msg):
        return None

    bot.run(router, workers=4)
"""

from __future__ import annotations

import re
import threading
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Optional,
    Pattern,
    Tuple,
    TypeVar,
    Union,
)

import attrs

from .models import Message
from .routing import Context, invoke, takes_context

__all__ = ["Route", "RouteStats", "Router"]

H = TypeVar("H", bound=Callable[..., Any])

_COMMAND_NAME = re.compile(r"[^\s/]+")


@attrs.frozen
class RouteStats:
    """A route's counters (see :meth:`Router.stats`)."""

    #: messages the route's handler returned on.
    handled: int
    #: messages on which the route's handler raised.
    errors: int


def _names(value: Any, name: str) -> Optional[FrozenSet[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be a str or an iterable of str, "
                        f"not {type(value).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold str, not {type(item).__name__}")
    if not items:
        raise ValueError(f"{name} must not be empty (None: any)")
    return frozenset(items)


class Route:
    """One registered handler and its filters (made by :class:`Router`'s decorators)."""

    def __init__(
        self,
        handler: Callable[..., Any],
        *,
        command: Optional[str] = None,
        regex: Optional[Pattern[str]] = None,
        rooms: Optional[FrozenSet[str]] = None,
        senders: Optional[FrozenSet[str]] = None,
        predicate: Optional[Callable[[Message], object]] = None,
    ) -> None:
        self.handler = handler
        self.command = command
        self.regex = regex
        self.rooms = rooms
        self.senders = senders
        self.predicate = predicate
        self.wants_context = takes_context(handler)
        self.name = str(getattr(handler, "__qualname__", type(handler).__name__))
        self.handled = 0
        self.errors = 0
        self._count_lock = threading.Lock()

    @property
    def is_fallback(self) -> bool:
        """Whether the route has no filter at all."""
        return all(f is None for f in (self.command, self.regex, self.rooms, self.senders,
                                       self.predicate))

    def match(self, msg: Message) -> Optional[Dict[str, Any]]:
        """The context fields if ``msg`` passes every filter, else ``None``."""
        if self.rooms is not None and msg.room_id not in self.rooms:
            return None
        if self.senders is not None and msg.user_id not in self.senders:
            return None
        found: Dict[str, Any] = {}
        if self.command is not None:
            first = msg.text.split(None, 1)
            if not first or first[0] != "/" + self.command:
                return None
            found["command"] = self.command
            found["args"] = first[1].strip() if len(first) > 1 else ""
        if self.regex is not None:
            m = self.regex.search(msg.text)
            if m is None:
                return None
            found["match"] = m
        if self.predicate is not None and not self.predicate(msg):
            return None
        return found

    def _count(self, ok: bool) -> None:
        with self._count_lock:
            if ok:
                self.handled += 1
            else:
                self.errors += 1

    def __repr__(self) -> str:
        filters = []
        if self.command is not None:
            filters.append(f"command=/{self.command}")
        if self.regex is not None:
            filters.append(f"regex={self.regex.pattern!r}")
        if self.rooms is not None:
            filters.append(f"rooms={sorted(self.rooms)!r}")
        if self.senders is not None:
            filters.append(f"senders={sorted(self.senders)!r}")
        if self.predicate is not None:
            filters.append("predicate")
        return f"<Route {self.name} {' '.join(filters) or 'fallback'}>"


class Router:
    """Handlers with filters; the first route that matches a message handles it.

    Routes are tried in registration order (an included router's routes at the place it
    was included); ``@router.message()`` with no filter matches everything, so register it
    last as the fallback.  A message no route matches gets no reply (counted in
    :attr:`unmatched`).  A router is a handler: pass it to ``bot.run``,
    ``bot.run_in_thread``, Flask's ``on_message`` or Django's ``HANDLER``.
    """

    #: Routers take the context (``invoke`` hands it over without inspecting the signature).
    takes_context = True

    def __init__(self) -> None:
        self._entries: List[Union[Route, "Router"]] = []
        self.unmatched = 0
        self._local = threading.local()

    # ------------------------------------------------------------ registration

    def command(
        self,
        name: str,
        *,
        rooms: Union[str, Iterable[str], None] = None,
        senders: Union[str, Iterable[str], None] = None,
        predicate: Optional[Callable[[Message], object]] = None,
    ) -> Callable[[H], H]:
        """Decorator: handle ``/name`` and ``/name some args`` (``ctx.args``, ``ctx.argv``)."""
        if not isinstance(name, str):
            raise TypeError(f"command name must be a str, not {type(name).__name__}")
        bare = name[1:] if name.startswith("/") else name
        if not _COMMAND_NAME.fullmatch(bare):
            raise ValueError(f"command name must be one word without '/', got {name!r}")
        return self._decorator(command=bare, rooms=rooms, senders=senders, predicate=predicate)

    def message(
        self,
        regex: Union[str, Pattern[str], None] = None,
        *,
        rooms: Union[str, Iterable[str], None] = None,
        senders: Union[str, Iterable[str], None] = None,
        predicate: Optional[Callable[[Message], object]] = None,
    ) -> Callable[[H], H]:
        """Decorator: handle messages whose text the ``regex`` finds (``ctx.match``) and
        that pass the other filters; with no filter at all, every message (the fallback)."""
        pattern: Optional[Pattern[str]]
        if regex is None:
            pattern = None
        elif isinstance(regex, str):
            try:
                pattern = re.compile(regex)
            except re.error as exc:
                raise ValueError(f"regex {regex!r} is not a valid regular expression: {exc}") \
                    from None
        elif isinstance(regex, re.Pattern):
            pattern = regex
        else:
            raise TypeError(f"regex must be a str or a compiled pattern, "
                            f"not {type(regex).__name__}")
        return self._decorator(regex=pattern, rooms=rooms, senders=senders, predicate=predicate)

    def _decorator(self, *, rooms: Any, senders: Any, predicate: Any,
                   **filters: Any) -> Callable[[H], H]:
        room_set = _names(rooms, "rooms")
        sender_set = _names(senders, "senders")
        if predicate is not None and not callable(predicate):
            raise TypeError(f"predicate must be callable, not {type(predicate).__name__}")

        def register(handler: H) -> H:
            if not callable(handler):
                raise TypeError(f"handler must be callable, not {type(handler).__name__}")
            self._entries.append(Route(handler, rooms=room_set, senders=sender_set,
                                       predicate=predicate, **filters))
            return handler

        return register

    def include(self, other: "Router") -> "Router":
        """Try ``other``'s routes here, after the routes registered so far; returns ``self``."""
        if not isinstance(other, Router):
            raise TypeError(f"include() takes a Router, not {type(other).__name__}")
        if other is self or self in other._all_routers():
            raise ValueError("a router cannot include itself")
        self._entries.append(other)
        return self

    def _all_routers(self) -> List["Router"]:
        found = [self]
        for entry in self._entries:
            if isinstance(entry, Router):
                found.extend(entry._all_routers())
        return found

    # ------------------------------------------------------------ lookup and call

    @property
    def routes(self) -> Tuple[Route, ...]:
        """Every route in the order they are tried (included routers flattened)."""
        out: List[Route] = []
        for entry in self._entries:
            out.extend(entry.routes if isinstance(entry, Router) else (entry,))
        return tuple(out)

    def route_for(self, msg: Message) -> Optional[Tuple[Route, Dict[str, Any]]]:
        """The first route matching ``msg`` and what it matched, or ``None``."""
        for route in self.routes:
            found = route.match(msg)
            if found is not None:
                return route, found
        return None

    def __call__(self, msg: Message, ctx: Context) -> Optional[str]:
        chosen = self.route_for(msg)
        if chosen is None:
            self.unmatched += 1
            return None
        route, found = chosen
        self._local.route = route
        try:
            reply = invoke(route.handler, msg, attrs.evolve(ctx, **found),
                           wants_context=route.wants_context)
        except BaseException:
            route._count(False)
            raise
        route._count(True)
        return reply

    def current_route(self) -> Optional[Route]:
        """The route this thread last called (names the route in failure reports)."""
        return getattr(self._local, "route", None)

    def stats(self) -> Dict[str, RouteStats]:
        """Counters per route, by the handler's name."""
        return {route.name: RouteStats(route.handled, route.errors) for route in self.routes}

    def __repr__(self) -> str:
        return f"<Router {len(self.routes)} route(s)>"
