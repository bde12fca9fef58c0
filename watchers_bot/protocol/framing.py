"""Socket.IO and Engine.IO text framing: the one place that writes and reads it.

A Watchers request on the wire is one websocket text frame holding an
Engine.IO MESSAGE (``4``) whose data is a Socket.IO EVENT (``2``) of the
default namespace: ``42<ack id>["external/send",{...}]``.  An ack is a
Socket.IO ACK (``3``): ``43<ack id>[<answer>...]``.  The emulator's packets
and pre-framed broadcasts, the server's event payloads and the size check of
requests, and the client's fast path (:mod:`watchers_bot.transport`), build or
read frames with the functions and constants here, as do the websocket
frame builders and the frame reader of both sides (client and emulator).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from typing import Any, Callable, Optional, Tuple

__all__ = [
    "ENGINEIO_MESSAGE",
    "EVENT_OR_ACK",
    "MAX_FRAME_BYTES",
    "SOCKETIO_ACK",
    "SOCKETIO_EVENT",
    "WS_BINARY",
    "WS_CLOSE",
    "WS_CONTINUATION",
    "WS_PING",
    "WS_PONG",
    "WS_TEXT",
    "check_frame",
    "decode_json",
    "encode_json",
    "engineio_message",
    "event_packet",
    "frame_bytes",
    "read_event_or_ack",
    "ws_frame",
    "ws_frame_at",
    "ws_masked_text_frame",
    "ws_text_frame",
    "ws_unmask",
]

#: Engine.IO packet type of a message (the first character of the frame).
ENGINEIO_MESSAGE = "4"
#: Socket.IO packet types of an event and of an ack (the character after it).
SOCKETIO_EVENT = "2"
SOCKETIO_ACK = "3"

#: An EVENT or ACK packet of the default namespace without binary attachments:
#: the type, an optional ack id, then the JSON array (group 1, group 2, match end - 1).
EVENT_OR_ACK = re.compile(r"([23])(\d*)\[")

#: Largest frame the default Socket.IO servers (Node and Python) accept: 1e6 bytes.
MAX_FRAME_BYTES = 1_000_000
# A request's frame is "4" "2", the ack id, then the JSON.  The ack id is not
# known before the emit: room for ten digits is kept (ack ids count up from 1
# per connection).
FRAME_PREFIX_BYTES = 2 + 10

# UTF-8 on the wire, as the JavaScript client (JSON.stringify) sends it: a
# non-ASCII character costs its 2-4 UTF-8 bytes instead of a 6-12 byte \uXXXX
# escape.
_UTF8_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ASCII_JSON = json.JSONEncoder(separators=(",", ":")).encode


def encode_json(data: Any) -> str:
    """``data`` as the JSON the client puts on the wire (UTF-8, compact).

    A lone surrogate cannot be sent as UTF-8; such a value is sent with
    ``\\uXXXX`` escapes instead, as ``JSON.stringify`` does.
    """
    text = _UTF8_JSON(data)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _ASCII_JSON(data)
    return text


def _refuse_huge_int(text: str) -> int:
    # Parsing a many-digit integer is quadratic: refuse what no payload needs.
    if len(text) > 100:
        raise ValueError("integer of over 100 digits in a packet")
    return int(text)


_SAFE_DECODE = json.JSONDecoder(parse_int=_refuse_huge_int).decode
_int_limit: Callable[[], int] = getattr(sys, "get_int_max_str_digits", lambda: 0)


def decode_json(text: str) -> Any:
    """Decode a packet's JSON (``ValueError`` if it is not JSON).

    ``json.loads`` while the interpreter's ``int_max_str_digits`` limit bounds
    the cost of integers (the default, 4300 digits); otherwise a decoder that
    refuses integers of over 100 digits, as python-engineio's does, built once
    (engineio's builds one per call).
    """
    if 0 < _int_limit() <= 10_000:
        return json.loads(text)
    return _SAFE_DECODE(text)


def event_packet(event: str, data: Any, ack_id: Optional[int] = None,
                 *, encode: Callable[[Any], str] = encode_json) -> str:
    """The Socket.IO text of an EVENT packet of the default namespace:
    ``2[<ack id>]["event",data]`` (wrap it with :func:`engineio_message`)."""
    ack = "" if ack_id is None else str(ack_id)
    return SOCKETIO_EVENT + ack + encode([event, data])


def engineio_message(packet: str) -> str:
    """The Engine.IO MESSAGE carrying a Socket.IO packet's text: one websocket frame's text."""
    return ENGINEIO_MESSAGE + packet


def read_event_or_ack(packet: str) -> Optional[Tuple[str, str, int]]:
    """``(type, ack id, start of the JSON array)`` of a Socket.IO EVENT or ACK
    packet of the default namespace, or None for anything else."""
    m = EVENT_OR_ACK.match(packet)
    if m is None:
        return None
    return m.group(1), m.group(2), m.end() - 1


def frame_bytes(event: str, payload: Any) -> int:
    """The size in bytes of the websocket frame that carries a request."""
    body = encode_json([event, payload])
    size = len(body) if body.isascii() else len(body.encode("utf-8"))
    return FRAME_PREFIX_BYTES + size


def check_frame(event: str, payload: Any, *, name: str = "text") -> None:
    """Refuse a request whose frame would be over :data:`MAX_FRAME_BYTES`
    (``ValueError`` naming ``name``), before anything goes on the wire."""
    size = frame_bytes(event, payload)
    if size > MAX_FRAME_BYTES:
        raise ValueError(
            f"{name} is too large: its frame would be {size:,} bytes and a Socket.IO "
            f"frame may carry at most {MAX_FRAME_BYTES:,} (servers drop larger frames)"
        )


#: Websocket opcodes (RFC 6455, 5.2).
WS_CONTINUATION, WS_TEXT, WS_BINARY = 0x0, 0x1, 0x2
WS_CLOSE, WS_PING, WS_PONG = 0x8, 0x9, 0xA


def _ws_header(opcode: int, n: int, masked: int) -> bytes:
    # FIN + opcode, then the length in 7, 7+16 or 7+64 bits (RFC 6455, 5.2).
    b1 = 0x80 | opcode
    if n < 126:
        return bytes((b1, masked | n))
    if n < 65536:
        return struct.pack("!BBH", b1, masked | 126, n)
    return struct.pack("!BBQ", b1, masked | 127, n)


def ws_frame(opcode: int, data: bytes) -> bytes:
    """One unmasked, final websocket frame (what a server sends)."""
    return _ws_header(opcode, len(data), 0) + data


def ws_text_frame(data: bytes) -> bytes:
    """One unmasked, final websocket text frame (what a server sends)."""
    return _ws_header(WS_TEXT, len(data), 0) + data


def ws_unmask(data: bytes, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte mask ``key`` (masking and unmasking are one operation)."""
    n = len(data)
    mask = int.from_bytes(key * (n // 4) + key[: n % 4], "little")
    return (int.from_bytes(data, "little") ^ mask).to_bytes(n, "little")


def ws_masked_text_frame(data: bytes, key: bytes) -> bytes:
    """One final websocket text frame masked with the 4-byte ``key`` (what a client sends).

    The same bytes as websocket-client's ``ABNF.create_frame(text, OPCODE_TEXT).format()``
    with that key, built without an ABNF object (most of a pipelined send's framing cost)."""
    if len(key) != 4:
        raise ValueError(f"key must be 4 bytes, got {len(key)}")
    return _ws_header(WS_TEXT, len(data), 0x80) + key + ws_unmask(data, key)


def ws_frame_at(buf: bytes, pos: int) -> Optional[Tuple[int, int, int, bool]]:
    """The frame starting at ``buf[pos]``: ``(first byte, payload start, payload
    end, masked)``, the 4-byte mask key (if masked) just before the payload.  A
    payload end past ``len(buf)`` says how much is still to be read; None if
    the header itself is not all there yet."""
    avail = len(buf) - pos
    if avail < 2:
        return None
    b2 = buf[pos + 1]
    length = b2 & 0x7F
    head = 2
    if length == 126:
        head = 4
        if avail < 4:
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
    elif length == 127:
        head = 10
        if avail < 10:
            return None
        length = int.from_bytes(buf[pos + 2:pos + 10], "big")
    masked = bool(b2 & 0x80)
    if masked:
        head += 4
        if avail < head:
            return None
    start = pos + head
    return buf[pos], start, start + length, masked
