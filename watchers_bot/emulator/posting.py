"""What the emulator pushes by itself: human posts, fast bulk posts, raw events and packets.

Payloads are the protocol's (:func:`~watchers_bot.protocol.server.message_payload`);
:meth:`Posting.post_many` frames them once with
:mod:`watchers_bot.protocol.framing` and writes them in large batches.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Dict, Iterable, List, Optional

from ..protocol.events import EVENT_MESSAGE
from ..protocol.framing import engineio_message, ws_text_frame
from ..protocol.server import message_encoder, message_payload
from .gateway import Gateway
from .packets import FrameBatch, message_packet
from .records import Records
from .server import Server
from .state import check_name

__all__ = ["Posting"]

_BATCH = 1000  # messages per pre-framed post_many chunk


class Posting:
    """Posts and pushes, in message-id order with the gateway's sends."""

    def __init__(self, server: Server, gateway: Gateway, records: Records, *,
                 preframed: bool) -> None:
        self._server = server
        self._gateway = gateway
        self._records = records
        self.preframed = preframed

    def post(self, room_id: str, text: str, user_id: str, extra: Dict[str, Any]) -> Dict[str, Any]:
        gen = self._server.running_gen()
        check_name("room_id", room_id)
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        gw = self._gateway
        with gw.send_lock:
            payload = message_payload(room_id, next(gw.ids), text, user_id, gw.project, **extra)
            gw.emit(gen, EVENT_MESSAGE, [payload], room=room_id)
            gw.observers.notify("message", {"sid": None, "payload": payload})
        return payload

    def post_many(self, room_id: str, texts: Iterable[str], user_id: str) -> int:
        gen = self._server.running_gen()
        check_name("room_id", room_id)
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, not {type(text).__name__}")
        if not texts:
            return 0
        gw = self._gateway
        state = gw.state
        records = self._records
        encode = message_encoder(gw.project, room_id, user_id)
        with gw.send_lock:
            first = next(gw.ids)
            gw.ids = itertools.count(first + len(texts))
            with state.lock:
                targets = [
                    (c.eio_sid, sid)
                    for sid in state.rooms.get(room_id, ())
                    if (c := state.clients.get(sid)) is not None
                ]
            if not targets:
                return len(texts)
            packets = [encode(first + i, text) for i, text in enumerate(texts)]
            if self.preframed:
                chunks = []
                for start in range(0, len(packets), _BATCH):
                    chunk = packets[start:start + _BATCH]
                    frames = b"".join(
                        ws_text_frame(engineio_message(p).encode("utf-8")) for p in chunk[:-1]
                    )
                    chunks.append((frames, chunk[-1]))
                for eio_sid, sid in targets:
                    for n, (frames, last) in enumerate(chunks):
                        on_write = None
                        if records.record_writes:
                            ids = range(first + n * _BATCH,
                                        first + min((n + 1) * _BATCH, len(texts)))
                            on_write = functools.partial(records.add_writes, sid, room_id, ids)
                        gen.send_packet(eio_sid, FrameBatch(frames, last, on_write))
            else:
                for eio_sid, sid in targets:
                    for i, p in enumerate(packets):
                        on_one = (functools.partial(records.add_write, sid, room_id, first + i)
                                  if records.record_writes else None)
                        gen.send_packet(eio_sid, message_packet(p, on_one))
        return len(texts)

    def push_raw(self, event: str, args: List[Any], to: Optional[str],
                 room: Optional[str]) -> int:
        gen = self._server.running_gen()
        if to is not None and room is not None:
            raise ValueError("give to= or room=, not both")
        if to is not None and to not in self._gateway.state.clients:
            raise ValueError(f"no connected client with sid {to!r}")
        return self._gateway.emit(gen, event, args, to=to, room=room)

    def push_packet(self, encoded: str, to: Optional[str]) -> int:
        gen = self._server.running_gen()
        if not isinstance(encoded, str):
            raise TypeError("encoded must be a str")
        clients = self._gateway.state.select(to)
        for c in clients:
            gen.send_packet(c.eio_sid, message_packet(encoded))
        return len(clients)
