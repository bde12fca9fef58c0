"""The emulator closes a TLS connection only once no thread is inside its SSL object.

On the emulator's side of a ``wss://`` link three threads use one socket:
simple-websocket's reader (which also answers the client's close frame),
python-engineio's writer and werkzeug's request thread, which closes the socket
when the websocket session ends.  A close while another thread is still inside
an SSL call on the socket frees the descriptor number; the next connection's
socket gets the same number, and the old SSL object's write lands in the new
TLS handshake (the client then fails it with ``UNEXPECTED_MESSAGE``).  About
once in 800 wss:// connects; the test below forces that interleaving.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from typing import Any, Dict, Iterator, List

import pytest
from helpers import tls_context

from watchers_bot import Bot
from watchers_bot.emulator import Emulator

TOKEN = "tls-close-token-41d7"
API_KEY = "tls-close-key-9b2e"
WAIT = 5.0
#: How long the held write waits for its socket to be closed and the number reused.
HOLD = 1.0


@pytest.fixture
def tls_emu(ca: object) -> Iterator[Emulator]:
    with Emulator(tokens=[TOKEN], api_keys=[API_KEY],
                  ssl_context=tls_context(ca, "127.0.0.1")) as server:
        yield server


def _inode(fd: int) -> int:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return -1


@contextlib.contextmanager
def _lowest_free_descriptor(number: int) -> Iterator[None]:
    """Every free descriptor number below ``number`` taken meanwhile (by /dev/null),
    so that a socket made now gets ``number`` if it is free."""
    taken: List[int] = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            if fd >= number:
                os.close(fd)
                break
            taken.append(fd)
        yield
    finally:
        for fd in taken:
            os.close(fd)


@pytest.fixture
def held_close_reply(monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
    """The emulator's close frame (its answer to the client's, or its own),
    written the way a thread preempted inside ``SSLSocket.send`` writes it: with
    the SSL object it took before the socket could be closed, as late as the
    socket's descriptor number allows (closed, and reused by a new socket), or
    after ``HOLD`` seconds."""
    real_send = ssl.SSLSocket.send
    state: Dict[str, Any] = {"held": threading.Event(), "closed": threading.Event(),
                             "done": threading.Event(), "reused": False}

    def send(self: ssl.SSLSocket, data: Any, flags: int = 0) -> int:
        # the session's close frame (0x88), whichever emulator thread writes it:
        # simple-websocket's reader answering the client's, or python-engineio's
        # writer sending its own when the server side ended the session first
        if (not self.server_side or bytes(data[:1]) != b"\x88"
                or state["held"].is_set() or self._sslobj is None):  # type: ignore[attr-defined]
            return real_send(self, data, flags)
        state["held"].set()
        sslobj = self._sslobj  # type: ignore[attr-defined]
        fd = state["fd"] = self.fileno()
        inode = _inode(fd)
        try:
            deadline = time.monotonic() + HOLD
            while time.monotonic() < deadline:
                if self.fileno() == -1:
                    state["closed"].set()
                if self.fileno() == -1 and _inode(fd) not in (-1, inode):
                    state["reused"] = True
                    break
                time.sleep(0.001)
            written: int = sslobj.write(data)
            return written
        finally:
            state["done"].set()

    monkeypatch.setattr(ssl.SSLSocket, "send", send)
    return state


def test_a_late_close_reply_does_not_reach_the_next_connection(
    tls_emu: Emulator, held_close_reply: Dict[str, Any]
) -> None:
    # made before the first link ends, so that the descriptor number the emulator
    # frees can only go to the emulator's end of the next connection
    with socket.socket() as raw:
        raw.settimeout(WAIT)
        url = tls_emu.url.replace("https://", "wss://", 1)
        with Bot(TOKEN, API_KEY, "bot", url=url, verify_ssl=False, connect_timeout=WAIT,
                 ack_timeout=WAIT) as bot:
            bot.listen("room-1")
        assert held_close_reply["held"].wait(WAIT), "the emulator did not answer the close"
        # the next connection once the socket is closed (before the fix: while the
        # reply is still being written), or once the reply was written (after it)
        held_close_reply["closed"].wait(HOLD)
        with _lowest_free_descriptor(held_close_reply["fd"]):
            raw.connect(("127.0.0.1", tls_emu.port))
            assert held_close_reply["done"].wait(WAIT)
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        # before the fix: ssl.SSLError UNEXPECTED_MESSAGE, the old session's
        # encrypted close frame where the server's hello should be
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() is not None
    assert not held_close_reply["reused"], "the socket was closed during a write to it"
