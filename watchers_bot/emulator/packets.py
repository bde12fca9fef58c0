"""The Engine.IO and Socket.IO packets the emulator's server writes.

Each one is a queue entry of a socket's writer thread: python-engineio calls
``encode()`` when the entry's turn comes, so these hook that moment (record
the write, write pre-built frames, hold the writer) without a thread of
their own.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from ..protocol.framing import decode_json, ws_text_frame
from .deps import eio_packet, socketio
from .websocket import Frames

__all__ = ["FrameBatch", "PacketJson", "RecordedPacket", "ServerPacket", "Stall",
           "message_packet"]


class RecordedPacket(eio_packet.Packet):  # type: ignore[misc]  # upstream is untyped
    """A MESSAGE packet that reports when the socket's writer takes it to write."""

    def __init__(self, data: str, on_write: Callable[[], None]) -> None:
        super().__init__(eio_packet.MESSAGE, data=data)
        self._on_write: Optional[Callable[[], None]] = on_write

    def encode(self, b64: bool = False) -> Any:
        on_write, self._on_write = self._on_write, None
        if on_write is not None:
            on_write()
        return super().encode(b64)


class FrameBatch(eio_packet.Packet):  # type: ignore[misc]  # upstream is untyped
    """Many ``message`` events in one Engine.IO queue entry.

    The socket's writer thread calls ``encode()`` when this entry's turn
    comes: it returns the pre-built websocket frames of all the messages as
    :class:`~.websocket.Frames`, which the emulator's websockets write as they
    are, on the writer thread and in queue order with every other packet.
    """

    def __init__(self, frames: bytes, last: str,
                 on_write: Optional[Callable[[], None]] = None) -> None:
        super().__init__(eio_packet.MESSAGE, data=last)
        self._frames = frames
        self._on_write = on_write

    def encode(self, b64: bool = False) -> Any:
        on_write, self._on_write = self._on_write, None
        if on_write is not None:
            on_write()
        return Frames(self._frames + ws_text_frame(super().encode(b64).encode("utf-8")))


class Stall(eio_packet.Packet):  # type: ignore[misc]  # upstream is untyped
    """A queue entry that holds the socket's writer until released (see ``freeze``)."""

    holds_writer = True  # the emulator's websocket writes what came before it first

    def __init__(self, release: Callable[[], bool]) -> None:
        super().__init__(eio_packet.NOOP)
        self._release = release

    def encode(self, b64: bool = False) -> Any:
        while not self._release():  # blocks a step at a time until thawed or stopped
            pass
        return super().encode(b64)


class PacketJson:
    """The json of the server's packets: compact ``json.dumps`` as upstream, and
    :func:`~watchers_bot.protocol.framing.decode_json`."""

    @staticmethod
    def dumps(data: Any, *args: Any, **kwargs: Any) -> str:
        return json.dumps(data, *args, **kwargs)

    @staticmethod
    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        return decode_json(text) if not args and not kwargs else json.loads(text, *args, **kwargs)


_SCALARS = frozenset({str, int, float, bool, type(None)})


class ServerPacket(socketio.packet.Packet):  # type: ignore[misc]  # upstream is untyped
    """python-socketio's packet, given to the server as its ``serializer``: the
    binary check walks plain JSON without upstream's list building per level
    (a good part of each ack's cost), and decoding builds no decoder per packet.
    Only the emulator's server uses it (not every Packet in the process)."""

    json = PacketJson

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        kind = type(data)
        if kind in _SCALARS:
            return False
        if kind is list or kind is dict:
            for value in (data if kind is list else data.values()):
                if type(value) in _SCALARS:
                    continue
                if cls.data_is_binary(value):
                    return True
            return False
        return bool(super().data_is_binary(data))


def message_packet(text: str, on_write: Optional[Callable[[], None]] = None) -> Any:
    """An Engine.IO MESSAGE packet of Socket.IO text, reporting its write when asked."""
    if on_write is None:
        return eio_packet.Packet(eio_packet.MESSAGE, text)
    return RecordedPacket(text, on_write)
