"""The emulator, driven over real sockets by python-socketio's own client
(``Probe``) and, where frame order matters, by a hand-rolled Engine.IO
client on websocket-client (``Wire``)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest
import socketio
import websocket

from watchers_bot.emulator import DEFAULT_ERROR, Emulator, SentMessage
from watchers_bot.protocol import message_payload, parse_message, read_send_ack

TOKEN, KEY = "test-token", "test-key"
_UNSET: Any = object()


# --------------------------------------------------------------------------- helpers


class Probe:
    """A raw python-socketio client that records everything it sees."""

    def __init__(self, emu: Emulator, *, token: str = TOKEN, auth: Any = _UNSET,
                 reconnection: bool = False) -> None:
        self.emu = emu
        self.auth = {"bearer": token} if auth is _UNSET else auth
        self.sio = socketio.Client(
            handle_sigint=False, reconnection=reconnection,
            reconnection_delay=0.1, reconnection_delay_max=0.2, randomization_factor=0,
        )
        self.events: List[Tuple[str, tuple]] = []
        self.disconnects: List[Any] = []
        self.connect_errors: List[Any] = []
        self.connects = 0
        self._cond = threading.Condition()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("*", self._on_event)

    def _record(self, fn: Callable[[], None]) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def _on_connect(self) -> None:
        def bump() -> None:
            self.connects += 1
        self._record(bump)

    def _on_disconnect(self, reason: Any = None) -> None:
        self._record(lambda: self.disconnects.append(reason))

    def _on_connect_error(self, data: Any = None) -> None:
        self._record(lambda: self.connect_errors.append(data))

    def _on_event(self, event: str, *args: Any) -> None:
        self._record(lambda: self.events.append((event, args)))

    def connect(self) -> Probe:
        self.sio.connect(self.emu.url, auth=self.auth, transports=["websocket"], wait_timeout=5)
        return self

    @property
    def sid(self) -> str:
        return self.sio.get_sid()

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what or predicate}; "
                                         f"events={self.events!r} disconnects={self.disconnects}")
                self._cond.wait(left)

    def received(self, event: str = "message") -> List[Any]:
        with self._cond:
            return [args[0] if len(args) == 1 else args for e, args in self.events if e == event]

    def wait_received(self, count: int, event: str = "message", timeout: float = 5.0) -> List[Any]:
        self.wait(lambda: len(self.received(event)) >= count, timeout, f"{count} {event} events")
        return self.received(event)

    def wait_disconnect(self, timeout: float = 5.0) -> Any:
        self.wait(lambda: bool(self.disconnects), timeout, "a disconnect")
        return self.disconnects[-1]

    def request(self, event: str, *args: Any, timeout: float = 5.0) -> tuple:
        """Emit with an ack callback; return the ack's arguments as a tuple."""
        done = threading.Event()
        answer: List[tuple] = []

        def callback(*ack: Any) -> None:
            answer.append(ack)
            done.set()

        data = args[0] if len(args) == 1 else tuple(args) if args else None
        self.sio.emit(event, data, callback=callback)
        if not done.wait(timeout):
            raise TimeoutError(f"no ack for {event} within {timeout}s")
        return answer[0]

    def listen(self, room: str, key: str = KEY) -> tuple:
        return self.request("external/listen", {"roomId": room, "apiKey": key})

    def send(self, room: str, text: str, *, key: str = KEY, user: str = "bot-1") -> tuple:
        payload = {"roomId": room, "apiKey": key, "userId": user, "text": text}
        return self.request("external/send", payload)

    def close(self) -> None:
        self.sio.shutdown()


class Wire:
    """A minimal Engine.IO v4 / Socket.IO v5 client that keeps frame order."""

    def __init__(self, emu: Emulator, token: str = TOKEN) -> None:
        url = emu.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(url, timeout=5)
        frame = self.ws.recv()
        assert frame.startswith("0"), frame
        self.open = json.loads(frame[1:])
        self.ws.send("40" + json.dumps({"bearer": token}))
        frame = self.recv()
        assert frame.startswith("40{"), frame
        self.sid = json.loads(frame[2:])["sid"]
        self._ids = 0

    def recv(self) -> str:
        while True:
            frame = self.ws.recv()
            if frame == "2":  # Engine.IO ping
                self.ws.send("3")
                continue
            return frame

    def request(self, event: str, payload: Any) -> list:
        self._ids += 1
        prefix = f"43{self._ids}"
        self.ws.send(f"42{self._ids}" + json.dumps([event, payload]))
        frame = self.recv()
        assert frame.startswith(prefix), frame
        return json.loads(frame[len(prefix):])

    def events(self, count: int) -> List[list]:
        out = []
        while len(out) < count:
            frame = self.recv()
            assert frame.startswith("42"), frame
            out.append(json.loads(frame[2:]))
        return out

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def probe(emulator):
    """Factory of connected (or not, ``connect=False``) Probes, closed after the test."""
    made: List[Probe] = []

    def make(*, connect: bool = True, **kwargs: Any) -> Probe:
        p = Probe(emulator, **kwargs)
        made.append(p)
        return p.connect() if connect else p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def wire(emulator):
    """Factory of connected Wires, closed after the test."""
    made: List[Wire] = []

    def make(**kwargs: Any) -> Wire:
        w = Wire(emulator, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def refused_reason(emu: Emulator, auth: Any) -> Any:
    p = Probe(emu, auth=auth)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            p.connect()
        p.wait(lambda: bool(p.connect_errors), what="connect_error")
        return p.connect_errors[0]
    finally:
        p.close()


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- connecting


def test_accepts_a_valid_token(emulator, probe):
    p = probe()
    assert emulator.wait_for_clients(1) == [p.sid]
    assert emulator.connections == 1
    assert emulator.refused == 0
    assert emulator.url == f"http://127.0.0.1:{emulator.port}"


def test_refuses_an_invalid_token(emulator):
    assert refused_reason(emulator, {"bearer": "wrong"}) == {
        "message": "Unauthorized: invalid bearer token"
    }
    assert emulator.clients == []
    assert emulator.connections == 0
    assert emulator.refused == 1


@pytest.mark.parametrize("auth", [None, {}, {"token": TOKEN}, {"bearer": ""}, {"bearer": 5}])
def test_refuses_a_missing_bearer_with_its_own_message(emulator, auth):
    reason = refused_reason(emulator, auth)
    assert reason["message"].startswith("Unauthorized: missing bearer token")
    assert emulator.refused == 1


def test_serves_websocket_only(emulator):
    c = socketio.Client(handle_sigint=False, reconnection=False)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            c.connect(emulator.url, auth={"bearer": TOKEN}, transports=["polling"],
                      wait_timeout=2)
    finally:
        c.shutdown()
    assert emulator.connections == 0


def test_many_clients(emulator, probe):
    probes = [probe() for _ in range(5)]
    assert set(emulator.wait_for_clients(5)) == {p.sid for p in probes}
    probes[0].close()
    assert probes[0].sid not in emulator.wait_for_clients(4)


# --------------------------------------------------------------------------- listen


def test_listen_acks_ok_with_the_room(emulator, probe):
    p = probe()
    assert p.listen("room-1") == ({"status": "ok", "roomId": "room-1"},)
    assert emulator.wait_for_listeners("room-1") == {p.sid}
    assert p.listen("room-1") == ({"status": "ok", "roomId": "room-1"},)  # idempotent
    assert emulator.listeners("room-1") == {p.sid}
    assert emulator.listeners("other") == set()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (({"apiKey": KEY},), 400, "roomId is missing"),
        (({"roomId": "", "apiKey": KEY},), 400, "roomId must be a non-empty string"),
        (({"roomId": 7, "apiKey": KEY},), 400, "roomId must be a non-empty string"),
        (({"roomId": "  ", "apiKey": KEY},), 400,
         "roomId must be a non-empty string, not only whitespace"),
        (({"roomId": "r"},), 400, "apiKey is missing"),
        (({"roomId": "r", "apiKey": ""},), 400, "apiKey must be a non-empty string"),
        (({"roomId": "r", "apiKey": "wrong"},), 401, "Unauthorized: invalid apiKey"),
        ((["r", KEY],), 400, "payload must be an object"),
        (("r",), 400, "payload must be an object"),
        ((), 400, "payload must be an object"),
    ],
)
def test_listen_error_acks(emulator, probe, args, code, message):
    p = probe()
    (answer,) = p.request("external/listen", *args)
    assert answer["status"] == "error"
    assert answer["statusCode"] == code
    assert answer["message"].startswith(message)
    assert emulator.listeners("r") == set()


def test_revoked_api_key_is_refused(emulator, probe):
    p = probe()
    emulator.revoke_api_key(KEY)
    assert p.listen("r")[0]["statusCode"] == 401
    emulator.add_api_key(KEY)
    assert p.listen("r") == ({"status": "ok", "roomId": "r"},)


# --------------------------------------------------------------------------- send


def test_send_acks_with_no_arguments_and_is_recorded(emulator, probe):
    p = probe()
    before = time.monotonic()
    assert p.send("room-1", "hello") == ()
    read_send_ack(())  # what the client library will make of it: success
    (sent,) = emulator.wait_for_sent(1)
    assert isinstance(sent, SentMessage)
    assert (sent.room_id, sent.text, sent.user_id, sent.sid) == ("room-1", "hello", "bot-1", p.sid)
    assert sent.payload == {"roomId": "room-1", "apiKey": "***", "userId": "bot-1",
                            "text": "hello"}
    assert KEY not in repr(sent)
    assert KEY not in str(sent.payload)
    assert before <= sent.at <= time.monotonic()
    assert isinstance(sent.message_id, int)


def test_send_accepts_long_texts(emulator, probe):
    p = probe()
    text = "x" * 100_000
    assert p.send("r", text) == ()
    assert emulator.wait_for_sent(1)[0].text == text


_GOOD = {"roomId": "r", "apiKey": KEY, "userId": "bot", "text": "hi"}


@pytest.mark.parametrize("field", ["roomId", "apiKey", "userId", "text"])
@pytest.mark.parametrize(("value", "message"), [
    (None, "is missing"), ("", "must be a non-empty string"), (42, "must be a non-empty string"),
])
def test_send_error_ack_for_each_field(emulator, probe, field, value, message):
    p = probe()
    payload = {k: v for k, v in _GOOD.items() if k != field or value is not None}
    if value is not None:
        payload[field] = value
    (answer,) = p.request("external/send", payload)
    assert answer == {"status": "error", "statusCode": 400, "message": f"{field} {message}"}
    assert emulator.sent == []


@pytest.mark.parametrize("args", [([1, 2],), ("text",), (None,), ()])
def test_send_payload_not_an_object(emulator, probe, args):
    (answer,) = probe().request("external/send", *args)
    assert answer["statusCode"] == 400
    assert answer["message"].startswith("payload must be an object")
    assert emulator.sent == []


def test_send_with_a_wrong_api_key_is_401(emulator, probe):
    (answer,) = probe().request("external/send", dict(_GOOD, apiKey="nope"))
    assert answer == {"status": "error", "statusCode": 401,
                      "message": "Unauthorized: invalid apiKey"}
    assert emulator.sent == []


def test_unknown_events_get_no_ack_but_are_recorded(emulator, probe):
    p = probe()
    with pytest.raises(TimeoutError):
        p.request("external/unknown", {"apiKey": KEY}, timeout=0.3)
    (record,) = emulator.wait_for_requests(1, "external/unknown")
    assert record.sid == p.sid
    assert record.payload == {"apiKey": "***"}
    assert record.mode is None


# --------------------------------------------------------------------------- messages


def test_messages_go_to_the_rooms_listeners_only(emulator, probe):
    a, b, c = probe(), probe(), probe()
    a.listen("r1")
    b.listen("r2")
    payload = emulator.post("r1", "hello", user_id="alice")
    assert payload == message_payload("r1", payload["message"]["id"], "hello", "alice", "demo")
    assert a.wait_received(1) == [payload]
    msg = parse_message(a.received()[0])
    assert (msg.room_id, msg.text, msg.user_id, msg.project) == ("r1", "hello", "alice", "demo")
    emulator.post("r2", "for b")
    assert b.wait_received(1)[0]["message"]["text"] == "for b"
    # a and c got nothing else: a marker posted last reaches a, after everything before it
    emulator.post("r1", "marker")
    assert [m["message"]["text"] for m in a.wait_received(2)] == ["hello", "marker"]
    assert c.received() == []
    assert b.received()[0]["roomId"] == "r2"
    assert len(b.received()) == 1


def test_post_extra_keys_go_to_the_top_level(emulator, probe):
    p = probe()
    p.listen("r")
    payload = emulator.post("r", "hi", mentions=["bot"], userId="someone-else")
    assert payload["mentions"] == ["bot"]
    assert payload["userId"] == "someone-else"
    assert p.wait_received(1) == [payload]


def test_message_ids_are_increasing_ints(emulator, probe):
    p = probe()
    p.listen("r")
    ids = [emulator.post("r", str(i))["message"]["id"] for i in range(3)]
    p.send("r", "bot says")
    ids.append(emulator.post("r", "after")["message"]["id"])
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert emulator.wait_for_sent(1)[0].message_id == ids[2] + 1


def test_sender_receives_its_own_message_by_default(emulator, probe):
    sender, other = probe(), probe()
    sender.listen("r")
    other.listen("r")
    sender.send("r", "echo me", user="bot-9")
    for p in (sender, other):
        (msg,) = p.wait_received(1)
        assert msg["message"]["text"] == "echo me"
        assert msg["userId"] == "bot-9"
        assert msg["message"]["id"] == emulator.sent[0].message_id


def test_echo_sender_off(emulator, probe):
    emulator.echo_sender = False
    sender, other = probe(), probe()
    sender.listen("r")
    other.listen("r")
    sender.send("r", "no echo")
    assert other.wait_received(1)[0]["message"]["text"] == "no echo"
    emulator.post("r", "marker")
    assert [m["message"]["text"] for m in sender.wait_received(1)] == ["marker"]


def test_echo_sender_constructor_flag():
    with Emulator([TOKEN], [KEY], echo_sender=False) as emu:
        assert emu.echo_sender is False


def test_post_and_post_many_keep_order_on_the_wire(emulator, wire):
    w = wire()
    assert w.request("external/listen", {"roomId": "r", "apiKey": KEY}) == [
        {"status": "ok", "roomId": "r"}
    ]
    texts = [f"bulk {i}" for i in range(2500)]  # more than one pre-framed batch
    emulator.post("r", "first")
    assert emulator.post_many("r", texts, user_id="crowd") == 2500
    emulator.post("r", "last")
    events = w.events(2502)
    assert all(e[0] == "message" for e in events)
    assert [e[1]["message"]["text"] for e in events] == ["first", *texts, "last"]
    ids = [e[1]["message"]["id"] for e in events]
    assert ids == list(range(ids[0], ids[0] + 2502))
    bulk = events[1][1]
    assert bulk == message_payload("r", ids[1], "bulk 0", "crowd", "demo")


def test_post_many_reaches_every_listener_and_escapes_like_post(emulator, wire):
    a, b = wire(), wire()
    for w in (a, b):
        w.request("external/listen", {"roomId": "r", "apiKey": KEY})
    odd = ['quote " backslash \\ newline \n', "unicode é ✓ 😀", "x" * 70_000]
    emulator.post_many("r", odd)
    reference = [emulator.post("r", t) for t in odd]
    for w in (a, b):
        events = w.events(6)
        assert [e[1]["message"]["text"] for e in events] == odd + odd
        for bulk, single in zip(events[:3], reference):
            assert dict(bulk[1], message={"text": bulk[1]["message"]["text"]}) == dict(
                single, message={"text": single["message"]["text"]})


def test_post_many_slow_path_gives_the_same_frames(emulator, wire):
    texts = ["a", 'quote " backslash \\ newline \n', "unicode é ✓ 😀"]
    w = wire()
    w.request("external/listen", {"roomId": "r", "apiKey": KEY})
    emulator.post_many("r", texts)
    fast = w.events(3)
    slow_emu = Emulator(tokens=[TOKEN], api_keys=[KEY], preframed_posts=False).start()
    try:
        s = Wire(slow_emu)
        try:
            s.request("external/listen", {"roomId": "r", "apiKey": KEY})
            slow_emu.post_many("r", texts)
            slow = s.events(3)
        finally:
            s.close()
    finally:
        slow_emu.stop()
    assert [e[1]["message"]["text"] for e in slow] == texts
    assert [e[0] for e in slow] == [e[0] for e in fast]
    assert [sorted(e[1]) for e in slow] == [sorted(e[1]) for e in fast]


def test_post_many_without_listeners(emulator):
    assert emulator.post_many("nobody", ["a", "b"]) == 2
    assert emulator.post_many("nobody", []) == 0
    assert emulator.post("nobody", "c")["message"]["id"] == 3


def test_post_many_delivers_a_large_batch_whole_and_in_order(emulator, wire):
    # its speed is measured by bench/ (burst receive), not asserted here
    w = wire()
    w.request("external/listen", {"roomId": "r", "apiKey": KEY})
    texts = [f"{i:08d}" + "y" * 92 for i in range(20_000)]
    emulator.post_many("r", texts)
    assert [event[1]["message"]["text"] for event in w.events(20_000)] == texts


def test_concurrent_posts_keep_ids_in_wire_order(emulator, wire):
    w = wire()
    w.request("external/listen", {"roomId": "r", "apiKey": KEY})

    def poster(n: int) -> None:
        for i in range(50):
            if i % 10 == 0:
                emulator.post_many("r", [f"{n}-{i}-bulk"] * 5)
            else:
                emulator.post("r", f"{n}-{i}")

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    ids = [e[1]["message"]["id"] for e in w.events(4 * (45 + 25))]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_post_validates_arguments(emulator):
    with pytest.raises(ValueError, match="room_id"):
        emulator.post("", "x")
    with pytest.raises(TypeError):
        emulator.post("r", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        emulator.post_many("r", ["ok", 3])  # type: ignore[list-item]


# --------------------------------------------------------------------------- records


def test_wait_for_sent_and_clear(emulator, probe):
    p = probe()
    for i in range(3):
        p.send("r", f"m{i}")
    assert [m.text for m in emulator.wait_for_sent(3)] == ["m0", "m1", "m2"]
    with pytest.raises(TimeoutError, match=r"4 sent message\(s\); got 3 \(last: 'm0', 'm1'"):
        emulator.wait_for_sent(4, timeout=0.1)
    assert [r.event for r in emulator.requests] == ["external/send"] * 3
    emulator.clear_sent()
    assert emulator.sent == []
    assert emulator.requests == []


def test_wait_for_sent_wakes_up_on_a_send_from_another_thread(emulator, probe):
    p = probe()
    timer = threading.Timer(0.2, p.sio.emit, ("external/send", dict(_GOOD, text="later")))
    timer.start()
    assert emulator.wait_for_sent(1, timeout=5)[0].text == "later"
    timer.join(5)


def test_wait_timeouts_say_what_they_waited_for(emulator):
    with pytest.raises(TimeoutError, match=r"2 connected client\(s\); 0 connected"):
        emulator.wait_for_clients(2, timeout=0.1)
    with pytest.raises(TimeoutError, match=r"1 listener\(s\) of room 'r'"):
        emulator.wait_for_listeners("r", timeout=0.1)
    with pytest.raises(TimeoutError, match="external/send"):
        emulator.wait_for_requests(1, "external/send", timeout=0.1)


def test_no_secret_in_logs(emulator, probe, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    p = probe()
    p.listen("r")
    p.send("r", "hi")
    emulator.post("r", "x")
    refused_reason(emulator, {"bearer": "secret-bad-token"})

    def boom(*args: Any) -> None:
        raise RuntimeError("handler bug")

    from watchers_bot.emulator import gateway

    monkeypatch.setattr(gateway, "validate_request", boom)
    assert p.send("r", "hi") == (DEFAULT_ERROR,)  # a handler bug is an error ack...
    monkeypatch.undo()
    assert p.send("r", "again") == ()  # ...and the server goes on
    assert "handler bug" in caplog.text
    for secret in (TOKEN, KEY, "secret-bad-token"):
        assert secret not in caplog.text


# --------------------------------------------------------------------------- faults


def test_drop_is_a_transport_error_and_the_client_reconnects(emulator, probe):
    p = probe(reconnection=True)
    p.listen("r")
    old = p.sid
    assert emulator.drop(old) == 1
    assert old not in emulator.clients  # drop() returns once the server saw the link go
    assert emulator.listeners("r") == set()
    assert p.wait_disconnect() == p.sio.reason.TRANSPORT_ERROR
    p.wait(lambda: p.connects == 2, what="reconnect")
    (new,) = emulator.wait_for_clients(1)
    assert new != old
    assert emulator.connections == 2
    assert emulator.listeners("r") == set()  # subscriptions belong to the old socket
    p.listen("r")
    assert emulator.wait_for_listeners("r") == {new}


def test_drop_all(emulator, probe):
    a, b = probe(), probe()
    assert emulator.drop() == 2
    assert a.wait_disconnect() == b.wait_disconnect() == a.sio.reason.TRANSPORT_ERROR
    emulator.wait_for_clients(0)


def test_kick_is_a_server_disconnect(emulator, probe):
    a, b = probe(reconnection=True), probe()
    assert emulator.kick(a.sid) == 1
    assert a.wait_disconnect() == a.sio.reason.SERVER_DISCONNECT
    assert emulator.wait_for_clients(1) == [b.sid]
    assert b.disconnects == []
    assert emulator.kick() == 1
    assert b.wait_disconnect() == b.sio.reason.SERVER_DISCONNECT
    emulator.wait_for_clients(0)
    assert a.connects == 1  # python-socketio does not retry a server disconnect


def test_fault_methods_reject_unknown_sids(emulator):
    for method in (emulator.drop, emulator.kick, emulator.freeze):
        with pytest.raises(ValueError, match="no connected client"):
            method("nope")
    with pytest.raises(ValueError, match="no connected client"):
        emulator.push_raw("x", to="nope")


def test_restart_keeps_the_port_and_loses_subscriptions(emulator, probe):
    p = probe()
    p.listen("r")
    p.send("r", "before")
    port = emulator.port
    emulator.restart()
    assert p.wait_disconnect() == p.sio.reason.SERVER_DISCONNECT
    assert emulator.port == port
    assert emulator.running
    assert emulator.listeners("r") == set()
    assert emulator.clients == []
    assert [m.text for m in emulator.sent] == ["before"]  # records survive
    q = probe()
    assert q.listen("r") == ({"status": "ok", "roomId": "r"},)
    q.send("r", "after")
    assert [m["message"]["text"] for m in q.wait_received(1)] == ["after"]
    assert emulator.connections == 2


def test_restart_stays_down_for_a_while(emulator, probe):
    p = probe()
    t = threading.Thread(target=emulator.restart, kwargs={"down_for": 1.0})
    t.start()
    try:
        emulator.wait_for(lambda e: not e.running, what="the restart to stop the server")
        assert not port_is_open(emulator.port)
        with pytest.raises(RuntimeError, match="not running"):
            emulator.post("r", "x")
    finally:
        t.join(10)
    assert emulator.running
    assert port_is_open(emulator.port)
    assert p.wait_disconnect() == p.sio.reason.SERVER_DISCONNECT
    probe()


def test_restart_with_drop_lets_clients_reconnect(emulator, probe):
    p = probe(reconnection=True)
    emulator.restart(drop=True)
    assert p.wait_disconnect() == p.sio.reason.TRANSPORT_ERROR
    p.wait(lambda: p.connects == 2, what="reconnect")
    assert emulator.wait_for_clients(1) == [p.sid]


def test_revoke_token_disconnects_and_refuses(emulator, probe):
    emulator.add_token("other-token")
    p = probe()
    keep = probe(token="other-token")
    assert emulator.revoke_token(TOKEN) == 1
    assert p.wait_disconnect() == p.sio.reason.SERVER_DISCONNECT
    assert emulator.wait_for_clients(1) == [keep.sid]
    assert refused_reason(emulator, {"bearer": TOKEN})["message"] == (
        "Unauthorized: invalid bearer token"
    )
    emulator.add_token(TOKEN)
    probe()


def test_set_ping_is_announced_to_new_connections(emulator, probe):
    old = probe()
    emulator.set_ping(1, 2)
    new = probe()
    assert (new.sio.eio.ping_interval, new.sio.eio.ping_timeout) == (1, 2)
    assert (old.sio.eio.ping_interval, old.sio.eio.ping_timeout) == (25, 20)
    with pytest.raises(ValueError, match="ping interval"):
        emulator.set_ping(0, 1)


def test_short_pings_close_a_client_that_stopped_answering(emulator, wire):
    emulator.set_ping(1, 1)
    w = wire()  # answers pings only while someone calls recv(): nobody will
    assert w.open["pingInterval"] == 1000
    assert w.open["pingTimeout"] == 1000
    emulator.wait_for_clients(1)
    emulator.wait_for_clients(0, timeout=5)  # noticed within interval + timeout


def test_freeze_looks_half_open_to_the_client(emulator, probe):
    emulator.set_ping(1, 1)
    p = probe(reconnection=True)
    p.listen("r")
    assert emulator.freeze(p.sid) == 1
    emulator.post("r", "held back")
    assert p.wait_disconnect(timeout=6) == p.sio.reason.TRANSPORT_ERROR
    p.wait(lambda: p.connects == 2, what="reconnect")
    assert "held back" not in [m["message"]["text"] for m in p.received()]


def test_thaw_releases_what_was_held(emulator, probe):
    p = probe()
    p.listen("r")
    emulator.freeze()
    emulator.post("r", "held")
    with pytest.raises(AssertionError):
        p.wait_received(1, timeout=0.3)
    emulator.thaw()
    assert p.wait_received(1)[0]["message"]["text"] == "held"


def test_oversized_packets_close_the_connection():
    with Emulator([TOKEN], [KEY], max_message_size=10_000) as emu:
        p = Probe(emu).connect()
        try:
            p.sio.emit("external/send", dict(_GOOD, text="x" * 20_000))
            assert p.wait_disconnect() == p.sio.reason.TRANSPORT_ERROR
            assert emu.sent == []
        finally:
            p.close()


# --------------------------------------------------------------------------- ack modes


@pytest.mark.parametrize("event", ["external/send", "external/listen"])
def test_ack_delay(emulator, probe, event):
    emulator.set_ack(event, "delay", delay=0.5)
    p = probe()
    payload = dict(_GOOD) if event == "external/send" else {"roomId": "r", "apiKey": KEY}
    t0 = time.monotonic()
    (answer,) = p.request(event, payload) or (None,)
    assert time.monotonic() - t0 >= 0.45
    if event == "external/listen":
        assert answer == {"status": "ok", "roomId": "r"}
    else:
        assert answer is None
        assert len(emulator.sent) == 1


def test_a_delayed_ack_holds_up_nobody_else(emulator, probe):
    emulator.set_ack("external/send", "delay", delay=2.0, times=1)
    slow, fast = probe(), probe()
    done = threading.Event()
    threading.Thread(target=lambda: (slow.send("r", "slow"), done.set()), daemon=True).start()
    emulator.wait_for_sent(1)
    t0 = time.monotonic()
    assert fast.send("r", "fast") == ()
    assert fast.listen("r")[0]["status"] == "ok"
    assert slow.send("r", "also fast") == ()  # same socket, next request: not held either
    assert time.monotonic() - t0 < 1.5
    assert not done.is_set()
    assert done.wait(5)


def test_ack_withhold_still_does_the_work(emulator, probe):
    emulator.set_ack("external/send", "withhold")
    emulator.set_ack("external/listen", "withhold")
    p = probe()
    with pytest.raises(TimeoutError):
        p.request("external/listen", {"roomId": "r", "apiKey": KEY}, timeout=0.3)
    assert emulator.listeners("r") == {p.sid}
    with pytest.raises(TimeoutError):
        p.request("external/send", dict(_GOOD), timeout=0.3)
    assert [m.text for m in emulator.wait_for_sent(1)] == ["hi"]
    assert p.wait_received(1)[0]["message"]["text"] == "hi"
    assert [r.mode for r in emulator.requests] == ["withhold", "withhold"]


@pytest.mark.parametrize("event", ["external/send", "external/listen"])
def test_ack_error(emulator, probe, event):
    p = probe()
    payload = dict(_GOOD) if event == "external/send" else {"roomId": "r", "apiKey": KEY}
    emulator.set_ack(event, "error")
    assert p.request(event, payload) == (DEFAULT_ERROR,)
    emulator.set_ack(event, "error", error="Too many requests")
    assert p.request(event, payload) == ("Too many requests",)
    emulator.set_ack(event, "error", error={"statusCode": 429, "message": "slow down"})
    assert p.request(event, payload) == ({"statusCode": 429, "message": "slow down"},)
    assert emulator.sent == []
    assert emulator.listeners("r") == set()
    emulator.set_ack(event)
    assert p.request(event, payload) in [(), ({"status": "ok", "roomId": "r"},)]


@pytest.mark.parametrize("event", ["external/send", "external/listen"])
def test_ack_exception_is_a_nestjs_event(emulator, probe, event):
    p = probe()
    payload = dict(_GOOD) if event == "external/send" else {"roomId": "r", "apiKey": KEY}
    emulator.set_ack(event, "exception")
    with pytest.raises(TimeoutError):
        p.request(event, payload, timeout=0.3)
    (body,) = p.wait_received(1, event="exception")
    assert body == {"status": "error", "message": "Internal server error",
                    "cause": {"pattern": event, "data": payload}}
    assert emulator.sent == []
    assert emulator.listeners("r") == set()

    emulator.set_ack(event, "exception", error="Forbidden resource")
    with pytest.raises(TimeoutError):
        p.request(event, payload, timeout=0.3)
    assert p.wait_received(2, event="exception")[1]["message"] == "Forbidden resource"


def test_ack_mode_for_a_number_of_times(emulator, probe):
    p = probe()
    emulator.set_ack("external/send", "error", times=2)
    assert p.send("r", "1") == (DEFAULT_ERROR,)
    assert p.send("r", "2") == (DEFAULT_ERROR,)
    assert p.send("r", "3") == ()
    assert [m.text for m in emulator.sent] == ["3"]


def test_set_ack_validates(emulator):
    with pytest.raises(ValueError, match="event"):
        emulator.set_ack("message", "error")
    with pytest.raises(ValueError, match="mode"):
        emulator.set_ack("external/send", "sometimes")
    with pytest.raises(ValueError, match="delay"):
        emulator.set_ack("external/send", "delay")
    with pytest.raises(ValueError, match="JSON"):
        emulator.set_ack("external/send", "error", error=object())
    with pytest.raises(ValueError, match="times"):
        emulator.set_ack("external/send", "error", times=0)


# --------------------------------------------------------------------------- push_raw


def test_push_raw_to_a_sid_a_room_or_everyone(emulator, probe):
    a, b = probe(), probe()
    a.listen("r")
    assert emulator.push_raw("message", "not an object", to=b.sid) == 1
    assert b.wait_received(1) == ["not an object"]
    assert emulator.push_raw("message", {"roomId": "r"}, 7, room="r") == 1
    assert a.wait_received(1) == [({"roomId": "r"}, 7)]
    assert emulator.push_raw("custom") == 2
    for p in (a, b):
        p.wait_received(1, event="custom")
        assert p.received("custom") == [()]
    assert b.received() == ["not an object"]
    with pytest.raises(ValueError, match="not both"):
        emulator.push_raw("x", to=a.sid, room="r")


def test_push_packet_sends_raw_frames(emulator, wire):
    w = wire()
    assert emulator.push_packet('2["message",{"roomId":') == 1
    assert w.recv() == '42["message",{"roomId":'
    emulator.push_packet('2["message",1,2]', to=w.sid)
    assert w.recv() == '42["message",1,2]'


# --------------------------------------------------------------------------- lifecycle


def test_stop_is_idempotent_and_leaves_nothing_behind(probe):
    before = {t for t in threading.enumerate() if not t.daemon}
    emu = Emulator([TOKEN], [KEY]).start()
    port = emu.port
    p = Probe(emu).connect()
    try:
        p.listen("r")
        t0 = time.monotonic()
        emu.stop()
        assert time.monotonic() - t0 < 3
        assert p.wait_disconnect() == p.sio.reason.SERVER_DISCONNECT
        emu.stop()
        assert not emu.running
        assert not port_is_open(port)
        assert emu.clients == []
        assert emu.listeners("r") == set()
        with pytest.raises(RuntimeError, match="not running"):
            emu.post("r", "x")
    finally:
        p.close()
    deadline = time.monotonic() + 5
    while {t for t in threading.enumerate() if not t.daemon} - before:
        assert time.monotonic() < deadline, threading.enumerate()
        time.sleep(0.05)


def test_stop_with_a_stalled_client_is_bounded():
    emu = Emulator([TOKEN], [KEY]).start()
    w = Wire(emu)  # never reads again
    try:
        emu.set_ack("external/send", "delay", delay=30)
        w.ws.send("421" + json.dumps(["external/send", _GOOD]))
        emu.wait_for_sent(1)
        emu.freeze()
        t0 = time.monotonic()
        emu.stop(timeout=1.0)
        assert time.monotonic() - t0 < 2.5
        assert not port_is_open(emu.port)
    finally:
        w.close()


def test_context_manager_and_start_again():
    with Emulator([TOKEN], [KEY]) as emu:
        assert emu.running
        assert port_is_open(emu.port)
        assert emu.start() is emu  # already running: no-op
        port = emu.port
    assert not emu.running
    assert not port_is_open(port)
    emu.start()
    try:
        assert emu.port == port
        assert "running" in repr(emu)
        assert TOKEN not in repr(emu)
    finally:
        emu.stop()


def test_url_before_start():
    emu = Emulator()
    with pytest.raises(RuntimeError, match="start"):
        _ = emu.url
    assert emu.port == 0
    assert not emu.running
    emu.stop()  # stopping a never-started emulator is fine


def test_constructor_validates():
    with pytest.raises(TypeError):
        Emulator(tokens="test-token")
    with pytest.raises(ValueError, match="token"):
        Emulator(tokens=[""])
    with pytest.raises(ValueError, match="ping interval"):
        Emulator(ping_interval=-1)


def test_busy_port_is_an_oserror(emulator):
    with pytest.raises(OSError, match="in use"):
        Emulator(port=emulator.port).start()


def import_error_after(setup: str) -> str:
    """The ImportError of ``import watchers_bot.emulator`` after ``setup``, in a new
    interpreter (its text, or what went wrong instead)."""
    code = setup + (
        "\ntry:\n"
        "    import watchers_bot.emulator\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    return out.stdout or out.stderr


def test_import_error_names_the_extra():
    assert "watchers-bot[emulator]" in import_error_after(
        "import sys; sys.modules['simple_websocket'] = None")


def test_an_old_python_socketio_is_named_at_import():
    # before 5.18 the manager registers a sid before the connect handler ran, and
    # every request would be answered "socket is not connected"
    said = import_error_after("import socketio.base_manager as m; del m.BaseManager.pre_connect")
    assert "needs python-socketio 5.18 or later (installed: 5." in said
    assert "watchers-bot[emulator]" in said


def test_the_emulator_refuses_what_the_client_refuses(emulator, wire):
    """One field spec (protocol.events.REQUESTS): a blank value the client will
    not send is refused by the emulator too, for every field of every request."""
    from watchers_bot.protocol import REQUESTS, check_id

    w = wire()
    good = {"roomId": "r", "apiKey": KEY, "userId": "bot", "text": "hi"}
    for event, fields in REQUESTS.items():
        for field in fields:
            with pytest.raises(ValueError, match=field.argument + " must not be empty"):
                check_id(" \t", field.argument)
            payload = {f.wire: good[f.wire] for f in fields}
            payload[field.wire] = " \t"
            (answer,) = w.request(event, payload)
            assert answer["statusCode"] == 400, (event, field.wire)
            assert answer["message"].startswith(field.wire + " must be a non-empty string")


def _open_socketio(emu: Emulator, **headers: str) -> "websocket.WebSocket":
    url = f"ws://127.0.0.1:{emu.port}/socket.io/?EIO=4&transport=websocket"
    return websocket.create_connection(url, timeout=5, **headers)


@pytest.mark.parametrize("headers", [
    {"host": "evil.example:{port}"},                 # DNS rebinding: a name that resolved here
    {"host": "192.168.1.5:{port}"},                  # not loopback
    {"origin": "http://evil.example"},               # a page of another site
    {"origin": "http://evil.example:{port}"},
    {"origin": "http://[::1"},                       # not a URL: refused, not a 500
])
def test_socketio_requests_from_elsewhere_are_refused(headers):
    with Emulator([TOKEN], [KEY]) as emu:
        given = {name: value.format(port=emu.port) for name, value in headers.items()}
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            _open_socketio(emu, **given)
        assert refused.value.status_code == 403
        assert emu.clients == []


def test_socketio_requests_from_local_pages_and_proxies_are_served():
    with Emulator([TOKEN], [KEY]) as emu:
        for headers in ({}, {"origin": f"http://localhost:{emu.port}"},
                        {"host": "localhost:1"}):   # a local TCP proxy in front of the emulator
            ws = _open_socketio(emu, **headers)
            try:
                assert ws.recv().startswith("0{")  # Engine.IO's open packet
            finally:
                ws.close()
