"""What happened on the emulator, as the playground sees it: an event history and its streams.

The :class:`Feed` observes the emulator (messages, requests and their acks,
bots coming and going), keeps the last :data:`HISTORY` events and fans each
one out to the open Server-Sent Events streams.  A page that (re)connects
catches up from the history (``Last-Event-ID``).  No event holds a secret:
request payloads come masked from the gateway, and the pushes shown here are
masked with :func:`watchers_bot._redact.mask_secrets`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterator, List, Optional, Set, Tuple

from .._redact import mask_secrets
from ..protocol.events import EVENT_LISTEN, EVENT_MESSAGE, EVENT_SEND
from .transcript import Transcript

if TYPE_CHECKING:
    from . import Emulator

__all__ = ["HISTORY", "SHOWN_ROOMS", "Feed", "bot_view"]

#: Events kept for a page that (re)connects; older ones are forgotten.
HISTORY = 5000
#: Events a slow page may have waiting; past that its stream ends and the
#: browser reconnects, catching up from the history (Last-Event-ID).
CLIENT_QUEUE = 1000
#: How often an idle stream writes a comment, to notice a gone browser.
KEEPALIVE = 5.0
#: Rooms of a bot shown in its ``bot`` events; ``room_count`` says how many in all.
SHOWN_ROOMS = 50

END = object()  # ends a stream


def bot_view(bot: Dict[str, Any]) -> Dict[str, Any]:
    """What the Bots panel shows of a bot: its first rooms, and their count."""
    rooms = bot["rooms"]
    shown = list(itertools.islice(rooms, SHOWN_ROOMS))
    return dict(bot, rooms=shown, room_count=len(rooms))


class Subscriber:
    """One open event stream: its queue of events not yet written."""

    def __init__(self) -> None:
        self.queue: "queue.Queue[Any]" = queue.Queue(CLIENT_QUEUE)


class Feed:
    """The event history of one emulator and its open streams."""

    def __init__(self, emulator: "Emulator") -> None:
        self._emu = emulator
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._history: Deque[Dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self._subscribers: Set[Subscriber] = set()
        self._rooms: Dict[str, None] = {}  # ordered set
        self._bots: Dict[str, Dict[str, Any]] = {}  # sid -> what the Bots panel shows
        emulator.observers.add(self.observe)

    def publish(self, kind: str, data: Dict[str, Any]) -> None:
        """Add one event to the history and hand it to every open stream."""
        self._publish([(kind, data)])

    def add_room(self, room: str) -> None:
        """Show ``room`` in the Rooms panel (a ``room`` event the first time)."""
        self._publish([], room)

    def _publish(self, events: List[Tuple[str, Dict[str, Any]]],
                 room: Optional[str] = None) -> None:
        """``events`` (after a ``room`` event if ``room`` is new), under one lock:
        the emulator calls this on every request, from its request threads."""
        with self._lock:
            if room is not None and room not in self._rooms:
                self._rooms[room] = None
                events = [("room", {"room": room}), *events]
            if not events:
                return
            now = time.time()
            made = [{"seq": next(self._seq), "kind": kind, "at": now, **data}
                    for kind, data in events]
            self._history.extend(made)
            subscribers = list(self._subscribers) if self._subscribers else ()
        for sub in subscribers:
            for event in made:
                try:
                    sub.queue.put_nowait(event)
                except queue.Full:  # a slow page: end its stream, it catches up on reconnect
                    self._end(sub)
                    break

    @staticmethod
    def _end(sub: Subscriber) -> None:
        while True:
            try:
                sub.queue.put_nowait(END)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):  # raced with the reader
                    sub.queue.get_nowait()

    def observe(self, kind: str, data: Dict[str, Any]) -> None:
        """Called by the emulator, on its threads: never blocks."""
        if kind == "message":
            self._observe_message(data)
        elif kind == "request":
            self._observe_request(data)
        elif kind in ("connect", "disconnect"):
            sid = data["sid"]
            with self._lock:
                bot = self._bots.setdefault(
                    sid, {"sid": sid, "user": None, "rooms": {}, "connected_at": time.time(),
                          "disconnected_at": None})
                if kind == "disconnect":
                    bot["disconnected_at"] = time.time()
                snapshot = bot_view(bot)
            self.publish("bot", snapshot)
        elif kind == "server":
            self.publish("server", data)
            with self._lock:
                subscribers = list(self._subscribers)
            for sub in subscribers:  # the port goes away: end every stream now
                self._end(sub)

    def _observe_message(self, data: Dict[str, Any]) -> None:
        payload = data["payload"]
        room = payload.get("roomId")
        body = payload.get("message") if isinstance(payload.get("message"), dict) else {}
        events: List[Tuple[str, Dict[str, Any]]] = [("message", {
            "room": room, "id": body.get("id"), "user": payload.get("userId"),
            "text": body.get("text"), "by": "human" if data["sid"] is None else "bot",
            "sid": data["sid"],
        })]
        if data["sid"] is None:  # a push to the bots listening there
            events.append(("packet", {
                "direction": "push", "event": EVENT_MESSAGE, "sid": None, "room": room,
                "payload": mask_secrets(payload), "acked": None, "ack": None,
                "ack_ms": None,
            }))
        self._publish(events, room if isinstance(room, str) else None)

    def _observe_request(self, data: Dict[str, Any]) -> None:
        payload = data["payload"]
        room = payload.get("roomId") if isinstance(payload, dict) else None
        sid = data["sid"]
        with self._lock:
            bot = self._bots.get(sid)
            changed = False
            if bot is not None and isinstance(payload, dict):
                user = payload.get("userId")
                if isinstance(user, str) and user != bot["user"]:
                    bot["user"] = user
                    changed = True
                ack = data["ack"]
                if (data["event"] == EVENT_LISTEN and isinstance(room, str)
                        and isinstance(ack, dict) and ack.get("status") == "ok"
                        and room not in bot["rooms"]):
                    bot["rooms"][room] = None
                    changed = True
            # only what changed is published: a bot listening to many rooms
            # must not cost a copy of its room list per request
            snapshot = bot_view(bot) if bot is not None and changed else None
        events: List[Tuple[str, Dict[str, Any]]] = [
            ("packet", {"direction": "request", "room": room, **data})]
        if snapshot is not None:
            events.append(("bot", snapshot))
        shown = isinstance(room, str) and data["event"] in (EVENT_LISTEN, EVENT_SEND)
        self._publish(events, room if shown else None)

    def stream(self, after: int) -> Iterator[bytes]:
        sub = Subscriber()
        with self._lock:
            backlog = [e for e in self._history if e["seq"] > after]
            self._subscribers.add(sub)
        try:
            yield b"retry: 1000\n\n"
            for event in backlog:
                yield self._frame(event)
            while True:
                try:
                    event = sub.queue.get(timeout=KEEPALIVE)
                except queue.Empty:
                    yield b": keepalive\n\n"  # raises in werkzeug when the page is gone
                    continue
                if event is END:
                    return
                yield self._frame(event)
        finally:
            with self._lock:
                self._subscribers.discard(sub)

    @staticmethod
    def _frame(event: Dict[str, Any]) -> bytes:
        data = json.dumps(event, separators=(",", ":"), default=str)
        return f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n".encode()

    @property
    def subscribers(self) -> int:
        """How many event streams are open (for tests: none may leak)."""
        with self._lock:
            return len(self._subscribers)

    def state(self) -> Dict[str, Any]:
        """What the page shows first: the emulator, its rooms and bots."""
        emu = self._emu
        with self._lock:
            rooms = list(self._rooms)
            bots = [bot_view(b) for b in self._bots.values()]
        return {
            "url": emu.url, "project": emu.project, "running": emu.running,
            "clients": emu.clients, "rooms": rooms, "bots": bots,
            "listeners": {r: sorted(emu.listeners(r)) for r in rooms},
        }

    def transcript(self, room: str) -> Transcript:
        """The conversation in ``room`` so far, as a :class:`Transcript`."""
        with self._lock:
            events = [e for e in self._history if e["kind"] == "message" and e["room"] == room]
        return Transcript.from_messages(room, self._emu.project, events)

