"""One run of the emulator's server, and what the other parts do through it.

A :class:`Generation` lives from ``start()`` to ``stop()``; ``restart()``
makes a new one, so sockets of two runs never mix.  It is the emulator's one
handle on python-socketio: sending events and packets, kicking a sid,
holding a socket's writer.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple

from .deps import ThreadedWSGIServer, eio_packet, socketio
from .packets import Stall, message_packet

__all__ = ["NAMESPACE", "Generation", "Manager"]

logger = logging.getLogger("watchers_bot.emulator")

NAMESPACE = "/"


class Manager(socketio.Manager):  # type: ignore[misc]  # upstream is untyped
    """Socket.IO's in-memory manager, telling the emulator when a sid is fully
    connected (after the CONNECT packet was queued) and when it is gone.

    Its rooms are not used: the emulator keeps its own (``state.rooms``) and
    addresses every event itself (:meth:`Generation.send_event`), which saves
    upstream's bidict writes per listen and per disconnect."""

    def __init__(self, on_connected: Callable[[str], None],
                 on_gone: Callable[[str], None]) -> None:
        super().__init__()
        self._on_connected = on_connected
        self._on_gone = on_gone

    def connect(self, sid: str, namespace: str) -> Any:
        sid = super().connect(sid, namespace)
        if namespace == NAMESPACE:
            self._on_connected(sid)
        return sid

    def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> Any:
        try:
            return super().disconnect(sid, namespace, **kwargs)
        finally:
            if namespace == NAMESPACE:
                self._on_gone(sid)


class Generation:
    """One run of the server, from start() to stop(); restart() makes a new one."""

    def __init__(self) -> None:
        self.sio: Any = None
        self.httpd: Optional[ThreadedWSGIServer] = None
        self.thread: Optional[threading.Thread] = None
        self.stopping = threading.Event()
        self.stop_serving = threading.Event()
        self.active: Set[Any] = set()
        self.active_cond = threading.Condition()

    @property
    def not_handled(self) -> Any:
        """What an event handler returns to send no ack."""
        return self.sio.not_handled

    # ------------------------------------------------------------------ what the parts use

    def send_event(self, targets: Iterable[Tuple[str, str]], event: str, args: List[Any],
                   on_write: Optional[Callable[[str], Callable[[], None]]] = None) -> None:
        """One Socket.IO EVENT, encoded once, queued on each ``(sid, eio sid)``;
        ``on_write(sid)``, when given, makes the callback told as it is written."""
        encoded = self.sio.packet_class(
            socketio.packet.EVENT, namespace=NAMESPACE, data=[event, *args]).encode()
        parts = encoded if isinstance(encoded, list) else [encoded]  # binary attachments
        first, rest = parts[0], parts[1:]
        send = self.sio.eio.send_packet
        for sid, eio_sid in targets:
            send(eio_sid, message_packet(first, None if on_write is None else on_write(sid)))
            for part in rest:
                send(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, part))

    def send_packet(self, eio_sid: str, packet: Any) -> None:
        """Queue an Engine.IO packet on one socket (see :func:`message_packet`)."""
        self.sio.eio.send_packet(eio_sid, packet)

    def eio_sid(self, sid: str) -> str:
        eio_sid: str = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        return eio_sid

    def stall(self, eio_sid: str, release: Callable[[], bool]) -> None:
        """Hold the socket's writer until ``release()`` returns true (polled)."""
        self.send_packet(eio_sid, Stall(release))

    def kick(self, sid: str) -> None:
        """A server-side Socket.IO disconnect of ``sid``."""
        try:
            self.sio.disconnect(sid)
        except Exception:  # pragma: no cover - the socket went away meanwhile
            logger.debug("kick of %s failed", sid, exc_info=True)

    def set_async_handlers(self, on: bool) -> None:
        # python-socketio reads it per event: a thread per request, or inline
        # on the socket's reader thread.
        self.sio.async_handlers = on
