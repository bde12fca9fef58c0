"""The emulator's control API and the playground page, on the emulator's own port.

Everything lives under :data:`PREFIX` (``/_emulator/``): the page and its
static files, JSON routes that drive the emulator (post as a human, faults,
transcripts: :mod:`.actions`) and a Server-Sent Events stream of what happens
(messages, requests and the ack each got, bots coming and going: :mod:`.feed`).
The page does nothing that these routes do not do, so a script can drive the
emulator the same way (``watchers-bot post``, through :mod:`watchers_bot.control_api`).

This module routes; :mod:`.guard` refuses what is not local (Host, Origin,
content type).  No route takes or shows a token or an API key: payloads are
masked with :func:`watchers_bot._redact.mask_secrets` (the one secret registry).
"""

from __future__ import annotations

import contextlib
import json
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List
from urllib.parse import parse_qs, urlsplit

from .._loopback import is_loopback
from ..control_api import API, PREFIX
from .actions import Actions
from .feed import Feed
from .guard import HTTPError, check_local, check_local_client, read_json_body
from .transcript import Transcript

if TYPE_CHECKING:
    from . import Emulator

__all__ = ["Control", "control_for", "page_url"]


#: How long a write to a page that stopped reading may block before its stream ends.
WRITE_TIMEOUT = 20.0

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def page_url(emulator: "Emulator") -> str:
    """The playground page's address on ``emulator``."""
    return emulator.url + PREFIX


class Control:
    """The control API of one emulator: routes requests to its feed and its actions."""

    def __init__(self, emulator: "Emulator") -> None:
        self._emu = emulator
        self.feed = Feed(emulator)
        self.actions = Actions(emulator, self.feed)

    @property
    def subscribers(self) -> int:
        """How many event streams are open (for tests: none may leak)."""
        return self.feed.subscribers

    def state(self) -> Dict[str, Any]:
        """What the page shows first: the emulator, its rooms and bots."""
        return self.feed.state()

    def transcript(self, room: str) -> Transcript:
        """The conversation in ``room`` so far, as a :class:`Transcript`."""
        return self.feed.transcript(room)

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """A WSGI app serving :data:`PREFIX` here and everything else with ``app``.

        While the emulator is bound to a loopback address, Socket.IO requests must name a
        loopback host too (bound to another interface on purpose, bots may come from there)."""

        def dispatch(environ: Dict[str, Any], start_response: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            if path == PREFIX.rstrip("/") or path.startswith(PREFIX):
                return self(environ, start_response)
            if is_loopback(urlsplit(self._emu.url).hostname or ""):  # once per connection
                try:
                    check_local_client(environ)
                except HTTPError as exc:
                    start_response(exc.status, [("Content-Type", "text/plain")])
                    return [exc.message.encode() + b"\n"]
            return app(environ, start_response)

        return dispatch

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            scheme = "https" if self._emu.url.startswith("https:") else "http"
            check_local(environ, self._emu.port, scheme)
            return self._route(environ, start_response)
        except HTTPError as exc:
            return self._json(start_response, {"error": exc.message}, exc.status)
        except (TypeError, ValueError) as exc:
            return self._json(start_response, {"error": str(exc)}, "400 Bad Request")
        except RuntimeError as exc:  # the emulator is not running (restarting)
            return self._json(start_response, {"error": str(exc)}, "503 Service Unavailable")

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
                return self.feed.stream(int(after))
            if path == API + "state":
                return self._json(start_response, self.feed.state())
            if path == API + "transcript":
                room = query.get("room")
                if not room:
                    raise ValueError("room is required (?room=...)")
                return self._json(start_response, self.feed.transcript(room).to_dict())
            raise HTTPError("404 Not Found", f"no such route: GET {path}")
        if method != "POST":
            raise HTTPError("405 Method Not Allowed", f"{method} is not allowed here")
        action = self.actions.get(path[len(API):] if path.startswith(API) else "")
        if action is None:
            raise HTTPError("404 Not Found", f"no such route: POST {path}")
        body = read_json_body(environ)
        result = action(body)
        if isinstance(result, str):  # an exported file
            start_response("200 OK", [("Content-Type", "text/x-python; charset=utf-8")])
            return [result.encode()]
        return self._json(start_response, result)

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
            raise HTTPError("404 Not Found", f"no such file: {name}")
        data = resources.files("watchers_bot.emulator").joinpath("playground", name).read_bytes()
        start_response("200 OK", [
            ("Content-Type", ctype), ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy",
             "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
            ("X-Content-Type-Options", "nosniff"),
        ])
        return [data]


_controls_lock = threading.Lock()


def control_for(emulator: "Emulator") -> Control:
    """The :class:`Control` of ``emulator`` (made once; kept across restarts)."""
    with _controls_lock:
        if emulator.control is None:
            emulator.control = Control(emulator)
        control: Control = emulator.control
        return control
