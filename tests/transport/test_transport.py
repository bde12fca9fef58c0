"""The seam into python-engineio: fails loudly if a new release moves it."""

import inspect
import json
import logging
import os
import socket
import struct
import threading

import engineio
import pytest
import socketio
import websocket

from watchers_bot.transport import SocketIOClient, seam_available, upstream
from watchers_bot.transport import socketio as wire_socketio
from watchers_bot.transport.websocket import WebSocket


def test_seam_is_present_in_installed_versions():
    assert seam_available(), (
        f"python-socketio {socketio.__version__ if hasattr(socketio, '__version__') else '?'} / "
        "python-engineio moved a name watchers_bot hooks: see watchers_bot/transport/upstream.py"
    )
    client = SocketIOClient(handle_sigint=False)
    assert isinstance(client.eio, engineio.Client)
    assert type(client.eio).__name__ == "InlineEngineIOClient"


def test_every_instance_seam_is_on_a_real_instance(emulator):
    """The table's instance attributes, looked up on a connected client's objects
    and on a python-socketio server as the emulator makes one."""
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        server = socketio.Server(async_mode="threading")
        instances = (client, client.eio, client.eio.ws, server, server.eio)
        assert upstream.missing(instances=instances) == []
        unchecked = [(seam.owner, seam.name) for seam in upstream.SEAMS if seam.instance
                     and not any(isinstance(obj, seam.owner) for obj in instances)]
        assert unchecked == []
    finally:
        client.disconnect()


def test_packets_are_dispatched_on_the_read_thread_in_order(emulator):
    """Events and acks run on the Engine.IO read thread, not a thread per packet."""
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    seen = []
    done = threading.Event()

    def on_message(payload):
        seen.append((payload["message"]["text"], threading.current_thread()))
        if len(seen) == 500:
            done.set()

    client.on("message", on_message)
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        ack = client.call("external/listen", {"roomId": "r", "apiKey": "test-key"}, timeout=5)
        assert ack["status"] == "ok"
        emulator.post_many("r", [str(i) for i in range(500)])
        assert done.wait(10)
        assert [text for text, _ in seen] == [str(i) for i in range(500)]
        read_thread = client.eio.read_loop_task
        assert {thread for _, thread in seen} == {read_thread}
        assert client.eio.inline_dispatches >= 501
    finally:
        client.disconnect()


def test_bad_packet_from_server_does_not_kill_the_read_thread(emulator):
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    got = threading.Event()
    client.on("message", lambda payload: got.set())
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        client.call("external/listen", {"roomId": "r", "apiKey": "test-key"}, timeout=5)
        sid = emulator.clients[0]
        emulator.push_packet('2["message", {broken json', to=sid)  # undecodable Socket.IO packet
        emulator.post("r", "still alive")
        assert got.wait(5)
        assert client.eio.read_loop_task.is_alive()
    finally:
        client.disconnect()


def test_malformed_disconnect_packet_does_not_raise_in_a_thread(emulator):
    """Packets that keep upstream's thread are guarded too (pytest fails on thread errors)."""
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    got = threading.Event()
    client.on("message", lambda payload: got.set())
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        client.call("external/listen", {"roomId": "r", "apiKey": "test-key"}, timeout=5)
        sid = emulator.clients[0]
        emulator.push_packet("5-broken binary header", to=sid)
        emulator.push_packet("9 unknown packet type", to=sid)
        emulator.post("r", "still alive")
        assert got.wait(5)
    finally:
        client.disconnect()


# --------------------------------------------------------------------------- the fast path


def test_fast_path_is_on_for_the_installed_versions():
    """The private methods the fast path overrides are where it expects them.

    If this fails after an upgrade, python-socketio/engineio or websocket-client
    moved something: the bot still works (FAST_PATH turns itself off and
    upstream's paths run), but slowly; re-check each override
    in watchers_bot/transport/ (the table in upstream.py)
    against the new release before widening the range in setup.cfg.
    """
    if os.environ.get("WATCHERS_FAST_PATH", "1") == "0":
        pytest.skip("WATCHERS_FAST_PATH=0 turns the fast path off on purpose")
    assert upstream.versions_tested() == []
    assert upstream.FAST_PATH, "the fast path is off: see watchers_bot/transport/upstream.py"
    # The exact upstream signatures the overrides replace.
    assert list(inspect.signature(engineio.Client._receive_packet).parameters) == ["self", "pkt"]
    assert list(inspect.signature(socketio.Client._handle_eio_message).parameters) == [
        "self", "data"]
    assert list(inspect.signature(websocket.WebSocket._recv).parameters) == ["self", "bufsize"]
    assert list(inspect.signature(engineio.Client._write_loop).parameters) == ["self"]
    assert list(inspect.signature(websocket.WebSocket._send).parameters) == ["self", "data"]
    assert list(inspect.signature(socketio.Client._generate_ack_id).parameters) == [
        "self", "namespace", "callback"]
    assert list(inspect.signature(socketio.Client.emit).parameters) == [
        "self", "event", "data", "namespace", "callback"]
    # What the overrides read on the instances.
    client = SocketIOClient(handle_sigint=False)
    for name in ("handlers", "callbacks", "_binary_packet", "packet_class", "logger",
                 "namespaces", "eio"):
        assert hasattr(client, name), name
    # Our packets' json: UTF-8 out (the fast path checks for it), engineio's safe loads in.
    assert client.packet_class.json is wire_socketio.WireJson
    for name in ("handlers", "logger", "queue", "queue_empty", "state", "ping_interval",
                 "ping_timeout", "current_transport", "write_loop_task"):
        assert hasattr(client.eio, name), name
    assert callable(getattr(wire_socketio._ENGINEIO_JSON, "_safe_int", None))
    ws = WebSocket()
    assert hasattr(ws, "readlock")
    assert hasattr(ws, "lock")
    assert hasattr(ws, "get_mask_key")
    assert type(ws).recv is not websocket.WebSocket.recv


def test_version_of_the_installed_packages_matches_importlib_metadata():
    from importlib import metadata

    for dist in upstream.TESTED:
        want = tuple(int(p) for p in metadata.version(dist.replace("_", "-")).split(".")[:3])
        assert upstream.version(dist) == want


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)


def _client_with_handlers():
    client = SocketIOClient(handle_sigint=False)
    message = _Recorder()
    client.on("message", message)
    return client, message


def test_fast_event_decoding_matches_upstream():
    client, message = _client_with_handlers()
    payload = {"roomId": "r", "message": {"id": 7, "text": "h\u00e9 \"q\" [1]"}, "userId": "u"}
    client._handle_eio_message("2" + json.dumps(["message", payload]))
    client._handle_eio_message('2["message",1,"two",null]')
    assert message.calls == [(payload,), (1, "two", None)]


def test_fast_ack_goes_to_its_callback_once():
    client, _ = _client_with_handlers()
    got = []
    ack_id = client._generate_ack_id("/", lambda *args: got.append(args))
    client._handle_eio_message(f"3{ack_id}[]")
    client._handle_eio_message(f'3{ack_id}[{{"status":"ok"}}]')  # late duplicate: ignored
    assert got == [()]
    other = client._generate_ack_id("/", lambda *args: got.append(args))
    client._handle_eio_message(f'3{other}[null,{{"a":1}}]')
    assert got == [(), (None, {"a": 1})]


@pytest.mark.parametrize("packet", [
    '2/admin,["message",{"x":1}]',  # another namespace
    '212["message",{"x":1}]',       # the server wants an ack
    '2["unknown",{"x":1}]',         # no handler: upstream's catch-all path
    '399[]',                        # unknown ack id: upstream logs it
])
def test_other_packets_take_upstreams_path(packet, monkeypatch):
    client, message = _client_with_handlers()
    upstream = _Recorder()
    monkeypatch.setattr(socketio.Client, "_handle_eio_message",
                        lambda self, data: upstream(data))
    client._handle_eio_message(packet)
    assert upstream.calls == [(packet,)]
    assert message.calls == []


def test_info_logging_keeps_upstreams_path_and_its_packet_logs(monkeypatch):
    client, _ = _client_with_handlers()
    upstream = _Recorder()
    monkeypatch.setattr(socketio.Client, "_handle_eio_message",
                        lambda self, data: upstream(data))
    monkeypatch.setattr(client, "logger", logging.getLogger("watchers_bot.test.verbose"))
    client.logger.setLevel(logging.INFO)
    client._handle_eio_message('2["message",{"x":1}]')
    assert upstream.calls == [('2["message",{"x":1}]',)]


def test_packets_the_fast_decoder_refuses_are_decoded_by_upstream(monkeypatch):
    """orjson (when installed) refuses lone surrogates, NaN and integers beyond
    64 bits that the standard json module accepts: upstream decodes those."""
    client, message = _client_with_handlers()

    def refuse(text):
        raise json.JSONDecodeError("refused", text, 0)

    monkeypatch.setattr(wire_socketio, "_DECODE", refuse)
    client._handle_eio_message('2["message",{"text":"\\ud800","n":NaN}]')
    [(payload,)] = message.calls
    assert payload["text"] == "\ud800"
    assert payload["n"] != payload["n"]  # NaN, as python-socketio decodes it


def test_huge_integers_are_refused_as_upstream_refuses_them():
    client, message = _client_with_handlers()
    with pytest.raises(ValueError):  # noqa: PT011 - upstream raises a bare ValueError
        client._handle_eio_message('2["message",{"id":' + "9" * 5000 + "}]")
    assert message.calls == []


def test_undecodable_event_raises_as_upstream_does():
    client, message = _client_with_handlers()
    with pytest.raises(json.JSONDecodeError):
        client._handle_eio_message('2["message", {broken json')
    assert message.calls == []


# --------------------------------------------------------------------------- websocket reader


def _frame(opcode, payload, *, fin=True, mask=False, rsv=0):
    b1 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes((b1, (0x80 if mask else 0) | n))
    elif n < 65536:
        head = struct.pack("!BBH", b1, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b1, (0x80 if mask else 0) | 127, n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


@pytest.fixture
def wire():
    """A WebSocket reading one end of a socket pair; the test writes the other."""
    ours, theirs = socket.socketpair()
    ws = WebSocket()
    ws.sock = ours
    ws.connected = True
    ours.settimeout(5)
    theirs.settimeout(5)
    try:
        yield ws, theirs
    finally:
        ours.close()
        theirs.close()


def test_reader_reads_every_frame_size_and_many_frames_per_read(wire):
    ws, server = wire
    texts = ["4" + "x" * n for n in (0, 1, 124, 125, 126, 65534, 65535, 65536, 300_000)]
    texts += [f"42[\"message\",{i}]" for i in range(2000)]
    data = b"".join(_frame(0x1, t.encode()) for t in texts)
    sender = threading.Thread(target=server.sendall, args=(data,))
    sender.start()
    got = [ws.recv() for _ in texts]
    sender.join(5)
    assert got == texts


def test_reader_handles_frames_split_across_reads(wire):
    ws, server = wire
    data = _frame(0x1, "4héllo".encode()) + _frame(0x2, b"\x00\x01")

    def trickle():
        for i in range(len(data)):
            server.sendall(data[i:i + 1])

    sender = threading.Thread(target=trickle)
    sender.start()
    assert ws.recv() == "4héllo"
    assert ws.recv() == b"\x00\x01"
    sender.join(5)


def test_reader_joins_fragments_answers_pings_and_skips_pongs(wire):
    ws, server = wire
    server.sendall(
        _frame(0x1, b"4frag", fin=False) + _frame(0x9, b"ping!") + _frame(0x0, b"men", fin=False)
        + _frame(0xA, b"") + _frame(0x0, b"ted") + _frame(0x1, b"4masked", mask=True)
    )
    assert ws.recv() == "4fragmented"
    assert ws.recv() == "4masked"
    pong = server.recv(64)
    assert pong[0] == 0x8A  # a FIN PONG frame, masked as a client must
    key, body = pong[2:6], pong[6:]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == b"ping!"


def test_reader_reports_a_close_frame_as_websocket_client_does(wire):
    ws, server = wire
    server.sendall(_frame(0x8, struct.pack("!H", 1000)))
    assert ws.recv() == ""
    assert not ws.connected  # it answered the close


def test_reader_raises_on_protocol_errors_and_bad_utf8(wire):
    ws, server = wire
    server.sendall(_frame(0x1, b"\xff\xfe"))
    with pytest.raises(websocket.WebSocketPayloadException):
        ws.recv()
    server.sendall(_frame(0x1, b"x", rsv=0x40))
    with pytest.raises(websocket.WebSocketProtocolException):
        ws.recv()
    server.sendall(_frame(0x0, b"x"))
    with pytest.raises(websocket.WebSocketProtocolException):
        ws.recv()
    server.sendall(_frame(0x3, b"x"))
    with pytest.raises(websocket.WebSocketProtocolException):
        ws.recv()


def test_reader_raises_websocket_clients_errors_on_timeout_and_eof(wire):
    ws, server = wire
    ws.sock.settimeout(0.05)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    server.sendall(_frame(0x1, b"4half")[:3])
    server.close()
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    assert not ws.connected


_FAST_SEND_ONLY = pytest.mark.skipif(
    not upstream.enabled(upstream.Override.FAST_SEND),
    reason="the direct and batched writes are fast-path overrides (WATCHERS_FAST_PATH=0)")


def _read_client_frames(sock, count):
    """Parse ``count`` masked client frames from ``sock``; returns (opcode, payload) pairs."""
    data = b""
    frames = []
    while len(frames) < count:
        while True:
            if len(data) >= 2:
                n = data[1] & 0x7F
                head = 2 + {126: 2, 127: 8}.get(n, 0) + 4
                if len(data) >= head:
                    if n == 126:
                        n = struct.unpack("!H", data[2:4])[0]
                    elif n == 127:
                        n = struct.unpack("!Q", data[2:10])[0]
                    if len(data) >= head + n:
                        break
            data += sock.recv(65536)
        key, body = data[head - 4:head], data[head:head + n]
        frames.append((data[0], bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        data = data[head + n:]
    return frames


@_FAST_SEND_ONLY
def test_batched_writes_are_separate_masked_frames_in_order(wire):
    ws, server = wire
    texts = ["4" + str(i) * (i % 300) for i in range(200)]
    got = []
    reader = threading.Thread(target=lambda: got.extend(
        _read_client_frames(server, len(texts) + 1)))
    reader.start()
    ws.send_texts(texts)
    ws.send_texts([])
    ws.send_texts(["4last"])
    reader.join(5)
    frames = got
    assert [op for op, _ in frames] == [0x81] * (len(texts) + 1)
    assert [body.decode() for _, body in frames] == [*texts, "4last"]


# --------------------------------------------------------------------------- direct writes


@_FAST_SEND_ONLY
def test_direct_write_sends_a_masked_frame_at_once(wire):
    ws, server = wire
    assert ws.send_direct("42[\"x\"]")
    [(op, body)] = _read_client_frames(server, 1)
    assert (op, body) == (0x81, b'42["x"]')


@_FAST_SEND_ONLY
def test_direct_write_is_refused_on_a_blocking_socket(wire):
    ws, _ = wire
    ws.sock.settimeout(None)  # a blocking descriptor: os.write could block
    assert not ws.send_direct("4x")


@_FAST_SEND_ONLY
def test_a_partial_direct_write_is_finished_before_anything_else(wire):
    ws, server = wire
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = "4" + "y" * 2_000_000
    assert ws.send_direct(big)  # taken: the kernel has part of it, the rest waits
    assert ws._tail
    assert not ws.send_direct("4after")  # nothing may overtake the unfinished frame
    got = []
    reader = threading.Thread(target=lambda: got.extend(_read_client_frames(server, 2)))
    reader.start()
    ws.send_texts(["4next"])  # any write finishes the tail first
    reader.join(10)
    assert [body.decode() for _, body in got] == [big, "4next"]
    assert not ws._tail


@_FAST_SEND_ONLY
def test_sends_from_one_thread_keep_their_order_lone_or_pipelined(emulator, monkeypatch):
    """Lone requests are written directly, the ones that follow queued and
    batched: the server reads them all off the socket in the order they were made.

    The emulator handles a socket's requests on its reader thread, in the order the
    frames arrived (``inline_requests``, its default), so its records are the wire order.
    """
    direct = []
    real = WebSocket.send_direct

    def counting(self, text):
        taken = real(self, text)
        direct.append(taken)
        return taken

    monkeypatch.setattr(WebSocket, "send_direct", counting)
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        done = threading.Semaphore(0)
        acked = 0
        texts = [f"m{i}" for i in range(600)]
        for i, text in enumerate(texts):
            client.emit("external/send", {"roomId": "r", "apiKey": "test-key",
                                          "userId": "b", "text": text},
                        callback=lambda *args: done.release())
            if i % 50 == 0:  # now and then wait for every ack: the next send is lone
                while acked < i + 1:
                    assert done.acquire(timeout=10)
                    acked += 1
        while acked < len(texts):
            assert done.acquire(timeout=10)
            acked += 1
        assert [m.text for m in emulator.wait_for_sent(len(texts), timeout=10)] == texts
        assert sum(direct) >= 10  # the lone ones went out directly
        assert len(direct) < len(texts)  # the others were queued
    finally:
        client.disconnect()


def test_the_tested_range_is_the_one_setup_cfg_and_ci_declare():
    """TESTED (the runtime gate), setup.cfg's install_requires and the CI run on the
    lower bounds name the same versions."""
    import configparser
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    requires = cfg["options"]["install_requires"]
    ci = (root / ".ci" / "run").read_text()
    for dist, (low, high) in upstream.TESTED.items():
        name = dist.replace("_", "-")
        low_s, high_s = ".".join(map(str, low)), ".".join(map(str, high))
        assert re.search(rf"^{name}(\[\w+\])? >= {re.escape(low_s)}, < {re.escape(high_s)}$",
                         requires, re.M), (name, requires)
        assert re.search(rf"'{name}(\[\w+\])?=={re.escape(low_s)}(\.0)?'", ci), (name, low_s)
