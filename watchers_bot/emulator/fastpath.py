"""The emulator's fast path for plain requests: ``external/listen`` and ``external/send``.

python-socketio's server decodes each message into a Packet, logs, looks up a
handler and encodes the ack through another Packet.  For a text EVENT of the
default namespace with an ack id, naming one of the two request events, this
reads the frame with :func:`~watchers_bot.protocol.framing.read_event_or_ack`
and one JSON decode, calls the same handler as upstream's catch-all (the
gateway: records, fault rules, rate limit, observers, validation) and queues
the ack text already built.  Everything else, and every request while handlers
run in threads (a delay fault), goes upstream's way.  The upstream names used
are rows of :data:`watchers_bot.transport.upstream.SEAMS` (``EMULATOR_FAST``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Tuple

from ..protocol.events import EVENT_LISTEN, EVENT_SEND
from ..protocol.framing import (
    SOCKETIO_ACK,
    SOCKETIO_EVENT,
    decode_json,
    read_event_or_ack,
)
from ..transport import upstream
from .deps import eio_packet, socketio

__all__ = ["FastServer", "ack_text", "enabled"]

EventHandler = Callable[[str, str, Tuple[Any, ...]], Any]

_FAST_EVENTS = frozenset({EVENT_LISTEN, EVENT_SEND})
# Longer ack ids go upstream's way (its int() of them, its answer).
_MAX_ACK_DIGITS = 15
_NAMESPACE = "/"


def enabled() -> bool:
    """Whether the emulator's fast path is installed (tested versions, names
    present, ``WATCHERS_FAST_PATH`` not 0)."""
    return upstream.enabled(upstream.Override.EMULATOR_FAST)


def ack_text(ack_id: int, answer: Any) -> str:
    """The Socket.IO ACK text upstream's server writes for a handler's return value
    (compact ``json.dumps``, as :class:`~.packets.PacketJson`)."""
    if answer is None:
        data: Any = []
    elif isinstance(answer, tuple):
        data = list(answer)
    else:
        data = [answer]
    return SOCKETIO_ACK + str(ack_id) + json.dumps(data, separators=(",", ":"))


class FastServer(socketio.Server):  # type: ignore[misc]  # upstream is untyped
    """python-socketio's server with the fast path for plain requests."""

    def __init__(self, *args: Any, fast_handler: Optional[EventHandler] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast_handler = fast_handler if enabled() else None

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        handler = self.fast_handler
        if handler is None or not self._fast(handler, eio_sid, data):
            super()._handle_eio_message(eio_sid, data)

    def _fast(self, handler: EventHandler, eio_sid: str, data: Any) -> bool:
        """Handle ``data`` if it is a plain request; False to leave it to upstream."""
        if type(data) is not str or self.async_handlers or eio_sid in self._binary_packet:
            return False
        head = read_event_or_ack(data)
        if head is None or head[0] != SOCKETIO_EVENT or not 0 < len(head[1]) <= _MAX_ACK_DIGITS:
            return False
        try:
            args = decode_json(data[head[2]:])
        except ValueError:
            return False  # upstream refuses it as it always did
        if type(args) is not list or not args or args[0] not in _FAST_EVENTS:
            return False
        manager = self.manager
        sid = manager.sid_from_eio_sid(eio_sid, _NAMESPACE)
        if sid is None or not manager.is_connected(sid, _NAMESPACE):
            return False  # upstream logs and drops it
        answer = handler(args[0], sid, tuple(args[1:]))
        if answer is not self.not_handled:
            self.eio.send_packet(eio_sid, eio_packet.Packet(
                eio_packet.MESSAGE, ack_text(int(head[1]), answer)))
        return True
