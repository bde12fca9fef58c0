"""The client's side of the protocol: request payloads, and how to read answers.

Builds the payloads of :data:`~.events.REQUESTS` once their arguments are
checked, and reads every answer the server may give (acks in their many
shapes, ``exception`` events, ``message`` events, ``connect_error``) into
results or :class:`~watchers_bot.errors.ServerError`.  Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .._redact import mask_secrets
from ..errors import RateLimited, ServerError
from ..models import Message
from .events import EVENT_LISTEN, EVENT_SEND, check_value
from .framing import FRAME_PREFIX_BYTES, MAX_FRAME_BYTES, check_frame

__all__ = [
    "RATE_LIMIT_STATUS",
    "RETRY_AFTER_FIELDS",
    "MalformedPayload",
    "check_id",
    "check_send",
    "check_text",
    "describe_connect_error",
    "exception_matches",
    "listen_payload",
    "parse_exception",
    "parse_message",
    "read_listen_ack",
    "read_send_ack",
    "send_payload",
]

# The most bytes one character can take in the JSON: 12, an escaped surrogate
# pair (the ASCII fallback of encode_json).  Shorter requests need no measuring.
_MAX_BYTES_PER_CHAR = 12


class MalformedPayload(ValueError):
    """A payload from the server does not have the documented shape."""


# --------------------------------------------------------------------------- requests


def listen_payload(room_id: str, api_key: str) -> Dict[str, str]:
    """The ``external/listen`` payload."""
    return {"roomId": room_id, "apiKey": api_key}


def send_payload(room_id: str, api_key: str, user_id: str, text: str) -> Dict[str, str]:
    """The ``external/send`` payload."""
    return {"roomId": room_id, "apiKey": api_key, "userId": user_id, "text": text}


def check_id(value: object, name: str) -> str:
    """Check an id argument (``room_id``, ``bot_id``) as the request spec
    (:data:`~.events.REQUESTS`) wants it; ``TypeError``/``ValueError`` naming ``name``."""
    return check_value(value, name)


def check_text(text: object, *, name: str = "text") -> str:
    """Check a message text's type and content before it goes on the wire.

    Raises ``TypeError`` or ``ValueError`` naming ``name``.  Its size is
    checked with the whole request by :func:`check_send`.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, not {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} must not be empty or only whitespace")
    return text


def check_send(room_id: str, api_key: str, user_id: str, text: object) -> Dict[str, str]:
    """The ``external/send`` payload, once ``text`` is checked and its frame
    measured exactly (``ValueError`` if too large)."""
    check_text(text)
    assert isinstance(text, str)
    payload = send_payload(room_id, api_key, user_id, text)
    # Short requests cannot be too large: measure only those that might be.
    chars = sum(len(v) for v in payload.values()) + len(EVENT_SEND) + 64
    if chars * _MAX_BYTES_PER_CHAR > MAX_FRAME_BYTES - FRAME_PREFIX_BYTES:
        check_frame(EVENT_SEND, payload)
    return payload


# --------------------------------------------------------------------------- answers


_ERROR_STATUSES = ("error", "fail", "failed", "failure")


def _is_error_status(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in _ERROR_STATUSES


def _is_ok_status(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("ok", "success", "succeeded")


def _status_code(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _error_from(answer: Any, event: str) -> Optional[ServerError]:
    """The error an answer carries, or None when it carries no error marker."""
    raw = mask_secrets(answer)
    if isinstance(answer, str):
        if _RATE_LIMIT_TEXT.search(answer):
            return RateLimited(answer, event=event, raw=raw)
        return ServerError(answer or "empty error string", event=event, raw=raw)
    if not isinstance(answer, Mapping):
        return None
    err = answer.get("error")
    status = answer.get("status")
    code = _status_code(answer.get("statusCode"))
    marked = (
        bool(err)
        or _is_error_status(status)
        or answer.get("success") is False
        or (code is not None and code >= 400)
        or ("code" in answer and "message" in answer and not _is_ok_status(status)
            and answer.get("success") is not True)
    )
    if not marked:
        return None
    inner = err if isinstance(err, Mapping) else {}
    message = (
        answer.get("message")
        or inner.get("message")
        or (err if isinstance(err, str) else None)
        or answer.get("reason")
        or status
        or "unspecified error"
    )
    if isinstance(message, list):  # NestJS validation pipes answer a list of strings
        message = "; ".join(str(m) for m in message)
    if code is None:
        code = answer.get("code", inner.get("code", inner.get("statusCode")))
    retry_after = _retry_after(answer)
    if retry_after is None and inner:
        retry_after = _retry_after(inner)
    if (_status_code(code) == RATE_LIMIT_STATUS or retry_after is not None
            or _RATE_LIMIT_TEXT.search(str(message))):
        return RateLimited(str(message), retry_after=retry_after, code=code, event=event,
                           raw=raw)
    return ServerError(str(message), code=code, event=event, raw=raw)


#: The HTTP status of a rate-limit refusal ("Too Many Requests"), as code or statusCode.
RATE_LIMIT_STATUS = 429
#: Fields that may carry a retry hint, and the factor to seconds.
RETRY_AFTER_FIELDS = (("retryAfter", 1.0), ("retry_after", 1.0), ("retry-after", 1.0),
                      ("retryAfterMs", 0.001))
_RATE_LIMIT_TEXT = re.compile(r"too many requests|rate[ _-]?limit", re.IGNORECASE)


def _retry_after(answer: Mapping[str, Any]) -> Optional[float]:
    """The retry hint of a refusal in seconds, if it has a usable one."""
    for field, scale in RETRY_AFTER_FIELDS:
        value = answer.get(field)
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
            return float(value) * scale
    return None


def _is_success(answer: Any) -> bool:
    if answer is None or answer is True:
        return True
    if isinstance(answer, Mapping):
        if not answer:
            return True
        return _is_ok_status(answer.get("status")) or answer.get("success") is True
    return False


def _single(args: Tuple[Any, ...]) -> Any:
    # A Socket.IO ack may carry any number of arguments; the vendor's callback
    # takes one.  Several arguments are read as the first non-null one.
    for arg in args:
        if arg is not None:
            return arg
    return None


def read_listen_ack(args: Tuple[Any, ...]) -> Any:
    """Read an ``external/listen`` ack: anything without an error marker is success.

    Returns the answer (room details, maybe) or raises :class:`ServerError`.
    """
    answer = _single(args)
    error = _error_from(answer, EVENT_LISTEN)
    if error is not None:
        raise error
    return answer


def read_send_ack(args: Tuple[Any, ...]) -> Any:
    """Read an ``external/send`` ack.

    The vendor's callback names its one argument ``error``, so any answer that
    is neither empty nor marked as success is an error.
    """
    answer = _single(args)
    error = _error_from(answer, EVENT_SEND)
    if error is not None:
        raise error
    if _is_success(answer):
        return answer
    raise ServerError(_describe(answer), event=EVENT_SEND, raw=mask_secrets(answer))


def _describe(answer: Any) -> str:
    text = json.dumps(mask_secrets(answer), default=repr)
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------- server events


def parse_message(payload: Any) -> Message:
    """Read a ``message`` event payload into a :class:`Message`.

    Raises :class:`MalformedPayload` when the payload lacks the documented
    fields.  Unknown fields are kept in ``Message.raw``.
    """
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"message payload is a {type(payload).__name__}, not an object")
    room_id = payload.get("roomId")
    body = payload.get("message")
    if not isinstance(room_id, (str, int)) or isinstance(room_id, bool) or room_id == "":
        raise MalformedPayload("message payload has no roomId")
    if not isinstance(body, Mapping):
        raise MalformedPayload("message payload has no message object")
    msg_id = body.get("id")
    text = body.get("text")
    if not isinstance(msg_id, (int, str)) or isinstance(msg_id, bool):
        raise MalformedPayload("message payload has no message.id")
    if not isinstance(text, str):
        raise MalformedPayload("message payload has no message.text string")
    user_id = payload.get("userId")
    project = payload.get("project")
    return Message(
        room_id=str(room_id),
        id=msg_id,
        text=text,
        user_id=None if user_id is None else str(user_id),
        project=None if project is None else str(project),
        raw=payload,
    )


def parse_exception(args: Tuple[Any, ...]) -> Tuple[ServerError, Optional[str], Any]:
    """Read a NestJS-style ``exception`` event.

    Returns ``(error, pattern, data)``: the error to raise, and the event name
    and payload of the request that failed when the server said (``cause``).
    Never raises on odd shapes.
    """
    body = _single(args)
    pattern: Optional[str] = None
    data: Any = None
    if isinstance(body, Mapping):
        cause = body.get("cause")
        if isinstance(cause, Mapping):
            p = cause.get("pattern")
            pattern = p if isinstance(p, str) else None
            data = cause.get("data")
        error = _error_from(body, pattern or "exception")
        if error is None:
            error = ServerError(_describe(body), event=pattern, raw=mask_secrets(body))
    else:
        error = _error_from(body, pattern or "exception") if isinstance(body, str) else None
        if error is None:
            error = ServerError(_describe(body), event=None, raw=mask_secrets(body))
    if pattern is not None:
        error.event = pattern
    return error, pattern, data


def exception_matches(data: Any, payload: Mapping[str, Any]) -> bool:
    """Whether an ``exception`` event's ``cause.data`` names this request payload."""
    if not isinstance(data, Mapping):
        return False
    return all(data.get(k) == v for k, v in payload.items() if k in data) and bool(
        set(data) & set(payload)
    )


def describe_connect_error(args: List[Any]) -> str:
    """The server's reason from a ``connect_error`` payload, as one line."""
    body = _single(tuple(args))
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("reason") or body.get("error")
        if message:
            return str(message)
        return _describe(body)
    if body is None:
        return "no reason given"
    return str(body)
