"""Socket.IO / Engine.IO text framing (watchers_bot/protocol/framing.py): round trips, bad input."""

from __future__ import annotations

import json
import struct

import pytest

from watchers_bot.protocol.framing import (
    ENGINEIO_MESSAGE,
    MAX_FRAME_BYTES,
    WS_CLOSE,
    WS_PING,
    check_frame,
    decode_json,
    encode_json,
    engineio_message,
    event_packet,
    frame_bytes,
    read_event_or_ack,
    ws_frame,
    ws_frame_at,
    ws_masked_text_frame,
    ws_text_frame,
    ws_unmask,
)

PAYLOADS = [
    {"roomId": "r", "text": "hi"},
    {"text": 'quote " backslash \\ newline \n tab \t'},
    {"text": "unicode é ✓ 😀", "n": [1, 2.5, True, None]},
    {},
    [],
    "plain",
]


@pytest.mark.parametrize("data", PAYLOADS)
def test_json_round_trips_compact_and_utf8(data):
    text = encode_json(data)
    assert decode_json(text) == data
    assert ", " not in text
    assert ": " not in text
    if isinstance(data, dict) and "é" in str(data.get("text")):
        assert "é" in text  # UTF-8 on the wire, as JSON.stringify sends it


def test_a_lone_surrogate_is_escaped_not_an_error():
    text = encode_json({"text": "bad \ud800 half"})
    assert "\\ud800" in text
    text.encode("utf-8")  # sendable
    assert decode_json(text) == {"text": "bad \ud800 half"}


@pytest.mark.parametrize("ack_id", [None, 0, 1, 4_294_967_295])
@pytest.mark.parametrize("data", PAYLOADS)
def test_event_packets_read_back(data, ack_id):
    packet = event_packet("external/send", data, ack_id)
    frame = engineio_message(packet)
    assert frame[0] == ENGINEIO_MESSAGE
    kind, ack, start = read_event_or_ack(frame[1:])
    assert kind == "2"
    assert ack == ("" if ack_id is None else str(ack_id))
    assert decode_json(packet[start:]) == ["external/send", data]


def test_acks_are_read_too():
    assert read_event_or_ack('317[{"status":"ok"}]') == ("3", "17", 3)


@pytest.mark.parametrize("packet", [
    "", "2", "4", "0{}", "40", "2x[", "2/admin,[\"e\"]", "51-[\"e\",{}]", "\x00", "[]",
])
def test_anything_else_is_not_an_event_or_ack(packet):
    assert read_event_or_ack(packet) is None


@pytest.mark.parametrize("text", ["", "{", "[1,", "nope", "{'single': 1}", "\ud800"])
def test_malformed_json_is_a_value_error(text):
    with pytest.raises(ValueError):  # noqa: PT011 - json's own message says where
        decode_json(text)


def test_a_huge_integer_is_refused_not_parsed():
    with pytest.raises(ValueError, match="digits"):
        decode_json("[" + "9" * 5000 + "]")


def _parse_server_frame(frame: bytes):
    first, second = frame[0], frame[1]
    assert first == 0x81  # final text frame
    assert not second & 0x80  # servers do not mask
    n, offset = second & 0x7F, 2
    if n == 126:
        (n,), offset = struct.unpack("!H", frame[2:4]), 4
    elif n == 127:
        (n,), offset = struct.unpack("!Q", frame[2:10]), 10
    return frame[offset:offset + n], frame[offset + n:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_websocket_text_frames_carry_their_payload_at_every_length_boundary(size):
    data = ("x" * size).encode()
    body, rest = _parse_server_frame(ws_text_frame(data))
    assert body == data
    assert rest == b""


def test_frames_concatenate_and_read_back_in_order():
    texts = [engineio_message(event_packet("message", {"text": t})) for t in ("a", "é", "z" * 300)]
    stream = b"".join(ws_text_frame(t.encode()) for t in texts)
    seen = []
    while stream:
        body, stream = _parse_server_frame(stream)
        seen.append(body.decode())
    assert seen == texts


def test_frame_bytes_counts_utf8_bytes_and_the_packet_prefix():
    ascii_size = frame_bytes("external/send", {"text": "ab"})
    wide_size = frame_bytes("external/send", {"text": "éé"})
    assert wide_size - ascii_size == 2  # two 2-byte characters instead of two 1-byte ones
    body = json.dumps(["external/send", {"text": "ab"}], separators=(",", ":"))
    assert ascii_size > len(body)


def test_check_frame_refuses_an_oversized_request_naming_the_argument():
    check_frame("external/send", {"text": "small"})
    with pytest.raises(ValueError, match=r"^text is too large.*1,000,000"):
        check_frame("external/send", {"text": "x" * MAX_FRAME_BYTES})
    with pytest.raises(ValueError, match=r"^payload is too large"):
        check_frame("external/send", {"text": "é" * (MAX_FRAME_BYTES // 2)}, name="payload")


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 70001])
@pytest.mark.parametrize("key", [b"\x00\x00\x00\x00", b"\x12\x34\x56\x78", b"\xff\xfe\x01\x80"])
def test_masked_frames_are_byte_for_byte_websocket_clients(size, key):
    import websocket

    text = ("é€" * size)[:size] if size % 2 else "x" * size  # some multi-byte characters too
    frame = websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT)
    frame.get_mask_key = lambda n: key
    assert ws_masked_text_frame(text.encode("utf-8"), key) == frame.format()


def test_a_masked_frame_needs_a_four_byte_key():
    with pytest.raises(ValueError, match="key must be 4 bytes"):
        ws_masked_text_frame(b"x", b"abc")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70001])
@pytest.mark.parametrize("masked", [False, True])
def test_the_frame_reader_finds_every_frame_and_says_when_more_is_needed(size, masked):
    key = b"\x9a\x01\x7f\xe0"
    data = bytes(i % 251 for i in range(size))
    frame = ws_masked_text_frame(data, key) if masked else ws_text_frame(data)
    stream = b"junk" + frame + ws_frame(WS_PING, b"p")
    b1, start, end, is_masked = ws_frame_at(stream, 4)
    assert (b1, is_masked) == (0x81, masked)
    payload = stream[start:end]
    assert (ws_unmask(payload, stream[start - 4:start]) if masked else payload) == data
    assert ws_frame_at(stream, end)[:1] == (0x80 | WS_PING,)
    # a frame cut short: its header, once whole, says how far the payload goes
    for cut in range(len(frame)):
        head = ws_frame_at(frame[:cut], 0)
        if head is not None:
            assert head[2] == len(frame) > cut
    assert ws_frame_at(frame, 0)[2] == len(frame)


def test_unmasking_is_masking_with_the_same_key():
    for n in range(0, 9):
        data = bytes(range(n))
        assert ws_unmask(ws_unmask(data, b"abcd"), b"abcd") == data
    assert ws_unmask(b"\x00\x00\x00\x00\x00", b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04\x01"


def test_control_frames_are_final_and_unmasked():
    frame = ws_frame(WS_CLOSE, struct.pack("!H", 1000))
    assert frame == b"\x88\x02\x03\xe8"
