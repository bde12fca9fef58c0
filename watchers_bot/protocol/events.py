"""Event names, and the one spec of each request's fields.

The client checks a request's arguments against :data:`REQUESTS` before it
goes on the wire (:func:`check_value`, naming the Python argument), and the
emulator validates what arrives against the same spec
(:func:`watchers_bot.protocol.server.validate_request`, naming the wire field),
so what one refuses the other refuses too.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import attrs

__all__ = [
    "EVENT_EXCEPTION",
    "EVENT_LISTEN",
    "EVENT_MESSAGE",
    "EVENT_SEND",
    "REQUESTS",
    "Field",
    "check_value",
    "problem_with",
]

EVENT_LISTEN = "external/listen"
EVENT_SEND = "external/send"
EVENT_MESSAGE = "message"
#: A NestJS gateway reports a failed handler with this event instead of an ack.
EVENT_EXCEPTION = "exception"


@attrs.frozen
class Field:
    """One field of a request payload: a string that is not empty or only whitespace."""

    #: its name on the wire (``roomId``).
    wire: str
    #: the name of the Python argument it comes from (``room_id``), for error texts.
    argument: str
    #: whether the value is a credential (masked wherever the payload is shown).
    secret: bool = False


#: Every request the client makes, and its payload's fields, in wire order.
REQUESTS: Dict[str, Tuple[Field, ...]] = {
    EVENT_LISTEN: (Field("roomId", "room_id"), Field("apiKey", "api_key", secret=True)),
    EVENT_SEND: (
        Field("roomId", "room_id"),
        Field("apiKey", "api_key", secret=True),
        Field("userId", "bot_id"),
        Field("text", "text"),
    ),
}


def problem_with(value: Any) -> "Tuple[type, str] | None":
    """What is wrong with a field's value: ``(exception type, what)``, or None if valid."""
    if value is None:
        return TypeError, "is missing"
    if not isinstance(value, str):
        return TypeError, "must be a non-empty string"
    if not value:
        return ValueError, "must be a non-empty string"
    if not value.strip():
        return ValueError, "must be a non-empty string, not only whitespace"
    return None


def check_value(value: Any, name: str) -> str:
    """``value`` if it is a valid field value; else ``TypeError``/``ValueError`` naming ``name``.

    The client's check of an argument before anything goes on the wire.
    """
    if type(value) is str and value and not value[0].isspace():
        return value  # the common case, without the full check
    problem = problem_with(value)
    if problem is None:
        return value  # type: ignore[no-any-return]
    kind, _ = problem
    if kind is TypeError:
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    raise ValueError(f"{name} must not be empty or only whitespace")
