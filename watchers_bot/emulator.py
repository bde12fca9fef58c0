"""A local Watchers.io bot server for tests, demos and benchmarks.

:class:`Emulator` is a real Socket.IO v4 server on ``127.0.0.1`` that speaks
the Watchers bot protocol (see :mod:`watchers_bot.protocol`): bearer-token
auth at connect, ``external/listen`` and ``external/send`` with acks, and
``message`` events to the sockets listening to a room.  It runs in background
threads of the calling process, starts in a few milliseconds on a free port,
and lets a test act as a human in a room, see what bots sent, and inject the
faults a real deployment shows (dropped links, server-side disconnects,
restarts, slow or missing acks, NestJS ``exception`` events, malformed
payloads, short ping settings)::

    from watchers_bot.emulator import Emulator

    with Emulator(tokens=["test-token"], api_keys=["test-key"]) as emu:
        ...                                   # connect a bot to emu.url
        emu.wait_for_listeners("room-1")
        emu.post("room-1", "hello bot")       # as a human
        sent = emu.wait_for_sent(1)           # what the bot answered
        emu.drop()                            # cut every link: bots should reconnect

Every method is thread-safe and every wait takes a timeout.  Tokens and API
keys never appear in logs or in the records (:attr:`SentMessage.payload`
masks ``apiKey``).

Implementation: ``socketio.Server(async_mode="threading")`` over werkzeug's
threaded WSGI server; simple-websocket does the websocket upgrade.  Those are
the ``watchers-bot[emulator]`` extra.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

try:
    import simple_websocket  # noqa: F401  (engineio's threading driver needs it)
    import socketio
    from engineio import packet as eio_packet
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "watchers_bot.emulator needs python-socketio, simple-websocket and werkzeug; "
        "install them with: pip install 'watchers-bot[emulator]' "
        f"(missing: {exc.name or exc})"
    ) from exc

import attrs

from .protocol import (
    EVENT_EXCEPTION,
    EVENT_LISTEN,
    EVENT_MESSAGE,
    EVENT_SEND,
    mask_secrets,
    message_payload,
)
from .ratelimit import TokenBucket
from .transcript import Transcript, Turn, replay

__all__ = [
    "ACK_MODES", "Emulator", "RequestRecord", "SentMessage", "Transcript", "Turn",
    "WrittenMessage", "replay",
]

logger = logging.getLogger(__name__)

#: The modes :meth:`Emulator.set_ack` accepts.
ACK_MODES = ("normal", "delay", "withhold", "error", "exception")

#: The error answer of ``set_ack(event, "error")`` when no ``error`` is given.
DEFAULT_ERROR: Dict[str, Any] = {
    "status": "error",
    "statusCode": 500,
    "message": "Internal server error",
}

_NAMESPACE = "/"
_ROOM_PREFIX = "room:"  # Socket.IO room names never collide with sid rooms
_BATCH = 1000  # messages per pre-framed post_many chunk
_SERVE_POLL = 0.05  # how often the accept loop checks for stop()
_JOIN_TIMEOUT = 2.0


# --------------------------------------------------------------------------- records


@attrs.frozen
class SentMessage:
    """A message a bot posted with ``external/send`` and the emulator accepted."""

    #: the room it went to.
    room_id: str
    #: its text.
    text: str
    #: the ``userId`` the bot sent it as.
    user_id: str
    #: the Socket.IO sid of the socket that sent it.
    sid: str
    #: the request payload as received, with ``apiKey`` masked as ``"***"``.
    payload: Mapping[str, Any] = attrs.field(repr=False)
    #: ``time.monotonic()`` when it was received.
    at: float = attrs.field(repr=False)
    #: the ``message.id`` it was broadcast with.
    message_id: int = attrs.field(repr=False)


@attrs.frozen
class RequestRecord:
    """A request a socket made (``external/listen``, ``external/send`` or any other event).

    Every request is recorded, valid or not, whatever the ack mode.
    """

    #: the event name.
    event: str
    #: the Socket.IO sid of the socket that sent it.
    sid: str
    #: the first argument of the event, with secrets masked; ``None`` when absent.
    payload: Any
    #: the ack mode in force for it (``"normal"``, ``"delay"``, ...), ``None`` for other events.
    mode: Optional[str]
    #: ``time.monotonic()`` when it was received.
    at: float = attrs.field(repr=False)


@attrs.frozen
class WrittenMessage:
    """A ``message`` event the server wrote to one socket (``record_writes=True``).

    Recorded when the socket's writer thread takes the packet to write it, so a
    message held back by :meth:`Emulator.freeze` or still queued when a link
    died is not recorded.  What a client received on a socket is therefore
    always a prefix of what was written to it, and a link that ended normally
    delivered all of it.
    """

    #: the Socket.IO sid of the socket it was written to.
    sid: str
    #: the room it was posted in.
    room_id: str
    #: its ``message.id``.
    message_id: Any
    #: ``time.monotonic()`` when it was written.
    at: float = attrs.field(repr=False)


# --------------------------------------------------------------------------- internals


@attrs.define
class _AckRule:
    mode: str = "normal"
    delay: float = 0.0
    error: Any = None
    remaining: Optional[int] = None


@attrs.define(eq=False)
class _Client:
    sid: str
    eio_sid: str
    token: str = attrs.field(repr=False)
    raw_sock: Optional[socket.socket] = attrs.field(repr=False)
    gen: Any = attrs.field(repr=False)  # the _Generation that accepted it
    rooms: Set[str] = attrs.Factory(set)
    thaw: threading.Event = attrs.Factory(threading.Event)
    frozen: bool = False


class _Refused(Exception):
    """An ack-level validation error: answered as an error object."""

    def __init__(self, status_code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.extra = extra

    def answer(self) -> Dict[str, Any]:
        return {"status": "error", "statusCode": self.status_code, "message": self.message,
                **self.extra}


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's request handler without per-request logging."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("http %s: " + message.rstrip(), type, *args)

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        # simple-websocket ends a websocket session by raising ConnectionError
        # through werkzeug.  werkzeug then treats the socket as an idle HTTP/1.1
        # keep-alive connection and waits for another request on it, so the
        # TCP link stays open until the client gives up (python-socketio's
        # disconnect() then blocks 3 s waiting for it).  Close it now.
        self.close_connection = True


class _HTTPServer(ThreadedWSGIServer):
    """werkzeug's threaded server, logging to our logger at DEBUG only."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("http %s: " + message.rstrip(), type, *args)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("http request from %s failed", client_address, exc_info=True)


class _RecordedPacket(eio_packet.Packet):
    """A MESSAGE packet that reports when the socket's writer takes it to write."""

    def __init__(self, data: str, on_write: Callable[[], None]) -> None:
        super().__init__(eio_packet.MESSAGE, data=data)
        self._on_write: Optional[Callable[[], None]] = on_write

    def encode(self, b64: bool = False) -> Any:
        on_write, self._on_write = self._on_write, None
        if on_write is not None:
            on_write()
        return super().encode(b64)


def _message_ids(data: Any) -> Tuple[Optional[str], Any]:
    """``(roomId, message.id)`` of a ``message`` payload, ``(None, None)`` if it has none."""
    if isinstance(data, Mapping):
        body = data.get("message")
        if isinstance(data.get("roomId"), str) and isinstance(body, Mapping) and "id" in body:
            return data["roomId"], body["id"]
    return None, None


class _Manager(socketio.Manager):
    """Socket.IO's in-memory manager, telling the emulator when a sid is fully
    connected (after the CONNECT packet was queued) and when it is gone, and
    (with ``record_writes``) when a ``message`` event is written to a socket."""

    def __init__(
        self,
        on_connected: Callable[[str], None],
        on_gone: Callable[[str], None],
        on_write: Optional[Callable[[str, str, Any], None]] = None,
    ):
        super().__init__()
        self._on_connected = on_connected
        self._on_gone = on_gone
        # Called as on_write(sid, room_id, message_id); None when not recording.
        self.on_write = on_write

    def emit(self, event: str, data: Any, namespace: str, room: Any = None,
             skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> Any:
        on_write = self.on_write
        # tuples are several event arguments, anything else one (as upstream)
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        room_id, msg_id = (_message_ids(args[0]) if event == EVENT_MESSAGE and len(args) == 1
                           else (None, None))
        extra = {k: v for k, v in kwargs.items() if k != "ignore_queue"}  # in-memory manager
        if on_write is None or room_id is None or callback is not None or extra:
            return super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                                callback=callback, to=to, **kwargs)
        # Upstream's emit, with one recording packet per recipient.
        if namespace not in self.rooms:
            return None
        encoded = self.server.packet_class(
            socketio.packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        if not isinstance(encoded, str):  # binary attachments: not recorded
            return super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                                callback=callback, to=to)
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, eio_sid in self.get_participants(namespace, to or room):
            if sid not in skip:
                self.server._send_eio_packet(eio_sid, _RecordedPacket(
                    encoded, functools.partial(on_write, sid, room_id, msg_id)))
        return None

    def connect(self, sid: str, namespace: str) -> Any:
        sid = super().connect(sid, namespace)
        if namespace == _NAMESPACE:
            self._on_connected(sid)
        return sid

    def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> Any:
        try:
            return super().disconnect(sid, namespace, **kwargs)
        finally:
            if namespace == _NAMESPACE:
                self._on_gone(sid)


class _FrameBatch(eio_packet.Packet):
    """Many ``message`` events in one Engine.IO queue entry.

    The socket's writer thread calls ``encode()`` when this entry's turn
    comes: it writes the pre-built websocket frames of all but the last
    message straight to the TCP socket, and returns the last message, which
    the writer sends as usual.  Every write to the socket therefore stays on
    the writer thread and in queue order.
    """

    def __init__(self, raw_sock: socket.socket, frames: bytes, last: str,
                 on_write: Optional[Callable[[], None]] = None) -> None:
        super().__init__(eio_packet.MESSAGE, data=last)
        self._raw_sock = raw_sock
        self._frames: Optional[bytes] = frames
        self._on_write = on_write

    def encode(self, b64: bool = False) -> Any:
        frames, self._frames = self._frames, None
        on_write, self._on_write = self._on_write, None
        if on_write is not None:
            on_write()
        if frames:
            self._raw_sock.sendall(frames)  # an OSError ends the writer, as ws.send would
        return super().encode(b64)


class _Stall(eio_packet.Packet):
    """A queue entry that holds the socket's writer until thawed (see ``freeze``)."""

    def __init__(self, release: Callable[[], bool]) -> None:
        super().__init__(eio_packet.NOOP)
        self._release = release

    def encode(self, b64: bool = False) -> Any:
        while not self._release():
            pass
        return super().encode(b64)


def _ws_text_frame(data: bytes) -> bytes:
    """One unmasked, final websocket text frame (what a server sends)."""
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


_json_str: Callable[[str], str] = getattr(json.encoder, "encode_basestring_ascii", json.dumps)


def _message_encoder(project: str, room_id: str, user_id: str) -> Callable[[int, str], str]:
    """A fast encoder of ``message`` events as Socket.IO EVENT packet text.

    It fills a template cut from one payload that :func:`message_payload`
    built with marker values, so the shape stays the protocol module's.
    Falls back to encoding each payload in full when the markers are ambiguous.
    """

    def full(msg_id: int, text: str) -> str:
        payload = message_payload(room_id, msg_id, text, user_id, project)
        return "2" + json.dumps([EVENT_MESSAGE, payload], separators=(",", ":"))

    id_mark, text_mark = -7_340_912_655_103, "\x00watchers-emulator-text\x00"
    sample = full(id_mark, text_mark)
    id_s, text_s = json.dumps(id_mark), json.dumps(text_mark)
    if sample.count(id_s) != 1 or sample.count(text_s) != 1:
        return full
    i, t = sample.index(id_s), sample.index(text_s)
    if i < t:
        a, rest = sample.split(id_s)
        b, c = rest.split(text_s)

        def fast(msg_id: int, text: str) -> str:
            return a + str(msg_id) + b + _json_str(text) + c
    else:
        a, rest = sample.split(text_s)
        b, c = rest.split(id_s)

        def fast(msg_id: int, text: str) -> str:
            return a + _json_str(text) + b + str(msg_id) + c

    if fast(102, "t\u00e9st \"q\"") != full(102, "t\u00e9st \"q\""):  # pragma: no cover
        return full
    return fast


class _Generation:
    """One run of the server, from start() to stop(); restart() makes a new one."""

    def __init__(self) -> None:
        self.sio: Any = None
        self.httpd: Optional[_HTTPServer] = None
        self.thread: Optional[threading.Thread] = None
        self.stopping = threading.Event()
        self.stop_serving = threading.Event()
        self.pending: Dict[str, Tuple[str, str, Optional[socket.socket]]] = {}
        self.active: Set[Any] = set()
        self.active_cond = threading.Condition()


class _TrackingApp:
    """WSGI wrapper remembering every open connection's socket, so stop() can end them."""

    def __init__(self, app: Any, gen: _Generation) -> None:
        self._app = app
        self._gen = gen

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        gen = self._gen
        sock = environ.get("werkzeug.socket")
        token = sock if sock is not None else object()
        if sock is not None:
            # Small frames go out at once (no Nagle delay waiting for the
            # client's ACK): what Node's http server does by default.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with gen.active_cond:
            gen.active.add(token)
        try:
            return self._app(environ, start_response)
        finally:
            with gen.active_cond:
                gen.active.discard(token)
                gen.active_cond.notify_all()


def _check_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    return value


# --------------------------------------------------------------------------- the emulator


class Emulator:
    """A local Watchers.io bot server (Socket.IO v4, websocket transport only).

    :param tokens: bearer tokens accepted at connect (the ``auth`` payload
        must be ``{"bearer": <token>}``).
    :param api_keys: API keys accepted in request payloads.
    :param host: interface to bind; keep the default ``127.0.0.1``.
    :param port: port to bind; ``0`` picks a free one.  The port chosen at the
        first :meth:`start` is kept by :meth:`restart`.
    :param project: the ``project`` field of ``message`` events.
    :param ping_interval: Engine.IO ping interval in seconds (see :meth:`set_ping`).
    :param ping_timeout: Engine.IO ping timeout in seconds.
    :param echo_sender: whether a bot receives its own sent messages as
        ``message`` events (if it listens to the room).  Settable later.
    :param max_message_size: largest incoming Engine.IO packet in bytes; a
        larger one closes the connection, as the real (Node) server does.
    :param record_writes: record every ``message`` event as it is written to
        a socket, in :attr:`written` (for delivery checks across faults).
    :param ssl_context: an :class:`ssl.SSLContext` with the server's
        certificate loaded: serve TLS, and :attr:`url` is ``https://...``
        (for TLS and proxy tests).  The TLS handshake runs in the accept loop.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        api_keys: Iterable[str] = ("test-key",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        project: str = "demo",
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        echo_sender: bool = True,
        max_message_size: int = 1_000_000,
        record_writes: bool = False,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        if isinstance(tokens, str) or isinstance(api_keys, str):
            raise TypeError("tokens and api_keys must be iterables of strings, not a string")
        self._tokens: Set[str] = {_check_name("token", t) for t in tokens}
        self._api_keys: Set[str] = {_check_name("api key", k) for k in api_keys}
        self._host = host
        self._port = int(port)
        self._project = project
        self._check_ping(ping_interval, ping_timeout)
        self._ping = (float(ping_interval), float(ping_timeout))
        self._echo_sender = bool(echo_sender)
        self._max_message_size = int(max_message_size)

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on every state change
        self._send_lock = threading.Lock()  # orders message ids with their broadcast
        self._lifecycle = threading.RLock()
        self._gen: Optional[_Generation] = None

        self._clients: Dict[str, _Client] = {}
        self._rooms: Dict[str, Set[str]] = {}
        self._sent: List[SentMessage] = []
        self._requests: List[RequestRecord] = []
        self._rules: Dict[str, _AckRule] = {EVENT_LISTEN: _AckRule(), EVENT_SEND: _AckRule()}
        self._ids = itertools.count(1)
        self._connections = 0
        self._refused = 0
        self._fast_post_many = True  # private switch, used to compare both paths
        # Private switch, set by bench/: handle requests on each socket's reader
        # thread (see _set_dispatch).  Off by default for now: it changes the
        # timing that some fault tests depend on.
        self._inline_requests = False
        self._written: List[WrittenMessage] = []
        self._record_writes = bool(record_writes)
        self._ssl_context = ssl_context
        # The playground's control API (watchers_bot/_control.py) on this port,
        # and the callbacks it gets every event through; see _notify.
        self._observers: List[Callable[[str, Dict[str, Any]], None]] = []
        self._control: Any = None
        self._send_bucket: Optional[TokenBucket] = None
        self._send_hint = True
        self.rate_limited = 0  # sends refused for the rate limit

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Bind and start serving in background threads; returns ``self``.

        Does nothing when already running.  Raises ``OSError`` when the port
        cannot be bound.
        """
        with self._lifecycle:
            if self._gen is not None:
                return self
            gen = _Generation()
            sio = socketio.Server(
                async_mode="threading",
                cors_allowed_origins="*",
                transports=["websocket"],
                logger=False,
                engineio_logger=False,
                client_manager=_Manager(
                    lambda sid: self._on_connected(gen, sid), lambda sid: self._on_gone(gen, sid),
                    self._record_write if self._record_writes else None,
                ),
                ping_interval=self._ping[0],
                ping_timeout=self._ping[1],
                max_http_buffer_size=self._max_message_size,
            )
            sio.on("connect", lambda sid, environ, auth=None: self._on_connect(
                gen, sid, environ, auth))
            sio.on("disconnect", lambda sid, reason=None: None)  # keep it out of the catch-all
            sio.on("*", lambda event, sid, *args: self._observed_event(gen, event, sid, args))
            gen.sio = sio
            self._set_dispatch(gen)
            app = _TrackingApp(self._control_app(socketio.WSGIApp(sio)), gen)

            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self._host, self._port))
                listener.listen(128)
                port = listener.getsockname()[1]
                httpd = _HTTPServer(self._host, port, app, _QuietHandler,
                                   ssl_context=self._ssl_context, fd=listener.fileno())
            finally:
                listener.close()  # werkzeug holds its own duplicate
            httpd.timeout = _SERVE_POLL
            gen.httpd = httpd
            self._port = httpd.port
            gen.thread = threading.Thread(
                target=self._serve, args=(gen,), name=f"watchers-emulator:{self._port}",
                daemon=True,
            )
            gen.thread.start()
            self._gen = gen
            logger.debug("emulator serving on %s", self.url)
            return self

    @staticmethod
    def _serve(gen: _Generation) -> None:
        httpd = gen.httpd
        assert httpd is not None
        try:
            while not gen.stop_serving.is_set():
                httpd.handle_request()  # returns after httpd.timeout when idle
        except Exception:  # pragma: no cover - defensive: never die silently
            logger.exception("emulator accept loop failed")
        finally:
            httpd.server_close()

    def stop(self, *, timeout: float = _JOIN_TIMEOUT) -> None:
        """Disconnect every client, stop serving and release the port.

        Clients get a Socket.IO disconnect (``io server disconnect``), then
        their links are closed.  Every wait is bounded by ``timeout``.
        Idempotent; safe to call from any thread.
        """
        self._shutdown(drop=False, timeout=timeout)

    def _shutdown(self, *, drop: bool, timeout: float) -> None:
        with self._lifecycle:
            gen = self._gen
            if gen is None:
                return
            gen.stopping.set()  # refuses new sockets, releases delayed acks and frozen writers
            self._notify("server", {"state": "stopping"})
            deadline = time.monotonic() + max(timeout, 0.1)
            gen.stop_serving.set()
            if gen.thread is not None:
                gen.thread.join(max(deadline - time.monotonic(), 0.05))
            with self._lock:
                clients = list(self._clients.values())
            if drop:
                for c in clients:
                    self._close_raw(c.raw_sock)
            else:
                for c in clients:
                    self._kick_one(gen, c.sid)
                # close every Engine.IO socket: CLOSE packet, then the writer closes the websocket
                for eio_socket in list(getattr(gen.sio.eio, "sockets", {}).values()):
                    try:
                        eio_socket.close(wait=False, abort=False)
                    except Exception:  # pragma: no cover - already closing
                        logger.debug("closing an engine.io socket failed", exc_info=True)
            # wait (bounded) for the links to end, then cut whatever is left
            self._wait_idle(gen, min(deadline - time.monotonic(), 1.0))
            with gen.active_cond:
                leftovers = list(gen.active)
            for sock in leftovers:
                self._close_raw(sock if isinstance(sock, socket.socket) else None)
            self._wait_idle(gen, deadline - time.monotonic())
            try:
                gen.sio.shutdown()
            except Exception:  # pragma: no cover
                logger.debug("socketio shutdown failed", exc_info=True)
            with self._lock:
                for sid in [s for s, c in self._clients.items() if c.gen is gen]:
                    self._forget(sid)
                self._gen = None
                self._changed.notify_all()
            logger.debug("emulator on port %s stopped", self._port)

    @staticmethod
    def _wait_idle(gen: _Generation, timeout: float) -> bool:
        end = time.monotonic() + max(timeout, 0.0)
        with gen.active_cond:
            while gen.active:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                gen.active_cond.wait(left)
        return True

    def restart(self, down_for: float = 0.0, *, drop: bool = False) -> None:
        """Restart like a deploy, on the same port.

        Every client gets a server-side disconnect (or, with ``drop=True``, its
        link is cut as in a crash), the server stops, stays down ``down_for``
        seconds (connection attempts are refused meanwhile), and starts again.
        Room subscriptions are lost; tokens, API keys, ack settings and the
        :attr:`sent` / :attr:`requests` records are kept.
        """
        if down_for < 0:
            raise ValueError("down_for must be >= 0")
        with self._lifecycle:
            self._shutdown(drop=drop, timeout=_JOIN_TIMEOUT)
            if down_for:
                time.sleep(down_for)
            self.start()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"<Emulator {state}, {len(self.clients)} client(s)>"

    @property
    def running(self) -> bool:
        """Whether the server is up: true from :meth:`start` until :meth:`stop`
        has finished (the port is released when it turns false)."""
        return self._gen is not None

    @property
    def port(self) -> int:
        """The bound port (``0`` before the first :meth:`start` with ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        """The URL to connect to, like ``"http://127.0.0.1:PORT"``; stable across restarts."""
        if not self._port:
            raise RuntimeError("the emulator has no port yet: call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self._port}"

    @property
    def project(self) -> str:
        """The ``project`` field of ``message`` events."""
        return self._project

    def _running_gen(self) -> _Generation:
        gen = self._gen
        if gen is None or gen.stopping.is_set():
            raise RuntimeError("the emulator is not running: call start() first")
        return gen

    # ------------------------------------------------------------------ credentials

    def add_token(self, token: str) -> None:
        """Accept ``token`` as a bearer token for new connections."""
        with self._lock:
            self._tokens.add(_check_name("token", token))

    def revoke_token(self, token: str) -> int:
        """Stop accepting ``token``, and disconnect (server side) every socket
        that authenticated with it.  Returns how many were disconnected."""
        with self._lock:
            self._tokens.discard(token)
            sids = [c.sid for c in self._clients.values() if c.token == token]
        gen = self._gen
        if gen is not None:
            for sid in sids:
                self._kick_one(gen, sid)
        return len(sids)

    def add_api_key(self, key: str) -> None:
        """Accept ``key`` in request payloads."""
        with self._lock:
            self._api_keys.add(_check_name("api key", key))

    def revoke_api_key(self, key: str) -> None:
        """Stop accepting ``key``: later requests carrying it get a 401 error ack."""
        with self._lock:
            self._api_keys.discard(key)

    # ------------------------------------------------------------------ settings

    @property
    def echo_sender(self) -> bool:
        """Whether a bot's own sent messages come back to it as ``message`` events."""
        return self._echo_sender

    @echo_sender.setter
    def echo_sender(self, value: bool) -> None:
        self._echo_sender = bool(value)

    @staticmethod
    def _check_ping(interval: float, timeout: float) -> None:
        for name, value in (("ping interval", interval), ("ping timeout", timeout)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")

    def set_ping(self, interval: float, timeout: float) -> None:
        """Set the Engine.IO ping interval and timeout, in seconds.

        New connections learn them from the OPEN packet; the server applies
        them at once to its own pings and timeout checks.  Short settings
        (``set_ping(1, 1)``) make a half-open link detectable in about two
        seconds, on both sides.  Note: python-engineio advertises the interval
        in whole seconds (0.5 is sent as 0), so use whole seconds.
        """
        self._check_ping(interval, timeout)
        self._ping = (float(interval), float(timeout))
        gen = self._gen
        if gen is not None:
            gen.sio.eio.ping_interval = self._ping[0]
            gen.sio.eio.ping_timeout = self._ping[1]

    def set_ack(
        self,
        event: str,
        mode: str = "normal",
        *,
        delay: float = 0.0,
        error: object = None,
        times: Optional[int] = None,
    ) -> None:
        """Choose how the server answers ``event`` (``"external/send"`` or ``"external/listen"``).

        Modes:

        - ``"normal"``: answer as documented.
        - ``"delay"``: do the work at once (join the room, record and
          broadcast the message) but send the answer ``delay`` seconds later.
          Other requests and other sockets are not held up.
        - ``"withhold"``: do the work, never send an ack.
        - ``"error"``: do nothing; ack with ``error`` (default
          :data:`DEFAULT_ERROR`; a tuple is sent as several ack arguments).
        - ``"exception"``: do nothing and send no ack; emit a NestJS-style
          ``exception`` event to the socket: ``{"status": "error", "message":
          ..., "cause": {"pattern": event, "data": <the request payload>}}``.
          ``error`` may be a message string, or a dict used as the body
          (``cause`` is added when missing).

        ``times``: apply the mode to the next ``times`` requests only, then
        go back to ``"normal"``; ``None`` (default) keeps it until changed.
        """
        if event not in self._rules:
            raise ValueError(f"event must be {EVENT_SEND!r} or {EVENT_LISTEN!r}, not {event!r}")
        if mode not in ACK_MODES:
            raise ValueError(f"mode must be one of {', '.join(ACK_MODES)}, not {mode!r}")
        if not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a number of seconds >= 0, not {delay!r}")
        if mode == "delay" and delay <= 0:
            raise ValueError('mode "delay" needs delay > 0')
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError(f"times must be a positive int or None, not {times!r}")
        if error is not None:
            try:
                json.dumps(error)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"error must be JSON-serializable: {exc}") from None
        with self._lock:
            self._rules[event] = _AckRule(mode, float(delay), error, times)
            gen = self._gen
            if gen is not None:
                self._set_dispatch(gen)

    def set_rate_limit(self, per_second: Optional[float], *, burst: float = 1.0,
                       retry_after: bool = True) -> None:
        """Refuse sends beyond ``per_second`` (bursts of ``burst``) over all sockets, as a
        rate-limited server might: ``{"statusCode": 429, "message": "Too Many Requests",
        "retryAfter": <seconds>}``, nothing posted.  ``retry_after=False`` leaves the hint
        out.  ``None`` turns the limit off (the default).
        """
        if per_second is None:
            with self._lock:
                self._send_bucket = None
            return
        for name, value in (("per_second", per_second), ("burst", burst)):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        with self._lock:
            self._send_bucket = TokenBucket(float(per_second), float(burst))
            self._send_hint = bool(retry_after)

    def _check_rate(self) -> None:
        with self._lock:
            bucket = self._send_bucket
            if bucket is None:
                return
            wait = bucket.wait_for_token(time.monotonic())
            if wait <= 0:
                bucket.take()
                return
            self.rate_limited += 1
        extra = {"retryAfter": round(wait, 3)} if self._send_hint else {}
        raise _Refused(429, "Too Many Requests", **extra)

    def _set_dispatch(self, gen: _Generation) -> None:
        # With _inline_requests, requests are handled on the socket's own
        # reader thread, in order and without a thread start per request
        # (python-socketio's default starts one), so that a benchmark measures
        # the client.  A "delay" rule always needs a thread per request: its
        # ack waits without holding up other requests.
        gen.sio.async_handlers = not self._inline_requests or any(
            r.mode == "delay" for r in self._rules.values()
        )

    # ------------------------------------------------------------------ posting

    def post(self, room_id: str, text: str, *, user_id: str = "human",
             **extra: Any) -> Dict[str, Any]:
        """Post ``text`` in ``room_id`` as a human user.

        Every socket listening to the room gets a ``message`` event built by
        :func:`watchers_bot.protocol.message_payload`; ``extra`` keys go to the
        payload's top level (and may replace standard ones, to test odd
        payloads).  Message ids are increasing integers.  Returns the payload.
        """
        gen = self._running_gen()
        _check_name("room_id", room_id)
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        with self._send_lock:
            payload = message_payload(
                room_id, next(self._ids), text, user_id, self._project, **extra
            )
            gen.sio.emit(EVENT_MESSAGE, payload, to=_ROOM_PREFIX + room_id)
            self._notify("message", {"sid": None, "payload": payload})
        return payload

    def post_many(self, room_id: str, texts: Iterable[str], *, user_id: str = "human") -> int:
        """Post many messages in ``room_id`` as ``user_id``, fast, in order.

        Same payloads as :meth:`post` (without extras), but encoded once and
        written to each listener's socket as pre-built websocket frames in
        large batches, so a benchmark measures the client, not the server.
        Returns the number of messages posted.
        """
        gen = self._running_gen()
        _check_name("room_id", room_id)
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, not {type(text).__name__}")
        if not texts:
            return 0
        encode = _message_encoder(self._project, room_id, user_id)
        with self._send_lock:
            first = next(self._ids)
            self._ids = itertools.count(first + len(texts))
            with self._lock:
                targets = [
                    (c.eio_sid, c.raw_sock, sid)
                    for sid in self._rooms.get(room_id, ())
                    if (c := self._clients.get(sid)) is not None
                ]
            if not targets:
                return len(texts)
            packets = [encode(first + i, text) for i, text in enumerate(texts)]
            if self._fast_post_many and all(raw is not None for _, raw, _ in targets):
                chunks = []
                for start in range(0, len(packets), _BATCH):
                    chunk = packets[start:start + _BATCH]
                    frames = b"".join(
                        _ws_text_frame(("4" + p).encode("utf-8")) for p in chunk[:-1]
                    )
                    chunks.append((frames, chunk[-1]))
                for eio_sid, raw, sid in targets:
                    assert raw is not None  # checked above
                    for n, (frames, last) in enumerate(chunks):
                        on_write = None
                        if self._record_writes:
                            ids = range(first + n * _BATCH,
                                        first + min((n + 1) * _BATCH, len(texts)))
                            on_write = functools.partial(
                                self._record_writes_of, sid, room_id, ids)
                        gen.sio.eio.send_packet(eio_sid, _FrameBatch(raw, frames, last, on_write))
            else:
                for eio_sid, _, sid in targets:
                    for i, p in enumerate(packets):
                        pkt = eio_packet.Packet(eio_packet.MESSAGE, p)
                        if self._record_writes:
                            pkt = _RecordedPacket(p, functools.partial(
                                self._record_write, sid, room_id, first + i))
                        gen.sio.eio.send_packet(eio_sid, pkt)
        return len(texts)

    def push_raw(
        self, event: str, *args: Any, to: Optional[str] = None, room: Optional[str] = None
    ) -> int:
        """Emit ``event`` with arbitrary arguments (e.g. a malformed payload).

        To the socket ``to`` (a sid), to the listeners of ``room`` (a room id),
        or to every connected socket when neither is given.  The arguments go
        out as the event's arguments, as given (none, one, or several).
        Returns the number of sockets addressed.
        """
        gen = self._running_gen()
        if to is not None and room is not None:
            raise ValueError("give to= or room=, not both")
        with self._lock:
            if to is not None:
                if to not in self._clients:
                    raise ValueError(f"no connected client with sid {to!r}")
                count, target = 1, to
            elif room is not None:
                count, target = len(self._rooms.get(room, ())), _ROOM_PREFIX + room
            else:
                count, target = len(self._clients), None
        gen.sio.emit(event, data=tuple(args), to=target)
        return count

    def push_packet(self, encoded: str, *, to: Optional[str] = None) -> int:
        """Send one raw Socket.IO packet, as text, to the socket ``to`` or to everyone.

        ``encoded`` is the Socket.IO part of an Engine.IO message, e.g.
        ``'2["message",{"roomId":'`` (cut short on purpose) or
        ``'2["message",1,2]'``.  Returns the number of sockets addressed.
        """
        gen = self._running_gen()
        if not isinstance(encoded, str):
            raise TypeError("encoded must be a str")
        with self._lock:
            clients = self._select(to)
        for c in clients:
            gen.sio.eio.send_packet(c.eio_sid, eio_packet.Packet(eio_packet.MESSAGE, encoded))
        return len(clients)

    # ------------------------------------------------------------------ records

    @property
    def sent(self) -> List[SentMessage]:
        """Messages bots sent and the emulator accepted, oldest first (a copy)."""
        with self._lock:
            return list(self._sent)

    def _record_write(self, sid: str, room_id: str, message_id: Any) -> None:
        # On a socket's writer thread, as it takes a message packet to write.
        with self._lock:
            self._written.append(WrittenMessage(sid, room_id, message_id, time.monotonic()))

    def _record_writes_of(self, sid: str, room_id: str, message_ids: Iterable[Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self._written.extend(WrittenMessage(sid, room_id, m, now) for m in message_ids)

    @property
    def written(self) -> List[WrittenMessage]:
        """``message`` events written to sockets, in write order (a copy).

        Recorded only with ``Emulator(record_writes=True)`` (empty otherwise):
        see :class:`WrittenMessage` for what "written" means.
        """
        with self._lock:
            return list(self._written)

    def clear_written(self) -> None:
        """Forget the :attr:`written` record."""
        with self._lock:
            self._written.clear()

    def clear_sent(self) -> None:
        """Forget the :attr:`sent` and :attr:`requests` records."""
        with self._lock:
            self._sent.clear()
            self._requests.clear()

    @property
    def requests(self) -> List[RequestRecord]:
        """Every request sockets made, valid or not, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def clients(self) -> List[str]:
        """Sids of the connected sockets, in connection order."""
        with self._lock:
            return list(self._clients)

    def listeners(self, room_id: str) -> Set[str]:
        """Sids of the sockets listening to ``room_id``."""
        with self._lock:
            return set(self._rooms.get(room_id, ()))

    @property
    def connections(self) -> int:
        """Connections accepted since this emulator was created (across restarts)."""
        with self._lock:
            return self._connections

    @property
    def refused(self) -> int:
        """Connection attempts refused (bad or missing token) since creation."""
        with self._lock:
            return self._refused

    def wait_for(
        self, predicate: Callable[[Emulator], bool], timeout: float = 5.0, *, what: str = ""
    ) -> None:
        """Block until ``predicate(self)`` is true; re-checked on every state change.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"emulator: timed out after {timeout:g}s waiting for {what or predicate}"
                    )
                self._changed.wait(min(left, 0.5))

    def wait_for_sent(self, count: int, timeout: float = 5.0) -> List[SentMessage]:
        """Block until at least ``count`` messages were sent; returns all of :attr:`sent`."""
        try:
            self.wait_for(lambda e: len(e._sent) >= count, timeout)
        except TimeoutError:
            got = self.sent
            shown = ", ".join(repr(m.text[:40]) for m in got[-5:])
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} sent "
                f"message(s); got {len(got)}" + (f" (last: {shown})" if got else "")
            ) from None
        return self.sent

    def wait_for_requests(
        self, count: int, event: Optional[str] = None, timeout: float = 5.0
    ) -> List[RequestRecord]:
        """Block until at least ``count`` requests (of ``event``, if given) arrived;
        returns those requests."""

        def matching() -> List[RequestRecord]:
            return [r for r in self._requests if event is None or r.event == event]

        try:
            self.wait_for(lambda e: len(matching()) >= count, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} "
                f"{event or 'request'}(s); got {len(matching())}"
            ) from None
        with self._lock:
            return matching()

    def wait_for_clients(self, count: int, timeout: float = 5.0) -> List[str]:
        """Block until exactly ``count`` sockets are connected; returns their sids.

        ``wait_for_clients(0)`` waits until everyone is gone.
        """
        try:
            self.wait_for(lambda e: len(e._clients) == count, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} connected "
                f"client(s); {len(self.clients)} connected, {self.connections} accepted "
                f"and {self.refused} refused so far"
            ) from None
        return self.clients

    def wait_for_listeners(
        self, room_id: str, count: int = 1, timeout: float = 5.0
    ) -> Set[str]:
        """Block until exactly ``count`` sockets listen to ``room_id``; returns their sids."""
        try:
            self.wait_for(lambda e: len(e._rooms.get(room_id, ())) == count, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"emulator: timed out after {timeout:g}s waiting for {count} listener(s) "
                f"of room {room_id!r}; it has {len(self.listeners(room_id))}"
            ) from None
        return self.listeners(room_id)

    # ------------------------------------------------------------------ faults

    def _select(self, sid: Optional[str]) -> List[_Client]:
        if sid is None:
            return list(self._clients.values())
        client = self._clients.get(sid)
        if client is None:
            raise ValueError(f"no connected client with sid {sid!r}")
        return [client]

    def drop(self, sid: Optional[str] = None) -> int:
        """Cut the TCP link of one socket (or of all), with no Socket.IO or
        Engine.IO close: the client sees a transport error and should
        reconnect.  Returns how many links were cut.

        When it returns, the server has seen the links go (the sids are gone
        from :attr:`clients` and :meth:`listeners`; bounded wait of 2 s), so a
        following ``wait_for_listeners`` waits for the reconnected client.
        """
        self._running_gen()
        with self._lock:
            clients = self._select(sid)
        for c in clients:
            self._close_raw(c.raw_sock)
        gone = {c.sid for c in clients}
        try:
            self.wait_for(lambda e: not gone & e._clients.keys(), _JOIN_TIMEOUT)
        except TimeoutError:  # pragma: no cover - the server reads EOF at once
            logger.debug("dropped links still registered after %ss", _JOIN_TIMEOUT)
        return len(clients)

    def kick(self, sid: Optional[str] = None) -> int:
        """Disconnect one socket (or all) from the server side: the client gets
        ``io server disconnect``, which Socket.IO clients do not retry by
        themselves.  Returns how many were disconnected."""
        gen = self._running_gen()
        with self._lock:
            clients = self._select(sid)
        for c in clients:
            self._kick_one(gen, c.sid)
        return len(clients)

    def freeze(self, sid: Optional[str] = None, duration: Optional[float] = None) -> int:
        """Stop sending anything to one socket (or all) while the TCP link stays
        open: a half-open link as the client sees it.  Requests are still
        read.  Lasts ``duration`` seconds, or until :meth:`thaw` or stop.
        With short :meth:`set_ping` settings the client should notice the
        missing pings within interval + timeout; so does the server.
        Returns how many sockets were frozen."""
        gen = self._running_gen()
        if duration is not None and duration < 0:
            raise ValueError("duration must be >= 0")
        with self._lock:
            clients = self._select(sid)
        end = None if duration is None else time.monotonic() + duration
        for c in clients:
            c.thaw.clear()
            c.frozen = True

            def release(c: _Client = c) -> bool:
                wait = 0.05 if end is None else min(0.05, max(end - time.monotonic(), 0))
                c.thaw.wait(wait)
                return (
                    c.thaw.is_set()
                    or gen.stopping.is_set()
                    or (end is not None and time.monotonic() >= end)
                )

            gen.sio.eio.send_packet(c.eio_sid, _Stall(release))
        return len(clients)

    def thaw(self, sid: Optional[str] = None) -> None:
        """End a :meth:`freeze` of one socket (or of all); queued packets then go out."""
        with self._lock:
            clients = list(self._clients.values()) if sid is None else (
                [self._clients[sid]] if sid in self._clients else []
            )
        for c in clients:
            c.frozen = False
            c.thaw.set()

    @staticmethod
    def _close_raw(sock: Optional[socket.socket]) -> None:
        if sock is None:
            return
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _kick_one(gen: _Generation, sid: str) -> None:
        try:
            gen.sio.disconnect(sid)
        except Exception:  # pragma: no cover - the socket went away meanwhile
            logger.debug("kick of %s failed", sid, exc_info=True)

    # ------------------------------------------------------------------ observers

    def _notify(self, kind: str, data: Dict[str, Any]) -> None:
        # Observers must not block (the playground's only queues); a failing
        # one is logged and never breaks the server.
        for observer in list(self._observers):
            try:
                observer(kind, data)
            except Exception:  # pragma: no cover - defensive
                logger.exception("emulator observer failed on %s", kind)

    def _observed_event(
        self, gen: _Generation, event: str, sid: str, args: Tuple[Any, ...]
    ) -> Any:
        started = time.monotonic()
        answer = self._on_event(gen, event, sid, args)
        if self._observers:
            with self._lock:  # the mode this request got (the latest of this sid and event)
                mode = next((r.mode for r in reversed(self._requests)
                             if r.sid == sid and r.event == event), None)
            self._notify("request", {
                "event": event, "sid": sid, "mode": mode,
                "payload": mask_secrets(args[0] if args else None),
                "acked": answer is not gen.sio.not_handled,
                "ack": None if answer is gen.sio.not_handled else mask_secrets(answer),
                "ack_ms": (time.monotonic() - started) * 1000.0,
            })
        return answer

    def _control_app(self, app: Any) -> Any:
        from ._control import control_for

        return control_for(self).wrap(app)

    # ------------------------------------------------------------------ server side

    def _on_connect(
        self, gen: _Generation, sid: str, environ: Mapping[str, Any], auth: Any
    ) -> Any:
        if gen.stopping.is_set():
            raise socketio.exceptions.ConnectionRefusedError("Server is shutting down")
        bearer = auth.get("bearer") if isinstance(auth, Mapping) else None
        with self._lock:
            if not isinstance(bearer, str) or not bearer:
                self._refused += 1
                self._changed.notify_all()
                logger.debug("refused %s: no bearer token", sid)
                raise socketio.exceptions.ConnectionRefusedError(
                    'Unauthorized: missing bearer token (auth must be {"bearer": <token>})'
                )
            if bearer not in self._tokens:
                self._refused += 1
                self._changed.notify_all()
                logger.debug("refused %s: invalid bearer token", sid)
                raise socketio.exceptions.ConnectionRefusedError(
                    "Unauthorized: invalid bearer token"
                )
            eio_sid = gen.sio.manager.eio_sid_from_sid(sid, _NAMESPACE)
            gen.pending[sid] = (eio_sid, bearer, environ.get("werkzeug.socket"))
        return True

    def _on_connected(self, gen: _Generation, sid: str) -> None:
        with self._lock:
            entry = gen.pending.pop(sid, None)
            if entry is None:
                return
            eio_sid, token, raw = entry
            self._clients[sid] = _Client(sid, eio_sid, token, raw, gen)
            self._connections += 1
            self._changed.notify_all()
        logger.debug("client %s connected", sid)
        self._notify("connect", {"sid": sid})

    def _on_gone(self, gen: _Generation, sid: str) -> None:
        with self._lock:
            gen.pending.pop(sid, None)
            if self._forget(sid):
                logger.debug("client %s disconnected", sid)
                self._notify("disconnect", {"sid": sid})
            self._changed.notify_all()

    def _forget(self, sid: str) -> bool:
        client = self._clients.pop(sid, None)
        if client is None:
            return False
        if client.frozen:
            # a half-open link stays silent to the end: nothing queued may leak out
            self._close_raw(client.raw_sock)
        client.thaw.set()
        for room_id in client.rooms:
            members = self._rooms.get(room_id)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self._rooms[room_id]
        return True

    def _take_rule(self, event: str) -> _AckRule:
        rule = self._rules.get(event)
        if rule is None:
            return _AckRule()
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._rules[event] = _AckRule()
        return attrs.evolve(rule)

    def _on_event(self, gen: _Generation, event: str, sid: str, args: Tuple[Any, ...]) -> Any:
        """Every client event lands here (python-socketio's catch-all handler).

        Never raises: a failure is logged (masked) and answered as an error ack.
        """
        payload = args[0] if args else None
        try:
            with self._lock:
                rule = self._take_rule(event) if event in self._rules else None
                self._requests.append(RequestRecord(
                    event, sid, mask_secrets(payload), rule.mode if rule else None,
                    time.monotonic(),
                ))
                self._changed.notify_all()
            if rule is None:
                logger.debug("ignored event %r from %s", event, sid)
                return gen.sio.not_handled
            if rule.mode == "error":
                return dict(DEFAULT_ERROR) if rule.error is None else rule.error
            if rule.mode == "exception":
                gen.sio.emit(EVENT_EXCEPTION, self._exception_body(event, payload, rule),
                             to=sid)
                return gen.sio.not_handled
            answer: Optional[Dict[str, Any]]
            try:
                if event == EVENT_LISTEN:
                    answer = self._listen(gen, sid, payload)
                else:
                    self._check_rate()
                    self._send(gen, sid, payload)
                    answer = None
            except _Refused as refused:
                answer = refused.answer()
            if rule.mode == "withhold":
                return gen.sio.not_handled
            if rule.mode == "delay" and gen.stopping.wait(rule.delay):
                return gen.sio.not_handled  # stopped meanwhile: the socket is gone
            return answer
        except Exception as exc:
            logger.error(
                "emulator: %s handler failed for %s (payload %r): %s: %s",
                event, sid, mask_secrets(payload), type(exc).__name__, exc,
            )
            return dict(DEFAULT_ERROR)

    @staticmethod
    def _exception_body(event: str, payload: Any, rule: _AckRule) -> Dict[str, Any]:
        cause = {"pattern": event, "data": payload}
        if isinstance(rule.error, Mapping):
            body = dict(rule.error)
            body.setdefault("cause", cause)
            return body
        message = rule.error if isinstance(rule.error, str) else "Internal server error"
        return {"status": "error", "message": message, "cause": cause}

    def _check_request(self, payload: Any, fields: Tuple[str, ...]) -> Dict[str, str]:
        if not isinstance(payload, Mapping):
            raise _Refused(
                400, f"payload must be an object with {', '.join(fields)}, "
                f"not {type(payload).__name__}"
            )
        for field in fields:
            value = payload.get(field)
            if not isinstance(value, str) or not value:
                problem = "is missing" if value is None else "must be a non-empty string"
                raise _Refused(400, f"{field} {problem}")
        with self._lock:
            if payload["apiKey"] not in self._api_keys:
                raise _Refused(401, "Unauthorized: invalid apiKey")
        return {field: payload[field] for field in fields}

    def _listen(self, gen: _Generation, sid: str, payload: Any) -> Dict[str, Any]:
        request = self._check_request(payload, ("roomId", "apiKey"))
        room_id = request["roomId"]
        gen.sio.enter_room(sid, _ROOM_PREFIX + room_id)
        with self._lock:
            client = self._clients.get(sid)
            if client is None:
                raise _Refused(400, "socket is not connected")
            client.rooms.add(room_id)
            self._rooms.setdefault(room_id, set()).add(sid)
            self._changed.notify_all()
        logger.debug("%s listens to %r", sid, room_id)
        return {"status": "ok", "roomId": room_id}

    def _send(self, gen: _Generation, sid: str, payload: Any) -> None:
        request = self._check_request(payload, ("roomId", "apiKey", "userId", "text"))
        room_id, text, user_id = request["roomId"], request["text"], request["userId"]
        with self._send_lock:
            msg_id = next(self._ids)
            with self._lock:
                self._sent.append(SentMessage(
                    room_id, text, user_id, sid, mask_secrets(payload), time.monotonic(), msg_id,
                ))
                self._changed.notify_all()
                if self._observers:
                    self._notify("message", {"sid": sid, "payload": message_payload(
                        room_id, msg_id, text, user_id, self._project)})
                # Nobody to tell: skip building and encoding a broadcast that
                # reaches no socket (a socket still waiting for its listen ack
                # is not owed this message).
                listeners = self._rooms.get(room_id)
                audience = bool(listeners) and (self._echo_sender or listeners != {sid})
            if audience:
                message = message_payload(room_id, msg_id, text, user_id, self._project)
                gen.sio.emit(
                    EVENT_MESSAGE, message, to=_ROOM_PREFIX + room_id,
                    skip_sid=None if self._echo_sender else sid,
                )
        return None
