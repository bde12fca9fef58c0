"""The python-socketio client, with incoming packets dispatched on the read thread.

python-engineio starts a new thread for every incoming packet.  That loses
the order in which the server sent messages and costs a thread start per
message.  Here the packets that are safe to handle inline (Socket.IO CONNECT,
EVENT, ACK and CONNECT_ERROR) run on the read thread itself, in order; the
rest (DISCONNECT, whose handler joins the read thread, and binary packets)
keep upstream's thread.

The seam is ``engineio.Client.start_background_task`` (public) as called by
``engineio.Client._trigger_event(..., run_async=True)``, and
``socketio.Client._engineio_client_class`` (private), which picks the Engine.IO
client class.  ``tests/test_transport.py`` fails loudly if a release moves
either; setup.cfg pins the tested range.

The fast path (see BENCHMARKS.md for the profiles behind it), used only with
the python-socketio/engineio versions in that range (``FAST_PATH``):

* ``_WebSocket.recv`` parses websocket frames from a read buffer of its own:
  websocket-client asks the kernel for each frame's header, length and payload
  separately and checks UTF-8 in pure Python (its C accelerator is optional),
  which was most of the receive time.  ``bytes.decode`` still rejects invalid
  UTF-8.
* ``_InlineEngineIOClient._receive_packet`` hands Engine.IO MESSAGE packets
  straight to the Socket.IO client, without the logging and event-trigger
  layers, and ``SocketIOClient._handle_eio_message`` decodes EVENT and ACK
  packets of the default namespace with one regular expression and one
  ``json.loads`` and calls the handler or ack callback directly.  Anything
  else (other namespaces, binary packets, events that want an ack, unknown
  events or acks) takes upstream's path, and so does everything while INFO
  logging of python-socketio/engineio is on, so their packet logs stay whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import struct
import sys
from typing import Any, Callable, List, Optional, Tuple

import engineio
import socketio
import websocket

from .protocol import encode_json

__all__ = ["FAST_PATH", "INLINE_PACKET_TYPES", "SocketIOClient", "seam_available"]

log = logging.getLogger("watchers_bot")

# Socket.IO packet types (first character of an Engine.IO MESSAGE payload)
# that are handled on the read thread: CONNECT, EVENT, ACK, CONNECT_ERROR.
INLINE_PACKET_TYPES = frozenset("0234")


class _Finished:
    """Stands in for the thread upstream would have started and joined."""

    __slots__ = ()

    def join(self, timeout: Any = None) -> None:
        return None

    def is_alive(self) -> bool:
        return False


_FINISHED = _Finished()


def _version(module: Any) -> Tuple[int, ...]:
    """The installed version of python-socketio or python-engineio, () if unknown."""
    name = {"socketio": "python_socketio", "engineio": "python_engineio"}[module.__name__]
    text = None
    # The dist-info folder beside the package says it in its name: much cheaper
    # than importlib.metadata's scan of sys.path (~40 ms at import).
    with contextlib.suppress(Exception):
        site = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
        found = [d for d in os.listdir(site)
                 if d.startswith(name + "-") and d.endswith(".dist-info")]
        if len(found) == 1:
            text = found[0][len(name) + 1:-len(".dist-info")]
    if text is None:
        from importlib import metadata

        try:
            text = metadata.version(name.replace("_", "-"))
        except Exception:  # pragma: no cover - not installed as a distribution
            return ()
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


#: The versions whose private methods the fast path overrides (setup.cfg pins the same).
TESTED_SOCKETIO = ((5, 11), (6,))
TESTED_ENGINEIO = ((4, 9), (5,))


def _fast_path_supported() -> bool:
    sio, eio = _version(socketio), _version(engineio)
    return (
        TESTED_SOCKETIO[0] <= sio < TESTED_SOCKETIO[1]
        and TESTED_ENGINEIO[0] <= eio < TESTED_ENGINEIO[1]
        and callable(getattr(engineio.Client, "_receive_packet", None))
        and callable(getattr(engineio.Client, "_write_loop", None))
        and callable(getattr(socketio.Client, "_handle_eio_message", None))
        and callable(getattr(socketio.Client, "_generate_ack_id", None))
        and hasattr(socketio.packet.Packet, "json")
        and callable(getattr(websocket.WebSocket, "_recv", None))
        and callable(getattr(websocket.WebSocket, "_send", None))
        and callable(getattr(websocket.WebSocket, "send_close", None))
    )


#: Whether the fast receive path is on (tested versions of python-socketio/engineio).
FAST_PATH = _fast_path_supported()

_MESSAGE = 4  # Engine.IO MESSAGE packet type
# python-engineio's json module (the default of python-socketio's packets)
# passes parse_int to refuse integers of over 100 digits (their parsing is
# quadratic), which makes every loads() build a decoder and call back into
# Python for every integer: 5.6 us for a typical message, against 4.0 us for
# json.loads.  The interpreter's own int_max_str_digits limit (4300 digits by
# default) bounds that cost as well, so plain json.loads is used while it is
# set; when someone turned it off, the same decoder as engineio's, built once.
# With orjson installed (0.7 us), it goes first.  A packet any of these
# refuses (orjson: integers beyond 64 bits, lone surrogates, NaN) takes
# upstream's path, which decodes it exactly as python-socketio does.
# A json module of the user's own is used as it is.
_ENGINEIO_JSON: Any = getattr(engineio, "json", None)
_SAFE_DECODE: Any = json.JSONDecoder(
    parse_int=getattr(_ENGINEIO_JSON, "_safe_int", int)
).decode
_int_limit: Callable[[], int] = getattr(sys, "get_int_max_str_digits", lambda: 0)
try:
    import orjson as _orjson

    _ORJSON_LOADS: Any = _orjson.loads
except ImportError:
    _ORJSON_LOADS = None


def _decode(text: str) -> Any:
    if _ORJSON_LOADS is not None:
        return _ORJSON_LOADS(text)
    if 0 < _int_limit() <= 10_000:
        return json.loads(text)
    return _SAFE_DECODE(text)


_DECODE: Any = _decode
# The wire's JSON (UTF-8, compact), built once: python-socketio's Packet.encode
# would call json.dumps(data, separators=(",", ":")) with \uXXXX escapes.
_ENCODE: Any = encode_json


class _WireJson:
    """The json module python-socketio's packets use on our clients: UTF-8 on
    the wire, as the JavaScript client sends (see protocol.encode_json), and
    python-engineio's own safe decoding."""

    @staticmethod
    def dumps(data: Any, *args: Any, **kwargs: Any) -> str:
        return encode_json(data)  # Packet.encode passes only the compact separators

    @staticmethod
    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        codec = _ENGINEIO_JSON if _ENGINEIO_JSON is not None else json
        return codec.loads(text, *args, **kwargs)


class _WirePacket(socketio.packet.Packet):
    # A subclass, not Client(json=...): that would set the json of every
    # Packet in the process (the emulator's server included).
    json = _WireJson
# Values that can never be (or contain) binary data: a payload made only of
# these needs none of python-socketio's recursive binary checks.
_PLAIN = (str, int, float, bool, type(None))
_INFO = logging.INFO
# A Socket.IO EVENT ("2") or ACK ("3") packet of the default namespace, no
# binary attachments: the type, an optional ack id, then the JSON array.
_EVENT_OR_ACK = re.compile(r"([23])(\d*)\[")


class _Flush:
    """A write-loop queue entry: finish a frame that a direct write left half written."""

    __slots__ = ()
    binary = False
    packet_type = 6  # NOOP, for upstream's log line


_FLUSH = _Flush()


class _InlineEngineIOClient(engineio.Client):
    """An Engine.IO client that dispatches ordinary packets on its read thread."""

    #: Packets handled inline since creation (read by tests and stats).
    inline_dispatches = 0
    #: Called with the exception when an inline handler raised (never re-raised).
    on_dispatch_error: Callable[[BaseException], None] = staticmethod(lambda exc: None)

    if FAST_PATH:

        def _receive_packet(self, pkt: Any) -> None:
            # MESSAGE packets go straight to the Socket.IO client, on this
            # thread; PING, CLOSE and the rest (and everything while INFO
            # logging is on) take upstream's path.
            if pkt.packet_type == _MESSAGE:
                data = pkt.data
                if (type(data) is str and data[:1] in INLINE_PACKET_TYPES
                        and not self.logger.isEnabledFor(_INFO)):
                    handler = self.handlers.get("message")
                    if handler is not None:
                        self.inline_dispatches += 1
                        self._dispatch(handler, data)
                        return
            super()._receive_packet(pkt)

        def send_first(self, data: str) -> None:
            """Send a MESSAGE packet, written at once from this thread when nothing
            is queued or being written; otherwise (or when the write could block)
            through upstream's queue and write loop, as ``send()``.

            The queue's unfinished count stays above zero until the write loop has
            written everything it took, so packets keep their order.  Saves the
            write thread's wake-up, which is a good part of a lone request's
            round trip.
            """
            if (self.state == "connected" and self.queue.unfinished_tasks == 0
                    and self.current_transport == "websocket"
                    and not self.logger.isEnabledFor(_INFO)):
                ws = self.ws
                if isinstance(ws, _WebSocket) and ws.send_direct("4" + data):
                    if ws._tail:
                        self.queue.put(_FLUSH)
                    return
            self.send(data)

        def _write_loop(self) -> None:
            # Upstream's websocket write loop, but every packet waiting in the
            # queue goes out in one socket write (see _WebSocket.send_texts).
            if self.current_transport != "websocket":  # pragma: no cover - polling
                super()._write_loop()
                return
            get = self.queue.get
            empty = self.queue_empty
            while self.state == "connected":
                timeout = max(self.ping_interval, self.ping_timeout) + 5
                try:
                    packets = [get(timeout=timeout)]
                except empty:
                    self.logger.error("packet queue is empty, aborting")
                    break
                if packets[0] is None:
                    self.queue.task_done()
                    packets = []
                else:
                    while True:
                        try:
                            packets.append(get(block=False))
                        except empty:
                            break
                        if packets[-1] is None:
                            packets.pop()
                            self.queue.task_done()
                            break
                if not packets:
                    break  # an empty batch means: connection closed
                try:
                    texts: List[str] = []
                    for pkt in packets:
                        if pkt is _FLUSH:
                            self.ws.flush_tail()
                            continue
                        encoded = pkt.encode()
                        if pkt.binary:
                            self.ws.send_texts(texts)
                            texts = []
                            self.ws.send_binary(encoded)
                        else:
                            texts.append(encoded)
                    self.ws.send_texts(texts)
                    for _ in packets:
                        self.queue.task_done()
                except (websocket.WebSocketConnectionClosedException, BrokenPipeError, OSError):
                    self.logger.warning("WebSocket connection was closed, aborting")
                    break
            self.logger.info("Exiting write loop task")
            self.write_loop_task = None

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        if target == self.handlers.get("message") and len(args) == 1 and not kwargs:
            data = args[0]
            if isinstance(data, str) and data[:1] in INLINE_PACKET_TYPES:
                self.inline_dispatches += 1
                self._dispatch(target, data)
                return _FINISHED
            # DISCONNECT (its handler joins the read thread) and binary packets
            # keep upstream's thread, guarded the same way.
            return super().start_background_task(self._dispatch, target, data)
        return super().start_background_task(target, *args, **kwargs)

    def _dispatch(self, target: Any, data: Any) -> None:
        try:
            target(data)
        except Exception as exc:  # bad data from the server must not kill a thread
            log.warning("could not handle a packet from the server: %r", exc)
            try:
                self.on_dispatch_error(exc)
            except Exception:  # pragma: no cover - defensive
                log.exception("dispatch error hook failed")


# How long close() waits for the server's close frame.  The Engine.IO read
# thread reads the same socket and usually takes that frame first, so
# websocket-client's default (3 s) was mostly spent waiting for nothing.
_CLOSE_WAIT = 0.1


# How much the websocket reader asks the kernel for at a time.
_READ_SIZE = 64 * 1024

_OP_CONT, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA


class _WebSocket(websocket.WebSocket):
    """websocket-client's WebSocket with a short close handshake wait and,
    on the fast path, a buffered frame reader (see the module docstring)."""

    _rbuf = b""
    _rpos = 0
    _fragments: Optional[Tuple[int, List[bytes]]] = None

    def close(self, status: int = websocket.STATUS_NORMAL, reason: Any = b"",
              timeout: Any = _CLOSE_WAIT) -> None:
        # websocket-client's close() reads the peer's close frame itself, while
        # the Engine.IO read thread is reading the same socket: over TLS two
        # threads in SSL_read at once abort the process.  So: send our close
        # frame, wake the reader with an OS-level shutdown (which leaves the
        # TLS state alone), and close the socket once the reader let go of it.
        if self.sock is None:
            return
        was_connected = self.connected
        self.connected = False
        if was_connected:
            data = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
            with contextlib.suppress(Exception):
                self.send(struct.pack("!H", status) + data, websocket.ABNF.OPCODE_CLOSE)
        sock = self.sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        wait = _CLOSE_WAIT if timeout is None else min(timeout, _CLOSE_WAIT)
        if self.readlock.acquire(timeout=wait):
            try:
                self.shutdown()  # type: ignore[no-untyped-call]
            finally:
                self.readlock.release()

    def send_texts(self, texts: List[str]) -> None:
        """Send text messages, each in its own (masked) frame, in one socket write."""
        if not texts:
            return
        if len(texts) == 1:
            self.send(texts[0])
            return
        create = websocket.ABNF.create_frame
        frames = []
        for text in texts:
            frame = create(text, websocket.ABNF.OPCODE_TEXT)
            if self.get_mask_key:
                frame.get_mask_key = self.get_mask_key
            frames.append(frame.format())
        data = b"".join(frames)
        with self.lock:
            while data:
                sent = self._send(data)
                data = data[sent:]

    #: The unwritten end of a frame send_direct() could not finish: written
    #: before anything else, by whoever writes next (see _send).
    _tail = b""

    def send_direct(self, text: str) -> bool:
        """Write one text frame now if that cannot block; False: queue it instead.

        Only on a plain TCP socket in timeout mode (CPython then keeps its
        descriptor non-blocking, so ``os.write`` returns at once), and only
        when no other write is in progress.  When the kernel takes part of
        the frame, the rest waits in ``_tail`` and the caller asks the write
        loop to flush it.
        """
        sock = self.sock
        if (self._tail or type(sock) is not socket.socket or not sock.gettimeout()
                or not self.lock.acquire(blocking=False)):
            return False
        try:
            if self._tail:
                return False
            frame = websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT)
            if self.get_mask_key:
                frame.get_mask_key = self.get_mask_key
            data = frame.format()
            try:
                written = os.write(sock.fileno(), data)
            except OSError:  # would block, or broken: the write loop deals with it
                return False
            if written < len(data):
                self._tail = data[written:]
            return True
        finally:
            self.lock.release()

    def flush_tail(self) -> None:
        """Write what send_direct() left unwritten (as the write loop writes: blocking)."""
        with self.lock:
            if self._tail:
                self._send(b"")

    def _send(self, data: Any) -> int:
        # Every write comes here with self.lock held: a frame's unwritten end first.
        tail = self._tail
        if tail:
            self._tail = b""
            while tail:
                tail = tail[super()._send(tail):]
        if not data:
            return 0
        return super()._send(data)

    if FAST_PATH:

        def recv(self) -> Any:
            """The next text (``str``) or binary (``bytes``) message; ``""`` after a close frame.

            Answers pings, skips pongs, joins fragments, and raises what
            websocket-client raises on timeouts, closed sockets and protocol errors.
            """
            with self.readlock:
                return self._read_message()

    def _read_message(self) -> Any:
        while True:
            buf, pos = self._rbuf, self._rpos
            avail = len(buf) - pos
            need = 2
            if avail >= 2:
                b1, b2 = buf[pos], buf[pos + 1]
                length = b2 & 0x7F
                head = 2
                if length == 126:
                    head = 4
                    if avail >= 4:
                        length = (buf[pos + 2] << 8) | buf[pos + 3]
                elif length == 127:
                    head = 10
                    if avail >= 10:
                        length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                masked = b2 & 0x80
                if masked:
                    head += 4
                need = head + length
                if avail >= need:
                    start = pos + head
                    self._rpos = end = start + length
                    payload = buf[start:end]
                    if masked:  # servers must not mask, but a masked frame still reads
                        payload = websocket.ABNF.mask(buf[start - 4:start], payload)
                    message = self._frame(b1, payload)
                    if message is not None:
                        return message
                    continue
            self._fill(need - avail)

    def _fill(self, shortage: int) -> None:
        chunks = [self._rbuf[self._rpos:]]
        while shortage > 0:
            # _recv raises WebSocketTimeoutException / ...ConnectionClosedException
            # (and marks the socket closed) as websocket-client's own reader does.
            data = self._recv(max(_READ_SIZE, shortage))  # type: ignore[no-untyped-call]
            chunks.append(data)
            shortage -= len(data)
        self._rbuf = b"".join(chunks)
        self._rpos = 0

    def _frame(self, b1: int, payload: bytes) -> Any:
        """The message a frame completes, or None for control frames and fragments."""
        if b1 & 0x70:
            raise websocket.WebSocketProtocolException("rsv is not implemented, yet")
        opcode = b1 & 0x0F
        fin = b1 & 0x80
        if opcode in (_OP_TEXT, _OP_BINARY):
            if self._fragments is not None:
                raise websocket.WebSocketProtocolException("Illegal frame")
            if not fin:
                self._fragments = (opcode, [payload])
                return None
        elif opcode == _OP_CONT:
            if self._fragments is None:
                raise websocket.WebSocketProtocolException("Illegal frame")
            self._fragments[1].append(payload)
            if not fin:
                return None
            opcode, parts = self._fragments
            self._fragments = None
            payload = b"".join(parts)
        elif opcode == _OP_PING:
            if len(payload) >= 126:
                raise websocket.WebSocketProtocolException("Ping message is too long")
            self.pong(payload)
            return None
        elif opcode == _OP_PONG:
            return None
        elif opcode == _OP_CLOSE:
            # As websocket-client does: answer the close, report "" (engineio
            # then sees a closed websocket).
            self.send_close()
            return ""
        else:
            raise websocket.WebSocketProtocolException(f"Invalid opcode {opcode!r}")
        if opcode == _OP_TEXT:
            return payload.decode("utf-8")
        return payload


class SocketIOClient(socketio.Client):
    """``socketio.Client`` whose Engine.IO client dispatches on the read thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = dict(kwargs.pop("websocket_extra_options", None) or {})
        # create_connection()'s documented class_ hook.
        options.setdefault("class_", _WebSocket)
        super().__init__(*args, websocket_extra_options=options, **kwargs)
        if getattr(self, "packet_class", None) is socketio.packet.Packet:
            self.packet_class: Any = _WirePacket

    def _engineio_client_class(self) -> type:
        return _InlineEngineIOClient

    if FAST_PATH:

        def emit(self, event: Any, data: Any = None, namespace: Any = None,
                 callback: Any = None) -> None:
            # A flat JSON object to the default namespace (every Watchers
            # request): encoded here in one step, without python-socketio's
            # recursive binary checks, Packet objects and log call.
            if (type(data) is dict and (namespace is None or namespace == "/")
                    and type(event) is str and "/" in self.namespaces
                    and self.packet_class.json is _WireJson
                    and not self.logger.isEnabledFor(_INFO)):
                for value in data.values():
                    if type(value) not in _PLAIN:
                        break
                else:
                    # A request while none is waiting for its ack (a sequential
                    # send, a listen) is written at once; requests that follow
                    # each other (pipelining) are queued and batched.
                    callbacks = self.callbacks.get("/")
                    lone = not callbacks or len(callbacks) <= 1  # [0] is the id counter
                    ack = "" if callback is None else str(self._generate_ack_id("/", callback))
                    text = "2" + ack + _ENCODE([event, data])
                    if lone:
                        self.eio.send_first(text)
                    else:
                        self.eio.send(text)
                    return
            super().emit(event, data, namespace=namespace, callback=callback)

        def _handle_eio_message(self, data: Any) -> None:
            # EVENT and ACK packets of the default namespace: one regex, one
            # json.loads, and the handler or callback called here, in order.
            if type(data) is str and self._binary_packet is None:
                m = _EVENT_OR_ACK.match(data)
                if m is not None and not self.logger.isEnabledFor(_INFO):
                    codec = self.packet_class.json
                    try:
                        if codec is _WireJson or codec is _ENGINEIO_JSON:
                            args = _DECODE(data[m.end() - 1:])
                        else:
                            args = codec.loads(data[m.end() - 1:])
                    except ValueError:
                        args = None  # upstream decodes it again and raises
                    if type(args) is list and args:
                        ack_id = m.group(2)
                        if m.group(1) == "2":
                            if not ack_id:  # the server wants no answer
                                event = args[0]
                                handlers = self.handlers.get("/")
                                handler = handlers.get(event) if handlers and type(
                                    event) is str else None
                                if handler is not None:
                                    handler(*args[1:])
                                    return
                        elif ack_id:
                            callbacks = self.callbacks.get("/")
                            callback = callbacks.pop(int(ack_id), None) if callbacks else None
                            if callback is not None:
                                callback(*args)
                                return
            super()._handle_eio_message(data)


def seam_available() -> bool:
    """Whether the installed python-socketio/engineio still have the seam we hook."""
    return (
        callable(getattr(socketio.Client, "_engineio_client_class", None))
        and callable(getattr(engineio.Client, "_trigger_event", None))
        and callable(getattr(engineio.Client, "_receive_packet", None))
    )
