"""The emulator's fast path for plain listens and sends, over a raw websocket.

The same frames go to an emulator with the fast path and to one without it
(upstream's Packet decode and dispatch): the answers on the wire and the
records must be the same, malformed frames included, and the reader must
still answer afterwards.
"""

from __future__ import annotations

import json

import pytest
import websocket

from tests.helpers import KEY, TOKEN
from watchers_bot.emulator import Emulator, fastpath

pytestmark = pytest.mark.skipif(not fastpath.enabled(),
                                reason="the fast path is off (WATCHERS_FAST_PATH=0 or versions)")

LISTEN = "external/listen"
SEND = "external/send"


def _frame(ack, event, payload):
    return f"42{ack}" + json.dumps([event, payload], separators=(",", ":"))


def _session(emu):
    """A raw Engine.IO/Socket.IO session on ``emu``, connected to the default namespace."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{emu.port}/socket.io/?EIO=4&transport=websocket", timeout=5)
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"bearer": TOKEN}))
    assert ws.recv().startswith("40{")
    return ws


def _until(ws, last):
    """Text frames received until (and with) the one that is ``last``."""
    got = []
    while True:
        frame = ws.recv()
        if frame in ("2",):  # a server ping: not part of the answers
            ws.send("3")
            continue
        got.append(frame)
        if frame == last:
            return got


MIXED = [
    ("text", _frame(1, LISTEN, {"roomId": "r1", "apiKey": KEY})),
    ("text", _frame(2, SEND, {"roomId": "r1", "text": "hi", "userId": "u1", "apiKey": KEY})),
    ("text", _frame(3, LISTEN, {"roomId": 5, "apiKey": KEY})),            # wrong type
    ("text", _frame(4, SEND, {"roomId": "r1", "text": "x", "apiKey": "bad"})),  # bad key
    ("text", '425["external/listen",{"roomId":'),                          # bad JSON
    ("text", _frame("0" * 30 + "6", LISTEN, {"roomId": "r2", "apiKey": KEY})),  # huge ack id
    ("text", _frame("07", LISTEN, {"roomId": "r3", "apiKey": KEY})),       # leading zero
    ("text", _frame("", SEND, {"roomId": "r1", "text": "no ack", "userId": "u", "apiKey": KEY})),
    ("text", _frame(8, "other/event", {"a": 1})),                          # not a request
    ("binary", b"\x00\xff\x01"),
    ("text", '42["external/listen"'),
    ("text", _frame(9, LISTEN, {"roomId": "r9", "apiKey": KEY})),
]


def _run(emu, frames):
    ws = _session(emu)
    try:
        for kind, data in frames:
            if kind == "binary":
                ws.send_binary(data)
            else:
                ws.send(data)
        got = _until(ws, '439[{"status":"ok","roomId":"r9"}]')
    finally:
        ws.close()
    records = [(r.event, r.payload, r.mode) for r in emu.requests]
    sent = [(m.room_id, m.text, m.user_id) for m in emu.sent]
    return got, records, sent


def _emulator(**kwargs):
    return Emulator(tokens=[TOKEN], api_keys=[KEY], **kwargs)


def test_fast_and_upstream_paths_answer_alike(monkeypatch):
    with _emulator() as emu:
        fast = _run(emu, MIXED)
    monkeypatch.setattr(fastpath, "enabled", lambda: False)
    with _emulator() as emu:
        slow = _run(emu, MIXED)
    assert fast == slow
    answers = fast[0]
    assert answers[0] == '431[{"status":"ok","roomId":"r1"}]'
    assert any(a.startswith("433[") and "400" in a for a in answers)
    assert '437[{"status":"ok","roomId":"r3"}]' in answers
    assert [s[1] for s in fast[2]] == ["hi", "no ack"]


def test_faults_apply_on_the_fast_path():
    with _emulator() as emu:
        emu.set_ack(LISTEN, "error", error={"status": "error", "code": 503}, times=1)
        emu.set_ack(SEND, "withhold", times=1)
        ws = _session(emu)
        try:
            ws.send(_frame(1, LISTEN, {"roomId": "r1", "apiKey": KEY}))
            ws.send(_frame(2, SEND, {"roomId": "r1", "text": "a", "userId": "u", "apiKey": KEY}))
            ws.send(_frame(3, LISTEN, {"roomId": "r1", "apiKey": KEY}))
            got = _until(ws, '433[{"status":"ok","roomId":"r1"}]')
        finally:
            ws.close()
        assert got == ['431[{"status":"error","code":503}]', '433[{"status":"ok","roomId":"r1"}]']
        assert [r.mode for r in emu.requests] == ["error", "withhold", "normal"]
        assert [m.text for m in emu.sent] == ["a"]


def test_a_sends_broadcast_is_written_before_its_ack():
    with _emulator(echo_sender=True) as emu:
        ws = _session(emu)
        try:
            ws.send(_frame(1, LISTEN, {"roomId": "r1", "apiKey": KEY}))
            for i in range(2, 12):
                ws.send(_frame(i, SEND, {"roomId": "r1", "text": str(i), "userId": "u",
                                         "apiKey": KEY}))
            got = _until(ws, "4311[]")
        finally:
            ws.close()
        assert got[0] == '431[{"status":"ok","roomId":"r1"}]'
        rest = got[1:]
        assert len(rest) == 20
        for i, (message, ack) in enumerate(zip(rest[::2], rest[1::2]), start=2):
            assert message.startswith('42["message",')
            assert f'"text":"{i}"' in message
            assert ack == f"43{i}[]"
