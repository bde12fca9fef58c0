"""The emulator's plumbing: python-socketio over werkzeug, one generation per run.

With :mod:`.generation` and :mod:`.packets`, the modules of the emulator that
drive python-socketio, python-engineio and werkzeug (imported through
:mod:`.deps`; the gateway only raises python-socketio's connect refusal).
:class:`Server` binds, serves in a background thread, and stops
(bounded, every link ended); :meth:`Server.start` makes a new
:class:`Generation` each time, so a restart never mixes sockets of two runs.
Events go to a :class:`Handlers` (the gateway); nothing here knows the
Watchers protocol.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Tuple

from . import fastpath
from .deps import (
    SimpleWebSocketWSGI,
    SocketIsClosedError,
    ThreadedWSGIServer,
    WSGIRequestHandler,
    socketio,
)
from .fastpath import FastServer
from .generation import Generation, Manager
from .packets import ServerPacket
from .state import close_raw
from .websocket import CLOSE_GRACE, Frames, WebSocket

__all__ = ["JOIN_TIMEOUT", "Handlers", "Server"]

logger = logging.getLogger("watchers_bot.emulator")

JOIN_TIMEOUT = 2.0
_SERVE_POLL = 0.05  # how often the accept loop checks for stop()


class Handlers(Protocol):
    """What the server calls (the gateway implements it)."""

    def on_connect(self, gen: "Generation", sid: str, environ: Mapping[str, Any],
                   auth: Any) -> Any: ...

    def on_connected(self, gen: "Generation", sid: str) -> None: ...

    def on_gone(self, gen: "Generation", sid: str) -> None: ...

    def on_event(self, gen: "Generation", event: str, sid: str,
                 args: Tuple[Any, ...]) -> Any: ...


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


class _LentSocket:
    """A connection's socket as simple-websocket is given it: its reads and writes,
    but not its close, which werkzeug makes once every thread has let go of it
    (:meth:`_QuietWebSocket.__call__`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.recv = sock.recv
        self.send = sock.send
        self.fileno = sock.fileno

    def close(self) -> None:
        """Nothing: simple-websocket's reader calls it as it ends, while python-engineio's
        writer may still be inside the socket (see :class:`_QuietWebSocket`)."""


class _QuietWebSocket(SimpleWebSocketWSGI):  # type: ignore[misc]  # upstream is untyped
    """python-engineio's websocket wrapper, whose close() does not raise when the
    peer is already gone, and whose socket is closed only once no thread uses it.

    Three threads use a websocket's socket: simple-websocket's reader (which also
    answers the client's close frame), python-engineio's writer and werkzeug's
    request thread, which closes the socket when the session ends.  Upstream, the
    reader and werkzeug each close it whatever the others are doing: a thread
    still inside an SSL call then writes on a descriptor number that the next
    connection's socket may already have, and its bytes land in that connection's
    TLS handshake (the client fails it with UNEXPECTED_MESSAGE; about 1 wss://
    connect in 800).  Here the reader's close does nothing, the writer is joined
    by python-engineio, and the reader is joined (woken, if it must be, by an
    OS-level shutdown, which leaves the descriptor allocated) before werkzeug
    closes the socket.
    """

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        sock = environ.get("werkzeug.socket")
        if not isinstance(sock, socket.socket):
            return super().__call__(environ, start_response)
        # simple-websocket's own copy of the environ; the rest of the emulator
        # (fault injection: close_raw) still sees the socket itself
        lent = dict(environ)
        lent["werkzeug.socket"] = _LentSocket(sock)
        # not `_sock` or `socket`: python-engineio would set a timeout on those
        self._frames_to = sock
        try:
            return super().__call__(lent, start_response)
        finally:
            self._let_go(sock)

    def _let_go(self, sock: socket.socket) -> None:
        """Until simple-websocket's reader is done with ``sock`` (bounded)."""
        reader = getattr(getattr(self, "ws", None), "thread", None)
        if not isinstance(reader, threading.Thread) or reader is threading.current_thread():
            return
        reader.join(CLOSE_GRACE)  # ends by itself once the close handshake is over
        if reader.is_alive():  # the peer did not close: wake its blocking read
            close_raw(sock)
            reader.join(JOIN_TIMEOUT)
        if reader.is_alive():  # pragma: no cover - a read that a shutdown did not end
            logger.warning("emulator: a websocket reader outlived its connection")

    def send(self, message: Any) -> None:
        """As upstream's, but pre-built frames (:class:`.websocket.Frames`) are written
        as they are (on the writer's thread, the only one that writes frames here)."""
        if type(message) is not Frames:
            super().send(message)
            return
        sock = getattr(self, "_frames_to", None)
        if sock is None:  # pragma: no cover - only werkzeug's sockets are served
            raise OSError("no socket to write pre-built frames on")
        sock.sendall(message)  # an OSError ends the writer, as upstream's send would

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            logger.debug("closing a websocket whose peer is gone", exc_info=True)


def _drop_sends_after_close(engine: Any) -> None:
    """Make the engine socket's ``send()`` drop a packet for a session that closed.

    python-engineio's ``send_packet`` looks the session up, then sends; a session
    closed in between (a drop, a kick, the client gone) makes upstream's ``send()``
    raise ``SocketIsClosedError`` in whatever thread answered, often a handler's
    thread after a delay fault, where it is an unhandled thread exception.  The
    packet had nowhere to go, as for a session that was already gone."""
    send = getattr(engine, "send", None)
    if not callable(send):  # pragma: no cover - an engineio without per-socket send
        return

    def send_unless_closed(pkt: Any) -> None:
        try:
            send(pkt)
        except SocketIsClosedError:
            logger.debug("a packet for a session that closed was dropped")

    engine.send = send_unless_closed


class _WebSockets:
    """python-engineio's ``_async['websocket']`` of one emulator server: the emulator's
    own :class:`.websocket.WebSocket` for a plain connection while the fast path is on,
    upstream's wrapper (:class:`_QuietWebSocket`) for TLS and with the fast path off."""

    def __init__(self, handler: Callable[[Any], Any], server: Any, **kwargs: Any) -> None:
        self._args = (handler, server)
        self._kwargs = kwargs

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        _drop_sends_after_close(getattr(self._args[0], "__self__", None))
        sock = environ.get("werkzeug.socket")
        plain = isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        if plain and fastpath.enabled():
            return WebSocket(*self._args)(environ, start_response)
        return _QuietWebSocket(*self._args, **self._kwargs)(environ, start_response)


class _HTTPServer(ThreadedWSGIServer):
    """werkzeug's threaded server, logging to our logger at DEBUG only."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("http %s: " + message.rstrip(), type, *args)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("http request from %s failed", client_address, exc_info=True)


class _TrackingApp:
    """WSGI wrapper remembering every open connection's socket, so stop() can end
    them; while stopping, a new request gets a 503 (not an auth refusal)."""

    def __init__(self, app: Any, gen: Generation) -> None:
        self._app = app
        self._gen = gen

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        gen = self._gen
        if gen.stopping.is_set():
            start_response("503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("Retry-After", "1")])
            return [b"the emulator is restarting or shutting down\n"]
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


class Server:
    """Binds, serves and stops; one :class:`Generation` per run."""

    def __init__(self, *, host: str, port: int, ping: Tuple[float, float],
                 max_message_size: int, ssl_context: Optional[ssl.SSLContext]) -> None:
        self.host = host
        self.port = int(port)
        self.ping = ping
        self.max_message_size = int(max_message_size)
        self.ssl_context = ssl_context
        self.lifecycle = threading.RLock()
        self.gen: Optional[Generation] = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the emulator has no port yet: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    def running_gen(self) -> Generation:
        gen = self.gen
        if gen is None or gen.stopping.is_set():
            raise RuntimeError("the emulator is not running: call start() first")
        return gen

    def start(self, handlers: Handlers, *, async_handlers: bool,
              wrap_app: Callable[[Any], Any]) -> Optional[Generation]:
        """Bind and serve in a background thread; None when already running.
        ``OSError`` when the port cannot be bound."""
        with self.lifecycle:
            if self.gen is not None:
                return None
            gen = Generation()
            sio = FastServer(
                fast_handler=lambda event, sid, args: handlers.on_event(gen, event, sid, args),
                async_mode="threading",
                cors_allowed_origins="*",
                transports=["websocket"],
                logger=False,
                engineio_logger=False,
                client_manager=Manager(
                    lambda sid: handlers.on_connected(gen, sid),
                    lambda sid: handlers.on_gone(gen, sid),
                ),
                ping_interval=self.ping[0],
                ping_timeout=self.ping[1],
                max_http_buffer_size=self.max_message_size,
                async_handlers=async_handlers,
                serializer=ServerPacket,
            )
            sio.on("connect", lambda sid, environ, auth=None: handlers.on_connect(
                gen, sid, environ, auth))
            sio.on("disconnect", lambda sid, reason=None: None)  # keep it out of the catch-all
            sio.on("*", lambda event, sid, *args: handlers.on_event(gen, event, sid, args))
            # per server, not upstream's module-wide driver table
            sio.eio._async = dict(sio.eio._async, websocket=_WebSockets)
            gen.sio = sio
            app = _TrackingApp(wrap_app(socketio.WSGIApp(sio)), gen)

            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self.host, self.port))
                listener.listen(128)
                port = listener.getsockname()[1]
                httpd = _HTTPServer(self.host, port, app, _QuietHandler,
                                    ssl_context=self.ssl_context, fd=listener.fileno())
            finally:
                listener.close()  # werkzeug holds its own duplicate
            httpd.timeout = _SERVE_POLL
            gen.httpd = httpd
            self.port = httpd.port
            gen.thread = threading.Thread(
                target=self._serve, args=(gen,), name=f"watchers-emulator:{self.port}",
                daemon=True,
            )
            gen.thread.start()
            self.gen = gen
            logger.debug("emulator serving on %s", self.url)
            return gen

    @staticmethod
    def _serve(gen: Generation) -> None:
        httpd = gen.httpd
        assert httpd is not None
        try:
            while not gen.stop_serving.is_set():
                httpd.handle_request()  # returns after httpd.timeout when idle
        except Exception:  # pragma: no cover - defensive: never die silently
            logger.exception("emulator accept loop failed")
        finally:
            httpd.server_close()

    def shutdown(self, gen: Generation, sockets: Callable[[], Any], *, drop: bool,
                 timeout: float) -> None:
        """End ``gen`` (``stopping`` already set): every client kicked (or, with
        ``drop``, its link cut), every link ended, the port released; bounded
        by ``timeout``.  ``sockets()`` lists ``(sid, raw socket)`` of its clients."""
        deadline = time.monotonic() + max(timeout, 0.1)
        gen.stop_serving.set()
        if gen.thread is not None:
            gen.thread.join(max(deadline - time.monotonic(), 0.05))
        clients = list(sockets())
        if drop:
            for _, raw in clients:
                close_raw(raw)
        else:
            for sid, _ in clients:
                gen.kick(sid)
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
            close_raw(sock if isinstance(sock, socket.socket) else None)
        self._wait_idle(gen, deadline - time.monotonic())
        try:
            gen.sio.shutdown()
        except Exception:  # pragma: no cover
            logger.debug("socketio shutdown failed", exc_info=True)
        self.gen = None
        logger.debug("emulator on port %s stopped", self.port)

    @staticmethod
    def _wait_idle(gen: Generation, timeout: float) -> bool:
        end = time.monotonic() + max(timeout, 0.0)
        with gen.active_cond:
            while gen.active:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                gen.active_cond.wait(left)
        return True

    def set_ping(self, interval: float, timeout: float) -> None:
        self.ping = (interval, timeout)
        gen = self.gen
        if gen is not None:
            gen.sio.eio.ping_interval = interval
            gen.sio.eio.ping_timeout = timeout
