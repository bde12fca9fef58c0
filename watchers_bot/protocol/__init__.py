"""The Watchers bot protocol: event names, payload shapes, and how to read answers.

The one package that knows the wire format, used by the client and by the
emulator alike, so they cannot drift apart:

* :mod:`.events`: event names, and the one field spec of each request;
* :mod:`.client`: the client's request payloads and its readers of answers;
* :mod:`.server`: the emulator's request validation and the answers it builds;
* :mod:`.framing`: Socket.IO / Engine.IO text framing and the wire's JSON.

See ``protocol.md`` in the project's shared notes for what the vendor
documents and what is guessed.  Nothing here does I/O or imports socketio.
Every name this module exported before it became a package is still here.
"""

from __future__ import annotations

from .._redact import MASK, SECRET_KEYS, mask_secrets
from .client import (
    RATE_LIMIT_STATUS,
    RETRY_AFTER_FIELDS,
    MalformedPayload,
    check_id,
    check_send,
    check_text,
    describe_connect_error,
    exception_matches,
    listen_payload,
    parse_exception,
    parse_message,
    read_listen_ack,
    read_send_ack,
    send_payload,
)
from .events import EVENT_EXCEPTION, EVENT_LISTEN, EVENT_MESSAGE, EVENT_SEND, REQUESTS
from .framing import MAX_FRAME_BYTES, check_frame, encode_json, frame_bytes
from .server import message_payload

__all__ = [
    "EVENT_EXCEPTION",
    "EVENT_LISTEN",
    "EVENT_MESSAGE",
    "EVENT_SEND",
    "MASK",
    "MAX_FRAME_BYTES",
    "RATE_LIMIT_STATUS",
    "REQUESTS",
    "RETRY_AFTER_FIELDS",
    "SECRET_KEYS",
    "MalformedPayload",
    "check_frame",
    "check_id",
    "check_send",
    "check_text",
    "describe_connect_error",
    "encode_json",
    "exception_matches",
    "frame_bytes",
    "listen_payload",
    "mask_secrets",
    "message_payload",
    "parse_exception",
    "parse_message",
    "read_listen_ack",
    "read_send_ack",
    "send_payload",
]
