"""One thread at a time in a TLS connection's state.

The Engine.IO client reads its websocket on one thread and writes it on
another.  Over TLS both calls go into one OpenSSL ``SSL`` object, which is not
safe for concurrent use: its reads and writes share one socket BIO, and a
write clears the BIO's retry flag while a read is deciding whether its EAGAIN
means "try again" (CPython keeps a socket with a timeout non-blocking, so reads
meet EAGAIN all the time).  The read then reports an EOF ("EOF occurred in
violation of protocol"), and a healthy connection is dropped: seen right after
the Socket.IO CONNECT, when the first write meets the first read.

So every SSL call on a client socket here is made under one lock and without
blocking, and the waits (for data to read, for room to write) happen outside
the lock, in ``select``.  A call's timeout is the socket's own, as before.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import threading
import time
from typing import Any, Callable, Iterator, Optional

import websocket

__all__ = ["recv", "send"]


def recv(sock: ssl.SSLSocket, lock: threading.Lock, bufsize: int) -> bytes:
    """What one ``sock.recv(bufsize)`` returns (``b""`` at the end of the stream),
    waiting at most the socket's timeout for it."""
    data: bytes = _call(sock, lock, lambda: sock.recv(bufsize))
    return data


def send(sock: ssl.SSLSocket, lock: threading.Lock, data: bytes) -> int:
    """What one ``sock.send(data)`` returns, waiting at most the socket's timeout
    for room to write."""
    try:
        sent: int = _call(sock, lock, lambda: sock.send(data))
        return sent
    except ssl.SSLEOFError:  # as websocket-client's own send reports it
        raise websocket.WebSocketConnectionClosedException(
            "socket is already closed.") from None


def _call(sock: ssl.SSLSocket, lock: threading.Lock, call: Callable[[], Any]) -> Any:
    """``call()`` (one SSL read or write) on this thread's turn, tried again once
    the socket is ready for what OpenSSL wants, until the socket's timeout.  The
    call is tried first: what OpenSSL holds already decrypted, select() would not
    see (and SSL_pending() too would be a call into the shared state)."""
    deadline = _deadline(sock, lock)
    while True:
        with _turn(sock, lock):
            try:
                return call()
            except ssl.SSLWantReadError:
                want_write = False
            except ssl.SSLWantWriteError:
                want_write = True
        # OpenSSL wants the same call again once the socket is ready for it.
        _wait(sock, deadline, write=want_write)


@contextlib.contextmanager
def _turn(sock: ssl.SSLSocket, lock: threading.Lock) -> Iterator[None]:
    """This thread's turn in the SSL state, the socket non-blocking meanwhile."""
    with lock:
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            yield
        finally:
            sock.settimeout(timeout)


def _deadline(sock: ssl.SSLSocket, lock: threading.Lock) -> Optional[float]:
    with lock:  # the socket's own timeout: the other thread sets it to 0 under the lock
        timeout = sock.gettimeout()
    return None if timeout is None else time.monotonic() + timeout


def _wait(sock: ssl.SSLSocket, deadline: Optional[float], *, write: bool) -> None:
    """Until ``sock`` is readable (writable), or raise what websocket-client
    raises on a timeout / a closed socket."""
    timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    poller = select.poll()  # not select.select: no limit on descriptor numbers
    try:
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        ready = poller.poll(None if timeout is None else timeout * 1000.0)
    except (OSError, ValueError):  # closed under us (fileno -1)
        raise websocket.WebSocketConnectionClosedException("socket is already closed.") \
            from None
    if not ready:
        raise websocket.WebSocketTimeoutException("Connection timed out")
