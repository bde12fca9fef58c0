"""The python-socketio client, with incoming packets dispatched on the read thread.

python-engineio starts a new thread for every incoming packet.  That loses
the order in which the server sent messages and costs a thread start per
message.  Here the packets that are safe to handle inline (Socket.IO CONNECT,
EVENT, ACK and CONNECT_ERROR) run on the read thread itself, in order; the
rest (DISCONNECT, whose handler joins the read thread, and binary packets)
keep upstream's thread.

The seam is ``engineio.Client.start_background_task`` (public) as called by
``engineio.Client._trigger_event(..., run_async=True)``, and
``socketio.Client._engineio_client_class`` (private), which picks the Engine.IO
client class.  ``tests/test_transport.py`` fails loudly if a release moves
either; setup.cfg pins the tested range.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import engineio
import socketio
import websocket

__all__ = ["INLINE_PACKET_TYPES", "SocketIOClient", "seam_available"]

log = logging.getLogger("watchers_bot")

# Socket.IO packet types (first character of an Engine.IO MESSAGE payload)
# that are handled on the read thread: CONNECT, EVENT, ACK, CONNECT_ERROR.
INLINE_PACKET_TYPES = frozenset("0234")


class _Finished:
    """Stands in for the thread upstream would have started and joined."""

    __slots__ = ()

    def join(self, timeout: Any = None) -> None:
        return None

    def is_alive(self) -> bool:
        return False


_FINISHED = _Finished()


class _InlineEngineIOClient(engineio.Client):  # type: ignore[misc]
    """An Engine.IO client that dispatches ordinary packets on its read thread."""

    #: Packets handled inline since creation (read by tests and stats).
    inline_dispatches = 0
    #: Called with the exception when an inline handler raised (never re-raised).
    on_dispatch_error: Callable[[BaseException], None] = staticmethod(lambda exc: None)

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        if target == self.handlers.get("message") and len(args) == 1 and not kwargs:
            data = args[0]
            if isinstance(data, str) and data[:1] in INLINE_PACKET_TYPES:
                self.inline_dispatches += 1
                self._dispatch(target, data)
                return _FINISHED
            # DISCONNECT (its handler joins the read thread) and binary packets
            # keep upstream's thread, guarded the same way.
            return super().start_background_task(self._dispatch, target, data)
        return super().start_background_task(target, *args, **kwargs)

    def _dispatch(self, target: Any, data: Any) -> None:
        try:
            target(data)
        except Exception as exc:  # bad data from the server must not kill a thread
            log.warning("could not handle a packet from the server: %r", exc)
            try:
                self.on_dispatch_error(exc)
            except Exception:  # pragma: no cover - defensive
                log.exception("dispatch error hook failed")


# How long close() waits for the server's close frame.  The Engine.IO read
# thread reads the same socket and usually takes that frame first, so
# websocket-client's default (3 s) was mostly spent waiting for nothing.
_CLOSE_WAIT = 0.1


class _WebSocket(websocket.WebSocket):  # type: ignore[misc]
    """websocket-client's WebSocket with a short close handshake wait."""

    def close(self, status: int = websocket.STATUS_NORMAL, reason: Any = b"",
              timeout: Any = _CLOSE_WAIT) -> None:
        super().close(status, reason, _CLOSE_WAIT if timeout is None else min(timeout, _CLOSE_WAIT))


class SocketIOClient(socketio.Client):  # type: ignore[misc]
    """``socketio.Client`` whose Engine.IO client dispatches on the read thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = dict(kwargs.pop("websocket_extra_options", None) or {})
        # create_connection()'s documented class_ hook.
        options.setdefault("class_", _WebSocket)
        super().__init__(*args, websocket_extra_options=options, **kwargs)

    def _engineio_client_class(self) -> type:
        return _InlineEngineIOClient


def seam_available() -> bool:
    """Whether the installed python-socketio/engineio still have the seam we hook."""
    return (
        callable(getattr(socketio.Client, "_engineio_client_class", None))
        and callable(getattr(engineio.Client, "_trigger_event", None))
        and callable(getattr(engineio.Client, "_receive_packet", None))
    )
