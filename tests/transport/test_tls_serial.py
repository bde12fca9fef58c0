"""A TLS link read on one thread and written on another (``transport/tls.py``).

OpenSSL's ``SSL`` object is not safe for a read and a write at the same time:
on this machine, a thread reading a TLS socket (CPython keeps it non-blocking
when it has a timeout) while another writes it reported a false EOF, or
``BAD_RECORD_MAC``, in 95 of 100 rounds of the ping-pong below.  The Engine.IO
client does exactly that (a read thread, a write thread), and the Bot's link
over ``wss://`` dropped about once in 300 connects, right after the Socket.IO
CONNECT.  These tests hold the reads and writes of :mod:`watchers_bot.transport.tls`
to the same rounds (the Bot's wss:// tests are in test_tls_proxy.py).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Iterator, List, Tuple

import pytest
import websocket
from helpers import tls_context

from watchers_bot.transport import tls
from watchers_bot.transport.websocket import WebSocket

WAIT = 10.0


@contextlib.contextmanager
def tls_pair(ca: object) -> Iterator[Tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """``(client, server)``: two ends of a TLS 1.3 connection over a socketpair;
    the client end has a timeout (so CPython keeps it non-blocking, as
    python-engineio's websocket is)."""
    server_ctx = tls_context(ca, "localhost")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)  # type: ignore[attr-defined]
    a, b = socket.socketpair()
    a.settimeout(WAIT)
    b.settimeout(WAIT)
    ends: List[ssl.SSLSocket] = []
    handshake = threading.Thread(
        target=lambda: ends.append(server_ctx.wrap_socket(b, server_side=True)))
    handshake.start()
    client = client_ctx.wrap_socket(a, server_hostname="localhost")
    handshake.join(WAIT)
    assert ends, "the server side of the handshake did not finish"
    server = ends[0]
    try:
        yield client, server
    finally:
        for end in (client, server):
            # an OS-level shutdown first: no thread may still be inside the
            # SSL object when it is freed
            with contextlib.suppress(OSError):
                socket.socket.shutdown(end, socket.SHUT_RDWR)
            end.close()


def ping_pong(client: ssl.SSLSocket, server: ssl.SSLSocket, count: int) -> bytes:
    """Write ``count`` lines from this thread while another thread reads their echo
    (through :mod:`~watchers_bot.transport.tls`); what it read, or its failure raised."""
    lock = threading.Lock()
    expected = sum(len(b"%07d\n" % i) for i in range(count))
    received: List[bytes] = []
    failures: List[BaseException] = []

    def echo() -> None:
        with contextlib.suppress(OSError):
            while True:
                data = server.recv(65536)
                if not data:
                    return
                server.sendall(data)

    def read() -> None:
        try:
            while sum(map(len, received)) < expected:
                data = tls.recv(client, lock, 65536)
                if not data:
                    raise EOFError("the link reported its end")
                received.append(data)
        except BaseException as exc:  # raised below, in the test's thread
            failures.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    threading.Thread(target=echo, daemon=True).start()
    reader.start()
    for i in range(count):
        data = b"%07d\n" % i
        assert tls.send(client, lock, data) == len(data)
    reader.join(WAIT)
    if failures:
        raise failures[0]
    return b"".join(received)


def test_a_read_thread_and_a_write_thread_share_the_link(ca: object) -> None:
    """Ping-pong: every write meets a read in progress; nothing is lost or cut."""
    count = 200
    for _ in range(30):
        with tls_pair(ca) as (client, server):
            assert ping_pong(client, server, count) == b"".join(
                b"%07d\n" % i for i in range(count))


def test_a_read_waits_the_sockets_timeout_and_leaves_it_as_it_was(ca: object) -> None:
    with tls_pair(ca) as (client, _server):
        client.settimeout(0.2)
        started = time.monotonic()
        with pytest.raises(websocket.WebSocketTimeoutException):
            tls.recv(client, threading.Lock(), 1024)
        assert time.monotonic() - started >= 0.2
        assert client.gettimeout() == 0.2


def test_the_peers_close_is_the_end_of_the_stream(ca: object) -> None:
    with tls_pair(ca) as (client, server):
        lock = threading.Lock()
        server.sendall(b"last words")
        closing = threading.Thread(target=server.unwrap)  # close_notify; waits for ours
        closing.start()
        assert tls.recv(client, lock, 1024) == b"last words"
        assert tls.recv(client, lock, 1024) == b""
        client.unwrap()
        closing.join(WAIT)


def test_the_websocket_reports_a_closed_link_and_lets_go_of_the_socket(ca: object) -> None:
    with tls_pair(ca) as (client, server):
        ws = WebSocket()
        ws.sock = client
        ws.connected = True
        socket.socket.shutdown(server, socket.SHUT_RDWR)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws._recv(1024)
        assert ws.sock is None
        assert not ws.connected
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws._send(b"after the end")


def test_a_write_to_a_closed_link_raises(ca: object) -> None:
    with tls_pair(ca) as (client, server):
        server.close()
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            tls.send(client, threading.Lock(), b"to nobody")
