"""The emulator's own websocket (watchers_bot/emulator/websocket.py), from a raw TCP client.

What a client sees on the wire: the handshake, control frames, fragments, the close
codes npm's ``ws`` uses for bad frames, and how a close ends the link.  The bots'
tests cover the rest (every plain ``ws://`` connection of the suite goes through it).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from typing import Iterator, Optional, Tuple

import pytest

from tests.helpers import KEY, TOKEN
from watchers_bot.emulator import Emulator, fastpath
from watchers_bot.emulator.websocket import CLOSE_GRACE
from watchers_bot.protocol.framing import (
    WS_CLOSE,
    WS_CONTINUATION,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    ws_frame_at,
    ws_unmask,
)

pytestmark = pytest.mark.skipif(not fastpath.enabled(),
                                reason="the emulator's websocket is used with the fast path on")

WAIT = 5.0
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455, 1.3, and its accept value:
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def client_frame(opcode: int, data: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0) -> bytes:
    """A websocket frame as a client writes it (masked unless told)."""
    b1 = (0x80 if fin else 0) | rsv | opcode
    n = len(data)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b1, mask_bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b1, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", b1, mask_bit | 127, n)
    if not masked:
        return head + data
    key = os.urandom(4)
    return head + key + ws_unmask(data, key)


class RawClient:
    """A websocket over a plain socket: the handshake, then frames in and out."""

    def __init__(self, emu: Emulator, *, version: str = "13",
                 extra: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", emu.port), timeout=WAIT)
        self.sock.sendall((
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{emu.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: {version}\r\n"
            f"{extra}\r\n").encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        self.status, *lines = head.decode("latin-1").split("\r\n")
        self.headers = dict(line.split(": ", 1) for line in lines if ": " in line)

    def _read_until(self, mark: bytes) -> bytes:
        while mark not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(mark)
        return head

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the link")
        self.buf += data

    def frame(self) -> Tuple[int, bytes]:
        """The next frame from the server: (first byte, payload)."""
        while True:
            found = ws_frame_at(self.buf, 0)
            if found is not None and found[2] <= len(self.buf):
                b1, start, end, masked = found
                assert not masked, "a server must not mask its frames"
                payload, self.buf = self.buf[start:end], self.buf[end:]
                return b1, payload
            self._more()

    def text(self) -> str:
        b1, payload = self.frame()
        assert b1 == 0x80 | WS_TEXT, hex(b1)
        return payload.decode()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(client_frame(WS_TEXT, text.encode()))

    def join(self) -> str:
        """Engine.IO open, Socket.IO connect with the token; the Socket.IO sid."""
        assert self.text().startswith("0{")
        self.send_text("40" + json.dumps({"bearer": TOKEN}))
        answer = self.text()
        assert answer.startswith("40{"), answer
        return str(json.loads(answer[2:])["sid"])

    def close_code(self) -> Optional[int]:
        """Read frames until the server's close frame; its status code."""
        while True:
            b1, payload = self.frame()
            if b1 & 0x0F == WS_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def at_eof(self, timeout: float) -> bool:
        """Whether the server ends the link within ``timeout`` (anything read is dropped)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tokens=[TOKEN], api_keys=[KEY], max_message_size=10_000) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[RawClient]:
    raw = RawClient(emu)
    try:
        yield raw
    finally:
        raw.close()


def listen_request(ack_id: int, room: str) -> str:
    return f"42{ack_id}" + json.dumps(["external/listen", {"roomId": room, "apiKey": KEY}])


def test_the_handshake_is_rfc6455_with_no_extension(emu: Emulator) -> None:
    raw = RawClient(emu, extra="Sec-WebSocket-Extensions: permessage-deflate; "
                               "client_max_window_bits\r\n")
    try:
        assert raw.status == "HTTP/1.1 101 Switching Protocols"
        assert raw.headers["Sec-WebSocket-Accept"] == RFC_ACCEPT
        assert raw.headers["Upgrade"].lower() == "websocket"
        assert "Sec-WebSocket-Extensions" not in raw.headers  # as npm's server: no deflate
        raw.join()
        assert len(emu.clients) == 1
    finally:
        raw.close()


def test_another_websocket_version_is_told_which_one_is_spoken(emu: Emulator) -> None:
    raw = RawClient(emu, version="8")
    try:
        assert raw.status.startswith("HTTP/1.1 426")
        assert raw.headers["Sec-WebSocket-Version"] == "13"
    finally:
        raw.close()


def test_a_ping_is_answered_with_its_payload(client: RawClient) -> None:
    client.join()
    client.send(client_frame(WS_PING, b"are you there"))
    assert client.frame() == (0x80 | WS_PONG, b"are you there")


def test_a_fragmented_request_with_a_ping_between_is_one_message(
        client: RawClient, emu: Emulator) -> None:
    sid = client.join()
    data = listen_request(7, "room-frag").encode()
    parts = [data[:5], data[5:20], data[20:]]
    client.send(client_frame(WS_TEXT, parts[0], fin=False)
                + client_frame(WS_CONTINUATION, parts[1], fin=False)
                + client_frame(WS_PING, b"p")
                + client_frame(WS_CONTINUATION, parts[2]))
    assert client.frame() == (0x80 | WS_PONG, b"p")
    assert client.text() == '437[{"status":"ok","roomId":"room-frag"}]'
    assert emu.listeners("room-frag") == {sid}


def test_pipelined_requests_in_one_write_are_each_acked_in_order(
        client: RawClient, emu: Emulator) -> None:
    sid = client.join()
    n = 300
    client.send(b"".join(client_frame(WS_TEXT, listen_request(i, f"room-{i}").encode())
                         for i in range(n)))
    acks = [client.text() for _ in range(n)]
    assert acks == [f'43{i}[{{"status":"ok","roomId":"room-{i}"}}]' for i in range(n)]
    assert all(emu.listeners(f"room-{i}") == {sid} for i in range(n))


def send_request(ack_id: int, room: str, text: str) -> str:
    return f"42{ack_id}" + json.dumps(["external/send", {
        "roomId": room, "apiKey": KEY, "text": text, "userId": "bot"}])


def test_a_send_to_ones_own_room_is_broadcast_before_it_is_acked(client: RawClient) -> None:
    client.join()
    client.send_text(listen_request(1, "room-own"))
    assert client.text().startswith("431[")
    client.send(b"".join(client_frame(WS_TEXT, send_request(i, "room-own", f"t{i}").encode())
                         for i in range(2, 52)))
    got = [client.text() for _ in range(100)]
    # the order the server made them in: each message event, then its ack
    for i, (event, ack) in enumerate(zip(got[::2], got[1::2]), start=2):
        assert event.startswith('42["message",'), event
        assert f'"text":"t{i}"' in event, event
        assert ack.startswith(f"43{i}["), ack


def test_a_frozen_socket_gets_no_answer_until_thawed(client: RawClient, emu: Emulator) -> None:
    client.join()
    assert emu.freeze() == 1
    client.send_text(listen_request(5, "room-frozen"))
    client.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        client.frame()  # requests are read, and answered, but nothing is written
    client.sock.settimeout(WAIT)
    emu.thaw()
    assert client.text() == "6"  # the freeze's own place in the queue, an Engine.IO noop
    assert client.text() == '435[{"status":"ok","roomId":"room-frozen"}]'


@pytest.mark.parametrize(("frame", "code"), [
    (client_frame(WS_TEXT, b'42["x"]', masked=False), 1002),  # clients must mask
    (client_frame(WS_TEXT, b'42["x"]', rsv=0x40), 1002),  # no extension was agreed
    (client_frame(WS_CONTINUATION, b"orphan"), 1002),  # nothing to continue
    (client_frame(0x3, b""), 1002),  # a reserved opcode
    (client_frame(WS_PING, b"x" * 126), 1002),  # control frames are at most 125 bytes
    (client_frame(WS_TEXT, b"42\xff\xfe"), 1007),  # text that is not UTF-8
], ids=["unmasked", "rsv", "orphan-continuation", "reserved-opcode", "long-ping", "not-utf8"])
def test_a_bad_frame_closes_the_link_with_the_code_ws_uses(
        client: RawClient, emu: Emulator, frame: bytes, code: int) -> None:
    client.join()
    client.send(frame)
    assert client.close_code() == code
    assert client.at_eof(WAIT)
    deadline = time.monotonic() + WAIT
    while emu.clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emu.clients == []


def test_a_message_over_the_size_limit_is_refused_while_it_arrives(client: RawClient) -> None:
    client.join()
    chunk = b"x" * 4000
    client.send(client_frame(WS_TEXT, b"42" + chunk, fin=False)
                + client_frame(WS_CONTINUATION, chunk, fin=False))
    client.send(client_frame(WS_CONTINUATION, chunk, fin=False))  # 12,002 > 10,000 bytes
    assert client.close_code() == 1009
    assert client.at_eof(WAIT)


def test_a_clients_close_is_echoed_with_its_code(client: RawClient, emu: Emulator) -> None:
    client.join()
    client.send(client_frame(WS_CLOSE, struct.pack("!H", 4001) + b"bye"))
    assert client.close_code() == 4001
    assert client.at_eof(WAIT)


@pytest.fixture
def unanswered() -> Iterator[RawClient]:
    """A client that never answers a ping: its server closes the session after 0.3 s."""
    with Emulator(tokens=[TOKEN], api_keys=[KEY], ping_interval=0.2,
                  ping_timeout=0.3) as emu:
        raw = RawClient(emu)
        try:
            raw.join()
            yield raw
        finally:
            raw.close()


def server_close(client: RawClient) -> Optional[int]:
    """Engine.IO's ping, unanswered, then the server's websocket close: its code."""
    assert client.text() == "2"
    return client.close_code()


def test_a_server_close_waits_for_the_answer_then_cuts_a_silent_client(
        unanswered: RawClient) -> None:
    assert server_close(unanswered) == 1000
    # this client does not answer the close frame: the server waits for it a
    # while, then cuts the link
    assert not unanswered.at_eof(CLOSE_GRACE / 4)
    assert unanswered.at_eof(CLOSE_GRACE + WAIT)


def test_a_server_close_answered_ends_the_link_at_once(unanswered: RawClient) -> None:
    assert server_close(unanswered) == 1000
    started = time.monotonic()
    unanswered.send(client_frame(WS_CLOSE, struct.pack("!H", 1000)))
    assert unanswered.at_eof(WAIT)
    assert time.monotonic() - started < CLOSE_GRACE  # it ended when answered, not cut


def test_a_client_that_keeps_asking_but_never_pongs_is_closed(unanswered: RawClient) -> None:
    # the ping timeout is found in the send of an answer, whose close sends through the
    # same path: that once deadlocked the socket's request thread on its own lock
    assert unanswered.text() == "2"
    unanswered.sock.settimeout(0.05)
    deadline = time.monotonic() + WAIT
    ended = False
    i = 0
    while not ended and time.monotonic() < deadline:
        try:
            unanswered.send_text(listen_request(i, f"room-{i}"))
            i += 1
            ended = unanswered.sock.recv(65536) == b""
        except socket.timeout:
            continue
        except OSError:  # reset by the server: the link ended too
            ended = True
    assert ended, f"the link was still open after {i} unanswered-ping requests"


def test_frames_split_across_reads_are_put_back_together(client: RawClient) -> None:
    client.join()
    data = client_frame(WS_TEXT, listen_request(1, "room-slow").encode())
    for i in range(len(data)):
        client.send(data[i:i + 1])
        time.sleep(0.001)
    assert client.text() == '431[{"status":"ok","roomId":"room-slow"}]'


def test_the_upstream_wrapper_still_serves_with_the_fast_path_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "enabled", lambda: False)
    with Emulator(tokens=[TOKEN], api_keys=[KEY]) as emu:
        raw = RawClient(emu)
        try:
            raw.join()
            raw.send_text(listen_request(3, "room-up"))
            assert raw.text() == '433[{"status":"ok","roomId":"room-up"}]'
        finally:
            raw.close()

