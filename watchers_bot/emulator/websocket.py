"""The emulator's websocket for plain (``ws://``) connections.

python-engineio's threading driver wraps simple-websocket, which reads each
socket on a thread of its own and hands every message to the request's thread
through a list and an Event, parses frames with wsproto, and has the engine's
writer thread frame and write one packet at a time, each a thread hand-off
away.  That was about half the emulator's CPU per request, and the hand-offs
made a pipelining client wait: the emulator, not the client, was the limit.
This wrapper has the same interface (``__call__``, ``wait``, ``send``,
``close``) and:

- reads on the request's own thread (the one that waits for the next message),
  64 KiB at a time, with the frame reader of
  :mod:`watchers_bot.protocol.framing` (the one the client uses);
- writes what the request's thread answers itself (acks, the answer to a
  connect) without the engine's queue and writer thread while nothing waits
  in that queue, a burst at a time (the engine socket's ``send`` is wrapped);
- writes every packet of the batch the engine's writer took from its queue in
  one system call (the writer's ``poll()`` is counted); pre-framed messages
  (:class:`Frames`, from ``post_many``) go the same way, in queue order;
- makes every write under one lock, in the order the packets were made;
- refuses a message over the server's ``max_http_buffer_size`` while it is
  being assembled (close 1009), a client frame that is not masked or sets
  reserved bits (1002) and text that is not UTF-8 (1007), as npm's ``ws`` does;
- negotiates no extension (npm's socket.io server has permessage-deflate off).

Two threads use the socket: the request's (reads, its own answers, control
replies) and the engine's writer (everything queued: pings, broadcasts from
other sockets, posts, a freeze, which holds the request's answers too).
werkzeug closes it after the request ends, which is after the engine joined
its writer, so no thread is inside the socket then.  TLS
connections keep upstream's wrapper (see ``server.py``).  A peer that is gone
ends ``wait()`` with None and makes ``send()`` raise ``OSError``, as upstream's
wrapper does; ``close()`` never raises (the writer calls it outside any try).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import logging
import socket
import struct
import threading
from typing import Any, Callable, Deque, Dict, List, Optional, Union

from ..protocol.framing import (
    WS_BINARY,
    WS_CLOSE,
    WS_CONTINUATION,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    ws_frame,
    ws_frame_at,
    ws_text_frame,
    ws_unmask,
)
from .deps import SocketIsClosedError
from .state import close_raw

__all__ = ["CLOSE_GRACE", "Frames", "WebSocket"]

logger = logging.getLogger("watchers_bot.emulator")

READ_SIZE = 65536
# Answers framed on the request's thread are written when it is about to block
# for more input, or every this many: the write call is a small share of a
# burst, and the client has its first answers while the rest is handled.
DIRECT_BATCH = 32
#: How long a client has to answer the server's close frame before its link is cut.
CLOSE_GRACE = 0.5
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_NOT_UTF8, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009


class Frames(bytes):
    """Websocket frames built already: ``send()`` writes them as they are."""


class WebSocket:
    """One plain websocket connection of the emulator (engineio's ``_async['websocket']``)."""

    def __init__(self, handler: Callable[["WebSocket"], Any], server: Any,
                 **_kwargs: Any) -> None:
        self.app = handler
        self.connected = False
        self._limit: Optional[int] = getattr(server, "max_http_buffer_size", None)
        self._lock = threading.Lock()  # writes, in order
        self._conn: Optional[socket.socket] = None
        self._reader: Optional[int] = None  # the request's thread ident
        self._writer: Optional[int] = None  # the engine writer's thread ident
        self._batch = 0  # packets of the writer's batch not yet sent
        self._queued = 0  # packets put in the engine's queue, not yet sent by its writer
        self._out: List[bytes] = []  # frames made, not yet written
        self._read_done = threading.Event()  # wait() has seen the end
        self._buf = b""
        self._pos = 0
        self._inbox: Deque[Union[str, bytes]] = collections.deque()
        self._parts: List[bytes] = []
        self._opcode = 0
        self._size = 0

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        sock = environ.get("werkzeug.socket")
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
        if not isinstance(sock, socket.socket) or not key:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"a websocket upgrade (on werkzeug) was expected\n"]
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
            start_response("426 Upgrade Required", [("Sec-WebSocket-Version", "13")])
            return [b""]
        self._conn = sock
        self._reader = threading.get_ident()
        engine: Any = getattr(self.app, "__self__", None)  # the engine socket
        if callable(getattr(engine, "poll", None)) and callable(getattr(engine, "send", None)):
            engine.poll = self._counted(engine.poll)
            engine.send = self._direct(engine, engine.send)
        accept = base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest())
        self.connected = True
        with self._lock:
            self._out.append(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                             + b"\r\n\r\n")
            self._flush()
        if self.connected:
            self.app(self)
        # werkzeug must not write a response on an upgraded socket: the
        # emulator's request handler takes this as "close the connection"
        raise ConnectionError()

    # ------------------------------------------------------------------ reading

    def wait(self) -> Optional[Union[str, bytes]]:
        """The next message, or None once the connection has ended."""
        while not self._inbox:
            if not self.connected:
                self._read_done.set()
                return None
            buf = self._buf
            frame = ws_frame_at(buf, self._pos)
            if frame is None or frame[2] > len(buf):
                if self._out:  # answers made on this thread: out before it blocks
                    with self._lock:
                        if self.connected:
                            self._flush()
                if not self._fill():
                    self.connected = False
                continue
            b1, start, end, masked = frame
            self._pos = end
            if not masked or b1 & 0x70:
                self._refuse(CLOSE_PROTOCOL, "frames must be masked, with no reserved bits")
                continue
            self._frame(b1, ws_unmask(buf[start:end], buf[start - 4:start]))
        return self._inbox.popleft()

    def _fill(self) -> bool:
        """Read more into the buffer; False when the peer is gone."""
        assert self._conn is not None  # set before the handler runs
        try:
            data = self._conn.recv(READ_SIZE)
        except OSError:  # reset, or cut by the emulator: the link is over
            logger.debug("reading a websocket failed", exc_info=True)
            return False
        if not data:
            return False
        self._buf = self._buf[self._pos:] + data
        self._pos = 0
        return True

    def _frame(self, b1: int, payload: bytes) -> None:
        opcode = b1 & 0x0F
        if opcode >= WS_CLOSE:  # control frames: never fragmented, at most 125 bytes
            if not b1 & 0x80 or len(payload) > 125:
                self._refuse(CLOSE_PROTOCOL, "bad control frame")
            elif opcode == WS_PING:
                self._reply(ws_frame(WS_PONG, payload))
            elif opcode == WS_CLOSE:
                self._reply(ws_frame(WS_CLOSE, payload[:2] if len(payload) >= 2 else b""))
                self.connected = False
            elif opcode != WS_PONG:
                self._refuse(CLOSE_PROTOCOL, f"unknown opcode {opcode}")
            return
        if (opcode == WS_CONTINUATION) != bool(self._parts) or opcode not in (
                WS_CONTINUATION, WS_TEXT, WS_BINARY):
            self._refuse(CLOSE_PROTOCOL, "unexpected frame")
            return
        if opcode != WS_CONTINUATION:
            self._opcode = opcode
        self._size += len(payload)
        if self._limit is not None and self._size > self._limit:
            self._refuse(CLOSE_TOO_BIG, "message is too big")
            return
        self._parts.append(payload)
        if not b1 & 0x80:
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts, self._size = [], 0
        if self._opcode == WS_BINARY:
            self._inbox.append(data)
            return
        try:
            self._inbox.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            self._refuse(CLOSE_NOT_UTF8, "text is not UTF-8")

    def _refuse(self, code: int, reason: str) -> None:
        logger.debug("closing a websocket: %s (%d)", reason, code)
        self._reply(ws_frame(WS_CLOSE, struct.pack("!H", code) + reason.encode()))
        self.connected = False

    def _reply(self, frame: bytes) -> None:
        with self._lock:
            if self.connected:
                self._out.append(frame)
                self._flush()

    # ------------------------------------------------------------------ writing

    def _counted(self, poll: Callable[[], List[Any]]) -> Callable[[], List[Any]]:
        """The writer's ``poll()``, remembering how many packets it returned."""
        def counted() -> List[Any]:
            packets = poll()
            self._writer = threading.get_ident()
            # a packet that holds the writer (a freeze) is written only with
            # what came before it already out
            held = any(getattr(p, "holds_writer", False) for p in packets)
            self._batch = 0 if held else len(packets)
            return packets
        return counted

    def _direct(self, engine: Any, send: Callable[[Any], None]) -> Callable[[Any], None]:
        """The engine socket's ``send(packet)``: a packet made on the request's own
        thread (an ack, an answer to a connect) while nothing waits in the engine's
        queue is framed at once and written before that thread next blocks to read,
        so a burst of requests is answered in one write and no thread hand-off; any
        other goes through upstream's queue and writer, counted until written."""
        def direct(pkt: Any) -> None:
            if threading.get_ident() == self._reader and not getattr(pkt, "holds_writer", False):
                # As upstream's send() does, and outside the lock: a client gone
                # silent is closed here, and that close sends through this function.
                try:
                    if not engine.check_ping_timeout():
                        return
                except SocketIsClosedError:  # closed since engineio looked it up
                    return
                with self._lock:
                    if not self._queued and self.connected:
                        self._out.append(_framed(pkt.encode()))
                        if len(self._out) >= DIRECT_BATCH:
                            self._flush()
                        return
                    self._queued += 1
            else:
                with self._lock:
                    self._queued += 1
            send(pkt)
        return direct

    def send(self, message: Union[str, bytes]) -> None:
        """Frame ``message``; the writer's frames go out with the last packet of its batch."""
        frame = _framed(message)
        with self._lock:
            if not self.connected:
                raise OSError("the websocket is closed")
            self._out.append(frame)
            if threading.get_ident() == self._writer:
                self._queued = max(0, self._queued - 1)
                self._batch -= 1
                if self._batch > 0:
                    return  # the writer comes back with the next packet of its batch
            if not self._flush():
                raise OSError("the websocket's peer is gone")

    def close(self) -> None:
        """Write what is queued and a close frame, and give the client
        :data:`CLOSE_GRACE` to answer it before the link is cut; never raises."""
        with self._lock:
            if not self.connected:
                return
            self._out.append(ws_frame(WS_CLOSE, struct.pack("!H", CLOSE_NORMAL)))
            self._flush()
            self.connected = False
        # The request's thread may be inside recv(): the client's close frame
        # (or its end of the link) wakes it; a client that sends neither is cut.
        if threading.get_ident() == self._reader or self._conn is None:
            return
        if not self._read_done.wait(CLOSE_GRACE):
            close_raw(self._conn)

    def _flush(self) -> bool:
        """Write the frames made (under ``_lock``); False if the peer is gone."""
        data = b"".join(self._out)
        self._out.clear()
        assert self._conn is not None  # set before anything is written
        try:
            self._conn.sendall(data)
        except OSError:  # reset, or cut by the emulator: the peer is gone
            logger.debug("writing to a websocket failed", exc_info=True)
            self.connected = False
            return False
        return True


def _framed(message: Union[str, bytes]) -> bytes:
    """``message`` as one websocket frame (:class:`Frames` are frames already)."""
    if type(message) is Frames:
        return message
    if isinstance(message, bytes):
        return ws_frame(WS_BINARY, message)
    return ws_text_frame(str(message).encode("utf-8"))
