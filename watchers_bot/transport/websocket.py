"""websocket-client's WebSocket, with a safe close, serialized TLS and (fast path) a buffered
frame reader.

Each override here is installed only as :mod:`.upstream` decides: ``close``
(``WS_CLOSE``), the socket reads and writes of a TLS link (``TLS_SERIAL``, see
:mod:`.tls`), the direct and batched writes (``FAST_SEND``) and the frame
reader (``FAST_READER``).  Everything else is websocket-client's own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
import threading
from typing import Any, List, Optional, Tuple

import websocket

from ..protocol.framing import (
    WS_BINARY,
    WS_CLOSE,
    WS_CONTINUATION,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    ws_frame_at,
    ws_masked_text_frame,
    ws_unmask,
)
from . import tls
from .upstream import Override, enabled

__all__ = ["WebSocket"]

log = logging.getLogger("watchers_bot")

# How long close() waits for the server's close frame.  The Engine.IO read
# thread reads the same socket and usually takes that frame first, so
# websocket-client's default (3 s) was mostly spent waiting for nothing.
_CLOSE_WAIT = 0.1


# How much the websocket reader asks the kernel for at a time.
_READ_SIZE = 64 * 1024


class _SerialTLS(websocket.WebSocket):
    """websocket-client's socket reads and writes, one thread at a time in a TLS
    socket's state (:mod:`.tls`); a plain socket's are websocket-client's own."""

    if enabled(Override.TLS_SERIAL):

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._tls_lock = threading.Lock()

        def _recv(self, bufsize: int) -> bytes:
            sock = self.sock
            if not isinstance(sock, ssl.SSLSocket):
                data: bytes = super()._recv(bufsize)  # type: ignore[no-untyped-call]
                return data
            try:
                data = tls.recv(sock, self._tls_lock, bufsize)
                if not data:
                    raise websocket.WebSocketConnectionClosedException(
                        "Connection to remote host was lost.")
            except websocket.WebSocketConnectionClosedException:
                # as websocket-client's _recv: the socket is done with (under the
                # lock: no write may be inside the SSL object as its descriptor
                # closes and is reused by the next connection)
                with self._tls_lock:
                    try:
                        sock.close()
                    except OSError:  # the link is gone already; the error is raised below
                        log.debug("closing a lost TLS socket failed", exc_info=True)
                self.sock = None
                self.connected = False
                raise
            return data

        def shutdown(self) -> None:
            # closes the socket: not while another thread is inside its SSL object
            with self._tls_lock:
                super().shutdown()  # type: ignore[no-untyped-call]

        def _send(self, data: Any) -> int:
            sock = self.sock
            if not isinstance(sock, ssl.SSLSocket):
                sent: int = super()._send(data)
                return sent
            if isinstance(data, str):
                data = data.encode("utf-8")
            return tls.send(sock, self._tls_lock, data)


class WebSocket(_SerialTLS):
    """websocket-client's WebSocket with a short close handshake wait, serialized
    TLS and, on the fast path, a buffered frame reader (see the module docstring)."""

    _rbuf = b""
    _rpos = 0
    _fragments: Optional[Tuple[int, List[bytes]]] = None

    if enabled(Override.WS_CLOSE):

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
                    self.shutdown()  # type: ignore[no-untyped-call,unused-ignore]
                finally:
                    self.readlock.release()

    if enabled(Override.FAST_SEND):

        def send_texts(self, texts: List[str]) -> None:
            """Send text messages, each in its own (masked) frame, in one socket write."""
            if not texts:
                return
            if len(texts) == 1:
                self.send(texts[0])
                return
            if self.get_mask_key:  # the application's own mask keys
                keys = b"".join(self._mask_key() for _ in texts)
            else:  # one system call for every frame's key
                keys = os.urandom(4 * len(texts))
            data = b"".join([
                ws_masked_text_frame(text.encode("utf-8"), keys[4 * i:4 * i + 4])
                for i, text in enumerate(texts)
            ])
            with self.lock:
                while data:
                    sent = self._send(data)
                    data = data[sent:]

        def _mask_key(self) -> bytes:
            # websocket-client's get_mask_key option when given (it may return str), else
            # what its ABNF uses: os.urandom.
            if not self.get_mask_key:
                return os.urandom(4)
            key = self.get_mask_key(4)
            return key.encode("latin-1") if isinstance(key, str) else bytes(key)

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
                data = ws_masked_text_frame(text.encode("utf-8"), self._mask_key())
                try:
                    written = os.write(sock.fileno(), data)
                except OSError:  # would block, or broken: the write loop deals with it
                    return False
                if written < len(data):
                    self._tail = data[written:]
                return True
            finally:
                self.lock.release()

        def has_tail(self) -> bool:
            """Whether send_direct() left the end of a frame unwritten."""
            return bool(self._tail)

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

    if enabled(Override.FAST_READER):

        def recv(self) -> Any:
            """The next text (``str``) or binary (``bytes``) message; ``""`` after a close frame.

            Answers pings, skips pongs, joins fragments, and raises what
            websocket-client raises on timeouts, closed sockets and protocol errors.
            """
            with self.readlock:
                return self._read_message()

        def _read_message(self) -> Any:
            while True:
                buf = self._rbuf
                frame = ws_frame_at(buf, self._rpos)
                if frame is not None and frame[2] <= len(buf):
                    b1, start, end, masked = frame
                    self._rpos = end
                    payload = buf[start:end]
                    if masked:  # servers must not mask, but a masked frame still reads
                        payload = ws_unmask(payload, buf[start - 4:start])
                    message = self._frame(b1, payload)
                    if message is not None:
                        return message
                    continue
                self._fill(1 if frame is None else frame[2] - len(buf))

        def _fill(self, shortage: int) -> None:
            chunks = [self._rbuf[self._rpos:]]
            while shortage > 0:
                # _recv raises WebSocketTimeoutException / ...ConnectionClosedException
                # (and marks the socket closed) as websocket-client's own reader does.
                data = self._recv(max(_READ_SIZE, shortage))  # type: ignore[no-untyped-call,unused-ignore]
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
            if opcode in (WS_TEXT, WS_BINARY):
                if self._fragments is not None:
                    raise websocket.WebSocketProtocolException("Illegal frame")
                if not fin:
                    self._fragments = (opcode, [payload])
                    return None
            elif opcode == WS_CONTINUATION:
                if self._fragments is None:
                    raise websocket.WebSocketProtocolException("Illegal frame")
                self._fragments[1].append(payload)
                if not fin:
                    return None
                opcode, parts = self._fragments
                self._fragments = None
                payload = b"".join(parts)
            elif opcode == WS_PING:
                if len(payload) >= 126:
                    raise websocket.WebSocketProtocolException("Ping message is too long")
                self.pong(payload)
                return None
            elif opcode == WS_PONG:
                return None
            elif opcode == WS_CLOSE:
                # As websocket-client does: answer the close, report "" (engineio
                # then sees a closed websocket).
                self.send_close()
                return ""
            else:
                raise websocket.WebSocketProtocolException(f"Invalid opcode {opcode!r}")
            if opcode == WS_TEXT:
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError:  # as websocket-client's own reader raises
                    raise websocket.WebSocketPayloadException(
                        f"cannot decode: {payload[:64]!r}") from None
            return payload
