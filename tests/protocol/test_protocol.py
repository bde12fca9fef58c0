"""How answers and payloads from the server are read (pure functions, no sockets)."""

import json

import pytest

from watchers_bot import Message, ServerError
from watchers_bot import protocol as p


@pytest.mark.parametrize(
    "args",
    [(), (None,), (True,), ({},), ({"status": "ok"},), ({"success": True},), (None, None)],
)
def test_send_ack_success_shapes(args):
    p.read_send_ack(args)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (({"error": "Room not found"},), None, "Room not found"),
        (({"error": {"code": 42, "message": "nope"}},), 42, "nope"),
        (({"status": "error", "message": "Forbidden resource"},), None, "Forbidden resource"),
        (({"status": "fail", "reason": "rate limited"},), None, "rate limited"),
        (({"success": False, "message": "bad"},), None, "bad"),
        (({"statusCode": 404, "message": "Project not found"},), 404, "Project not found"),
        (({"statusCode": 400, "message": ["text must be a string", "roomId required"]},),
         400, "text must be a string; roomId required"),
        (({"code": "E_LIMIT", "message": "slow down"},), "E_LIMIT", "slow down"),
        (("Invalid API key",), None, "Invalid API key"),
    ],
)
def test_error_markers_raise_server_error_on_both_events(args, code, message):
    for reader, event in ((p.read_send_ack, p.EVENT_SEND), (p.read_listen_ack, p.EVENT_LISTEN)):
        with pytest.raises(ServerError) as info:
            reader(args)
        assert info.value.code == code
        assert info.value.message == message
        assert info.value.event == event


def test_send_ack_that_is_neither_empty_nor_success_is_an_error():
    with pytest.raises(ServerError) as info:
        p.read_send_ack(({"whatever": 1},))
    assert info.value.raw == {"whatever": 1}
    with pytest.raises(ServerError):
        p.read_send_ack((17,))


def test_listen_ack_without_error_marker_is_success_and_returned():
    details = {"roomId": "r1", "members": 3}
    assert p.read_listen_ack((details,)) == details
    assert p.read_listen_ack(()) is None
    assert p.read_listen_ack((17,)) == 17


def test_code_and_message_with_ok_status_is_success():
    assert p.read_listen_ack(({"status": "ok", "code": 0, "message": "subscribed"},))


def test_server_error_raw_masks_the_api_key():
    answer = {"status": "error", "message": "bad", "cause": {"data": {"apiKey": "sekrit-key"}}}
    with pytest.raises(ServerError) as info:
        p.read_send_ack((answer,))
    assert "sekrit-key" not in repr(info.value.raw)
    assert "sekrit-key" not in str(info.value)


def test_parse_message_documented_payload_keeps_raw():
    payload = {"project": "test", "roomId": "144444", "message": {"id": 102, "text": "test"},
               "userId": "123", "extra": {"x": 1}}
    msg = p.parse_message(payload)
    assert msg == Message(room_id="144444", id=102, text="test", user_id="123",
                          project="test", raw=payload)
    assert msg.raw["extra"] == {"x": 1}


@pytest.mark.parametrize(
    "payload",
    [None, "text", [], {}, {"roomId": "r"}, {"roomId": "", "message": {"id": 1, "text": "t"}},
     {"roomId": "r", "message": "t"}, {"roomId": "r", "message": {"id": 1}},
     {"roomId": "r", "message": {"id": None, "text": "t"}},
     {"roomId": "r", "message": {"id": True, "text": "t"}},
     {"roomId": "r", "message": {"id": 1, "text": 5}}],
)
def test_parse_message_rejects_malformed(payload):
    with pytest.raises(p.MalformedPayload):
        p.parse_message(payload)


def test_parse_exception_nestjs_shape():
    payload = {"roomId": "r", "apiKey": "k", "userId": "u", "text": "t"}
    error, pattern, data = p.parse_exception(
        ({"status": "error", "message": "Forbidden resource",
          "cause": {"pattern": "external/send", "data": payload}},)
    )
    assert isinstance(error, ServerError)
    assert error.message == "Forbidden resource"
    assert error.event == pattern == "external/send"
    assert data == payload
    assert p.exception_matches(data, payload)
    assert not p.exception_matches(dict(data, text="other"), payload)
    assert error.raw["cause"]["data"]["apiKey"] == "***"


@pytest.mark.parametrize("args", [(), (None,), ("boom",), ([1, 2],), ({"weird": True},)])
def test_parse_exception_never_raises_on_odd_shapes(args):
    error, pattern, _ = p.parse_exception(args)
    assert isinstance(error, ServerError)
    assert pattern is None


def test_check_text():
    assert p.check_text("hello") == "hello"
    with pytest.raises(TypeError, match="text"):
        p.check_text(b"bytes")
    with pytest.raises(ValueError, match="text"):
        p.check_text("   ")


def _limit_text(char, fixed=("room", "key", "bot")):
    """The longest run of ``char`` whose send frame fits, and its frame size."""
    base = p.frame_bytes(p.EVENT_SEND, p.send_payload(*fixed, "x")) - 1
    count = (p.MAX_FRAME_BYTES - base) // len(char.encode("utf-8"))
    return char * count


@pytest.mark.parametrize("char", ["a", "é", "ж", "中", "😀"])
def test_check_send_measures_the_utf8_frame_exactly(char):
    text = _limit_text(char)
    payload = p.check_send("room", "key", "bot", text)  # just under: accepted
    assert payload["text"] == text
    assert p.frame_bytes(p.EVENT_SEND, payload) <= p.MAX_FRAME_BYTES
    # One character more is over, and refused naming the text and the size.
    with pytest.raises(ValueError, match=r"text is too large: its frame would be [\d,]+ bytes"):
        p.check_send("room", "key", "bot", text + char)
    # Non-ASCII travels as UTF-8, not as \\uXXXX escapes.
    assert p.encode_json({"t": char}) == '{"t":"' + char + '"}'


def test_half_a_million_accented_characters_fit():
    # 1,000,000 bytes of UTF-8 with the payload around it is over; 500,000 "é" as
    # escapes (3,000,000 bytes) was refused before.
    p.check_send("room", "key", "bot", "é" * 499_000)


def test_frame_bytes_is_the_size_of_the_frame_on_the_wire():
    payload = p.send_payload("room-1", "key", "bot", "héllo 中文 😀")
    body = json.dumps([p.EVENT_SEND, payload], separators=(",", ":"), ensure_ascii=False)
    ack_id = "1234567890"  # the reserve: ten digits
    assert p.frame_bytes(p.EVENT_SEND, payload) == len(("42" + ack_id + body).encode("utf-8"))


def test_a_lone_surrogate_falls_back_to_escapes():
    assert p.encode_json("\ud800x") == '"\\ud800x"'



def test_describe_connect_error():
    assert p.describe_connect_error([{"message": "Unauthorized"}]) == "Unauthorized"
    assert p.describe_connect_error([]) == "no reason given"
    assert p.describe_connect_error(["nope"]) == "nope"
