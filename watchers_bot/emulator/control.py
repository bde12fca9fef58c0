"""The emulator's control API and the playground page, on the emulator's own port.

Everything lives under :data:`PREFIX` (``/_emulator/``): the page and its
static files, JSON routes that drive the emulator (post as a human, faults,
transcripts) and a Server-Sent Events stream of what happens (messages,
requests and the ack each got, bots coming and going).  The page does
nothing that these routes do not do, so a script can drive the emulator the
same way (``watchers-bot post`` does).

Not an open door: the emulator binds loopback by default, and every request
here is refused with 403 unless its ``Host`` names a loopback address with the
emulator's port (so a DNS-rebinding page cannot reach it) and its ``Origin``,
when present, is the emulator's own (so another site cannot post to it).
POSTs must also be ``application/json``, which a cross-site form cannot send.
No route takes or shows a token or an API key: payloads are masked with
:func:`watchers_bot.protocol.mask_secrets` (the one secret registry, ``watchers_bot._redact``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import queue
import threading
import time
from importlib import resources
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Set,
)
from urllib.parse import parse_qs, urlsplit

from .._loopback import is_loopback, split_host
from .._redact import mask_secrets
from ..protocol.events import EVENT_LISTEN, EVENT_MESSAGE, EVENT_SEND
from .transcript import Transcript, replay

if TYPE_CHECKING:
    from . import Emulator

__all__ = ["PREFIX", "control_for", "page_url"]

logger = logging.getLogger("watchers_bot.emulator")

#: Where the page and the API live on the emulator's port.
PREFIX = "/_emulator/"
API = PREFIX + "api/"

#: Events kept for a page that (re)connects; older ones are forgotten.
HISTORY = 5000
#: Events a slow page may have waiting; past that its stream ends and the
#: browser reconnects, catching up from the history (Last-Event-ID).
CLIENT_QUEUE = 1000
#: How often an idle stream writes a comment, to notice a gone browser.
KEEPALIVE = 5.0
#: How long a write to a page that stopped reading may block before its stream ends.
WRITE_TIMEOUT = 20.0
#: Largest request body the API reads.
MAX_BODY = 1_000_000

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_END = object()  # ends a stream


def page_url(emulator: "Emulator") -> str:
    """The playground page's address on ``emulator``."""
    return emulator.url + PREFIX


#: Rooms of a bot shown in its ``bot`` events; ``room_count`` says how many in all.
SHOWN_ROOMS = 50


def _bot_view(bot: Dict[str, Any]) -> Dict[str, Any]:
    """What the Bots panel shows of a bot: its first rooms, and their count."""
    rooms = bot["rooms"]
    shown = list(itertools.islice(rooms, SHOWN_ROOMS))
    return dict(bot, rooms=shown, room_count=len(rooms))


class _HTTPError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Subscriber:
    def __init__(self) -> None:
        self.queue: "queue.Queue[Any]" = queue.Queue(CLIENT_QUEUE)


class Control:
    """The control API of one emulator: its event history and its page clients."""

    def __init__(self, emulator: "Emulator") -> None:
        self._emu = emulator
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._history: Deque[Dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self._subscribers: Set[_Subscriber] = set()
        self._rooms: Dict[str, None] = {}  # ordered set
        self._bots: Dict[str, Dict[str, Any]] = {}  # sid -> what the Bots panel shows
        emulator.observers.add(self._observe)

    # ------------------------------------------------------------------ events

    def _publish(self, kind: str, data: Dict[str, Any]) -> None:
        with self._lock:
            event = {"seq": next(self._seq), "kind": kind, "at": time.time(), **data}
            self._history.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.queue.put_nowait(event)
            except queue.Full:  # a slow page: end its stream, it catches up on reconnect
                self._end(sub)

    @staticmethod
    def _end(sub: _Subscriber) -> None:
        while True:
            try:
                sub.queue.put_nowait(_END)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):  # raced with the reader
                    sub.queue.get_nowait()

    def _add_room(self, room: str) -> None:
        with self._lock:
            new = room not in self._rooms
            self._rooms[room] = None
        if new:
            self._publish("room", {"room": room})

    def _observe(self, kind: str, data: Dict[str, Any]) -> None:
        """Called by the emulator, on its threads: never blocks."""
        if kind == "message":
            payload = data["payload"]
            room = payload.get("roomId")
            if isinstance(room, str):
                self._add_room(room)
            body = payload.get("message") if isinstance(payload.get("message"), dict) else {}
            self._publish("message", {
                "room": room, "id": body.get("id"), "user": payload.get("userId"),
                "text": body.get("text"), "by": "human" if data["sid"] is None else "bot",
                "sid": data["sid"],
            })
            if data["sid"] is None:  # a push to the bots listening there
                self._publish("packet", {
                    "direction": "push", "event": EVENT_MESSAGE, "sid": None, "room": room,
                    "payload": mask_secrets(payload), "acked": None, "ack": None,
                    "ack_ms": None,
                })
        elif kind == "request":
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
                snapshot = _bot_view(bot) if bot is not None and changed else None
            if isinstance(room, str) and data["event"] in (EVENT_LISTEN, EVENT_SEND):
                self._add_room(room)
            self._publish("packet", {"direction": "request", "room": room, **data})
            if snapshot is not None:
                self._publish("bot", snapshot)
        elif kind in ("connect", "disconnect"):
            sid = data["sid"]
            with self._lock:
                bot = self._bots.setdefault(
                    sid, {"sid": sid, "user": None, "rooms": {}, "connected_at": time.time(),
                          "disconnected_at": None})
                if kind == "disconnect":
                    bot["disconnected_at"] = time.time()
                snapshot = _bot_view(bot)
            self._publish("bot", snapshot)
        elif kind == "server":
            self._publish("server", data)
            with self._lock:
                subscribers = list(self._subscribers)
            for sub in subscribers:  # the port goes away: end every stream now
                self._end(sub)

    def _stream(self, after: int) -> Iterator[bytes]:
        sub = _Subscriber()
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
                if event is _END:
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

    # ------------------------------------------------------------------ WSGI

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """A WSGI app serving :data:`PREFIX` here and everything else with ``app``."""

        def dispatch(environ: Dict[str, Any], start_response: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            if path == PREFIX.rstrip("/") or path.startswith(PREFIX):
                return self(environ, start_response)
            return app(environ, start_response)

        return dispatch

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            self._check_origin(environ)
            return self._route(environ, start_response)
        except _HTTPError as exc:
            return self._json(start_response, {"error": exc.message}, exc.status)
        except (TypeError, ValueError) as exc:
            return self._json(start_response, {"error": str(exc)}, "400 Bad Request")
        except RuntimeError as exc:  # the emulator is not running (restarting)
            return self._json(start_response, {"error": str(exc)}, "503 Service Unavailable")

    def _check_origin(self, environ: Dict[str, Any]) -> None:
        port = self._emu.port
        host, host_port = split_host(environ.get("HTTP_HOST", ""))
        if not is_loopback(host) or host_port != port:
            raise _HTTPError("403 Forbidden", "refused: the Host header must be a loopback "
                             f"address with port {port} (the control API is local only)")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None:
            parts = urlsplit(origin)
            scheme = "https" if self._emu.url.startswith("https:") else "http"
            try:
                origin_port = parts.port
            except ValueError:
                origin_port = None
            if (parts.scheme != scheme or not is_loopback(parts.hostname or "")
                    or origin_port != port):
                raise _HTTPError("403 Forbidden",
                                 "refused: cross-origin request to the emulator's control API")

    def _route(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if method == "GET":
            if path in (PREFIX.rstrip("/"), PREFIX):
                if path != PREFIX:
                    start_response("308 Permanent Redirect", [("Location", PREFIX)])
                    return [b""]
                return self._static(start_response, "index.html")
            if path.startswith(PREFIX + "static/"):
                return self._static(start_response, path[len(PREFIX + "static/"):])
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            if path == API + "events":
                after = environ.get("HTTP_LAST_EVENT_ID") or query.get("after") or "0"
                sock = environ.get("werkzeug.socket")
                if sock is not None:  # a page that stops reading cannot hold a thread forever
                    with contextlib.suppress(OSError):
                        sock.settimeout(WRITE_TIMEOUT)
                start_response("200 OK", [
                    ("Content-Type", "text/event-stream; charset=utf-8"),
                    ("Cache-Control", "no-store"),
                    ("X-Accel-Buffering", "no"),
                ])
                return self._stream(int(after))
            if path == API + "state":
                return self._json(start_response, self.state())
            if path == API + "transcript":
                room = query.get("room")
                if not room:
                    raise ValueError("room is required (?room=...)")
                return self._json(start_response, self.transcript(room).to_dict())
            raise _HTTPError("404 Not Found", f"no such route: GET {path}")
        if method != "POST":
            raise _HTTPError("405 Method Not Allowed", f"{method} is not allowed here")
        action = self._actions().get(path[len(API):] if path.startswith(API) else "")
        if action is None:
            raise _HTTPError("404 Not Found", f"no such route: POST {path}")
        body = self._body(environ)
        result = action(body)
        if isinstance(result, str):  # an exported file
            start_response("200 OK", [("Content-Type", "text/x-python; charset=utf-8")])
            return [result.encode()]
        return self._json(start_response, result)

    @staticmethod
    def _body(environ: Dict[str, Any]) -> Dict[str, Any]:
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _HTTPError("415 Unsupported Media Type",
                             "the control API takes application/json bodies")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            raise _HTTPError("413 Payload Too Large", f"bodies are limited to {MAX_BODY} bytes")
        raw = environ["wsgi.input"].read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise TypeError("the body must be a JSON object")
        return body

    @staticmethod
    def _json(start_response: Any, value: Any, status: str = "200 OK") -> List[bytes]:
        data = json.dumps(value, default=str).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data))),
                                ("Cache-Control", "no-store")])
        return [data]

    @staticmethod
    def _static(start_response: Any, name: str) -> List[bytes]:
        ctype = _STATIC.get(name)
        if ctype is None:
            raise _HTTPError("404 Not Found", f"no such file: {name}")
        data = resources.files("watchers_bot.emulator").joinpath("playground", name).read_bytes()
        start_response("200 OK", [
            ("Content-Type", ctype), ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy",
             "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
            ("X-Content-Type-Options", "nosniff"),
        ])
        return [data]

    # ------------------------------------------------------------------ actions

    def state(self) -> Dict[str, Any]:
        """What the page shows first: the emulator, its rooms and bots."""
        emu = self._emu
        with self._lock:
            rooms = list(self._rooms)
            bots = [_bot_view(b) for b in self._bots.values()]
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

    def _actions(self) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
        return {
            "rooms": self._create_room, "post": self._post, "drop": self._drop,
            "kick": self._kick, "freeze": self._freeze, "thaw": self._thaw,
            "restart": self._restart, "ack": self._ack, "push": self._push,
            "replay": self._replay, "export": self._export,
        }

    @staticmethod
    def _str(body: Dict[str, Any], name: str, default: Optional[str] = None) -> str:
        value = body.get(name, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
        return value

    @staticmethod
    def _sid(body: Dict[str, Any]) -> Optional[str]:
        sid = body.get("sid")
        if sid is not None and not isinstance(sid, str):
            raise TypeError("sid must be a string or null")
        return sid or None

    def _fault(self, name: str, detail: Dict[str, Any]) -> None:
        self._publish("fault", {"fault": name, **detail})

    def _create_room(self, body: Dict[str, Any]) -> Dict[str, Any]:
        room = self._str(body, "room")
        self._add_room(room)
        return {"room": room}

    def _post(self, body: Dict[str, Any]) -> Dict[str, Any]:
        room, text = self._str(body, "room"), body.get("text")
        if not isinstance(text, str):
            raise TypeError("text must be a string")
        payload = self._emu.post(room, text, user_id=self._str(body, "user", "human"))
        return {"posted": payload, "listeners": len(self._emu.listeners(room))}

    def _drop(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        count = self._emu.drop(sid)
        self._fault("drop", {"sid": sid, "count": count})
        return {"dropped": count}

    def _kick(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        count = self._emu.kick(sid)
        self._fault("kick", {"sid": sid, "count": count})
        return {"kicked": count}

    def _freeze(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid, duration = self._sid(body), body.get("duration")
        if duration is not None and not isinstance(duration, (int, float)):
            raise TypeError("duration must be a number of seconds or null")
        count = self._emu.freeze(sid, duration)
        self._fault("freeze", {"sid": sid, "count": count, "duration": duration})
        return {"frozen": count}

    def _thaw(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        self._emu.thaw(sid)
        self._fault("thaw", {"sid": sid})
        return {"thawed": True}

    def _restart(self, body: Dict[str, Any]) -> Dict[str, Any]:
        down_for = body.get("down_for", 0.0)
        if not isinstance(down_for, (int, float)) or not 0 <= down_for <= 60:
            raise ValueError("down_for must be a number of seconds from 0 to 60")
        drop = bool(body.get("drop", False))
        self._fault("restart", {"down_for": down_for, "drop": drop})

        def run() -> None:  # not on this request's thread: the restart ends it
            try:
                self._emu.restart(float(down_for), drop=drop)
            except Exception as exc:
                logger.error("emulator restart from the playground failed: %s", exc)

        threading.Thread(target=run, name="watchers-emulator-restart", daemon=True).start()
        return {"restarting": True}

    def _ack(self, body: Dict[str, Any]) -> Dict[str, Any]:
        event, mode = self._str(body, "event"), self._str(body, "mode", "normal")
        delay, times = body.get("delay", 0.0), body.get("times")
        self._emu.set_ack(event, mode, delay=delay, error=body.get("error"), times=times)
        self._fault("ack", {"event": event, "mode": mode, "delay": delay, "times": times})
        return {"event": event, "mode": mode}

    def _push(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        if "packet" in body:
            packet = body["packet"]
            if not isinstance(packet, str):
                raise TypeError("packet must be a string (Socket.IO packet text)")
            count = self._emu.push_packet(packet, to=sid)
            shown: Any = packet
        else:
            args = body.get("args", [])
            if not isinstance(args, list):
                raise TypeError("args must be a list of the event's arguments")
            room = body.get("room") or None
            count = self._emu.push_raw(self._str(body, "event", EVENT_MESSAGE), *args,
                                       to=sid, room=room)
            shown = mask_secrets(args)
        self._publish("packet", {
            "direction": "push", "event": body.get("event", "raw packet"), "sid": sid,
            "room": body.get("room"), "payload": shown, "acked": None, "ack": None,
            "ack_ms": None,
        })
        self._fault("push", {"sid": sid, "count": count})
        return {"pushed": count}

    def _replay(self, body: Dict[str, Any]) -> Dict[str, Any]:
        transcript = Transcript.from_dict(body.get("transcript"))
        start = body.get("from_turn", 0)
        timeout = body.get("timeout", 10.0)
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise ValueError("from_turn must be an int >= 0")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise ValueError("timeout must be a number of seconds from 0 to 120")
        room = body.get("room") or transcript.room
        self._publish("replay", {"state": "started", "room": room, "from_turn": start})

        def run() -> None:
            try:
                result = replay(self._emu, transcript, room=room, from_turn=start,
                                timeout=float(timeout))
            except Exception as exc:
                self._publish("replay", {"state": "failed", "room": room, "error": str(exc)})
                return
            expected = transcript.bot_texts(start)
            self._publish("replay", {
                "state": "done", "room": room, "answers": result.bot_texts(),
                "expected": expected, "same": result.bot_texts() == expected,
            })

        threading.Thread(target=run, name="watchers-emulator-replay", daemon=True).start()
        return {"replaying": room, "from_turn": start}

    def _export(self, body: Dict[str, Any]) -> str:
        transcript = Transcript.from_dict(body.get("transcript"))
        return transcript.to_pytest(self._str(body, "handler"))


_controls_lock = threading.Lock()


def control_for(emulator: "Emulator") -> Control:
    """The :class:`Control` of ``emulator`` (made once; kept across restarts)."""
    with _controls_lock:
        if emulator.control is None:
            emulator.control = Control(emulator)
        control: Control = emulator.control
        return control


# --------------------------------------------------------------------------- client side


class ControlError(Exception):
    """The control API could not be reached, or refused the request (the text says why)."""


def call(url: str, route: str, body: Optional[Dict[str, Any]] = None, *,
         timeout: float = 10.0) -> Any:
    """POST ``body`` (or GET without one) to the control API of the emulator at ``url``.

    Used by ``watchers-bot post``.  Goes straight to the address (no proxy: the
    API is on loopback); ``timeout`` bounds the whole call.  Raises
    :class:`ControlError` with the server's reason.
    """
    import socket
    import urllib.error
    import urllib.request

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be the emulator's http://host:port address, not {url!r}")
    target = f"{parts.scheme}://{parts.netloc}{API}{route}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(target, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            reason = exc.reason
        raise ControlError(
            f"the emulator at {parts.netloc} answered {exc.code}: {reason}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        if isinstance(why, socket.timeout) or isinstance(exc, socket.timeout):
            why = f"no answer within {timeout:g}s"
        raise ControlError(
            f"cannot reach the emulator's control API at {parts.netloc}: {why} "
            "(is `watchers-bot serve` running there?)"
        ) from None
