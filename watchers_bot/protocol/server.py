"""The server's side of the protocol, for the emulator: request validation and
the answers, ``exception`` events and ``message`` events a server sends.

Requests are validated against the same spec the client checks its
arguments with (:data:`~.events.REQUESTS`), so a request the client refuses
to send is one the emulator refuses to accept.  Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from typing import Any, Callable, Dict, Optional

from .events import EVENT_MESSAGE, REQUESTS, problem_with
from .framing import event_packet

__all__ = [
    "DEFAULT_ERROR",
    "Refused",
    "exception_body",
    "listen_answer",
    "message_encoder",
    "message_payload",
    "rate_limit_refusal",
    "validate_request",
]

#: The answer to a request a server failed to handle (``set_ack(event, "error")``'s default).
DEFAULT_ERROR: Dict[str, Any] = {
    "status": "error",
    "statusCode": 500,
    "message": "Internal server error",
}


class Refused(Exception):
    """A request the server refuses: answered with :meth:`answer` as its ack."""

    def __init__(self, status_code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.extra = extra

    def answer(self) -> Dict[str, Any]:
        """The error ack, in the shape :func:`~.client.read_send_ack` reads."""
        return {"status": "error", "statusCode": self.status_code, "message": self.message,
                **self.extra}


def validate_request(event: str, payload: Any, api_keys: Container[str]) -> Dict[str, str]:
    """The fields of a request ``event`` (one of :data:`~.events.REQUESTS`), checked.

    Raises :class:`Refused`: 400 for a payload that is not an object or a field
    that is missing, not a string, empty or only whitespace; 401 for an API key
    not in ``api_keys``.
    """
    fields = REQUESTS[event]
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise Refused(
            400, f"payload must be an object with {', '.join(f.wire for f in fields)}, "
            f"not {type(payload).__name__}"
        )
    out: Dict[str, str] = {}
    for field in fields:
        value = payload.get(field.wire)
        # the common case first: a string that does not start with a space
        if not (type(value) is str and value and not value[0].isspace()):
            problem = problem_with(value)
            if problem is not None:
                raise Refused(400, f"{field.wire} {problem[1]}")
        out[field.wire] = value  # type: ignore[assignment]  # checked above
    if out["apiKey"] not in api_keys:
        raise Refused(401, "Unauthorized: invalid apiKey")
    return out


def listen_answer(room_id: str) -> Dict[str, Any]:
    """The ack of a successful ``external/listen``."""
    return {"status": "ok", "roomId": room_id}


def rate_limit_refusal(retry_after: Optional[float]) -> Refused:
    """The refusal of a send over the rate limit (429, with a ``retryAfter`` hint in
    seconds when given)."""
    extra = {} if retry_after is None else {"retryAfter": round(retry_after, 3)}
    return Refused(429, "Too Many Requests", **extra)


def exception_body(event: str, payload: Any, error: Any = None) -> Dict[str, Any]:
    """A NestJS-style ``exception`` event for a failed request ``event``.

    ``error`` is a message string, or a dict used as the body (``cause`` added
    when missing); ``None`` says ``"Internal server error"``.
    """
    cause = {"pattern": event, "data": payload}
    if isinstance(error, Mapping):
        body = dict(error)
        body.setdefault("cause", cause)
        return body
    message = error if isinstance(error, str) else "Internal server error"
    return {"status": "error", "message": message, "cause": cause}


def message_payload(
    room_id: str, message_id: Any, text: str, user_id: str, project: str, **extra: Any
) -> Dict[str, Any]:
    """Build a ``message`` event payload as the server sends it (used by the emulator)."""
    payload: Dict[str, Any] = {
        "project": project,
        "roomId": room_id,
        "message": {"id": message_id, "text": text},
        "userId": user_id,
    }
    payload.update(extra)
    return payload


_json_str: Callable[[str], str] = getattr(json.encoder, "encode_basestring_ascii", json.dumps)


def _ascii_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def message_encoder(project: str, room_id: str, user_id: str) -> Callable[[int, str], str]:
    """A fast encoder of ``message`` events as Socket.IO EVENT packet text.

    It fills a template cut from one packet that :func:`message_payload` and
    :func:`~.framing.event_packet` built with marker values, so the shape stays
    theirs.  Falls back to encoding each packet in full when the markers are
    ambiguous.
    """

    def full(msg_id: int, text: str) -> str:
        payload = message_payload(room_id, msg_id, text, user_id, project)
        return event_packet(EVENT_MESSAGE, payload, encode=_ascii_json)

    id_mark, text_mark = -7_340_912_655_103, "\x00watchers-emulator-text\x00"
    sample = full(id_mark, text_mark)
    id_s, text_s = json.dumps(id_mark), json.dumps(text_mark)
    if sample.count(id_s) != 1 or sample.count(text_s) != 1:
        return full
    i, t = sample.index(id_s), sample.index(text_s)
    if i < t:
        a, rest = sample.split(id_s)
        b, c = rest.split(text_s)

        def fast(msg_id: int, text: str) -> str:
            return a + str(msg_id) + b + _json_str(text) + c
    else:
        a, rest = sample.split(text_s)
        b, c = rest.split(id_s)

        def fast(msg_id: int, text: str) -> str:
            return a + _json_str(text) + b + str(msg_id) + c

    if fast(102, "t\u00e9st \"q\"") != full(102, "t\u00e9st \"q\""):  # pragma: no cover
        return full
    return fast
