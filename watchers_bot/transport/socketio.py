"""python-socketio's client, on our Engine.IO client, with (fast path) one-step packets.

The seam is ``socketio.Client._engineio_client_class`` (private), which picks
the Engine.IO client class (``INLINE_DISPATCH`` in :mod:`.upstream`).  Our
packets use :class:`WireJson`: compact UTF-8, as the JavaScript client sends
(``WIRE_JSON``).  On the fast path (see BENCHMARKS.md for the profiles behind
it), ``emit`` encodes a flat request in one step and ``_handle_eio_message``
decodes EVENT and ACK packets of the default namespace with one regular
expression and one ``json.loads`` and calls the handler or ack callback
directly (``FAST_SEND``, ``FAST_RECEIVE``).  Anything else (other namespaces,
binary packets, events that want an ack, unknown events or acks) takes
upstream's path, and so does everything while INFO logging of
python-socketio/engineio is on, so their packet logs stay whole.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterable, Optional, Tuple

import engineio
import socketio

from ..protocol.framing import EVENT_OR_ACK, decode_json, encode_json, event_packet
from .engineio import InlineEngineIOClient
from .upstream import SEAMS, Override, enabled
from .websocket import WebSocket

__all__ = ["SocketIOClient", "WireJson", "seam_available"]

log = logging.getLogger("watchers_bot")

# python-engineio's json module (the default of python-socketio's packets)
# passes parse_int to refuse integers of over 100 digits (their parsing is
# quadratic), which makes every loads() build a decoder and call back into
# Python for every integer: 5.6 us for a typical message, against 4.0 us for
# json.loads.  protocol.framing.decode_json bounds that cost without it (see
# there).  With orjson installed (0.7 us), it goes first.  A packet any of these
# refuses (orjson: integers beyond 64 bits, lone surrogates, NaN) takes
# upstream's path, which decodes it exactly as python-socketio does.
# A json module of the user's own is used as it is.
_ENGINEIO_JSON: Any = getattr(engineio, "json", None)
try:
    import orjson as _orjson

    _DECODE: Any = _orjson.loads
except ImportError:
    _DECODE = decode_json


class WireJson:
    """The json module python-socketio's packets use on our clients: UTF-8 on
    the wire, as the JavaScript client sends (see protocol.encode_json), and
    python-engineio's own safe decoding."""

    @staticmethod
    def dumps(data: Any, *args: Any, **kwargs: Any) -> str:
        return encode_json(data)  # Packet.encode passes only the compact separators

    @staticmethod
    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        codec = _ENGINEIO_JSON if _ENGINEIO_JSON is not None else json
        return codec.loads(text, *args, **kwargs)


class _WirePacket(socketio.packet.Packet):
    # A subclass, not Client(json=...): that would set the json of every
    # Packet in the process (the emulator's server included).
    json = WireJson


_FAST_SEND = enabled(Override.FAST_SEND)
# Values that can never be (or contain) binary data: a payload made only of
# these needs none of python-socketio's recursive binary checks.
_PLAIN = (str, int, float, bool, type(None))
_INFO = logging.INFO


class SocketIOClient(socketio.Client):
    """``socketio.Client`` whose Engine.IO client dispatches on the read thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = dict(kwargs.pop("websocket_extra_options", None) or {})
        # create_connection()'s documented class_ hook.
        options.setdefault("class_", WebSocket)
        super().__init__(*args, websocket_extra_options=options, **kwargs)
        if enabled(Override.WIRE_JSON) and getattr(
                self, "packet_class", None) is socketio.packet.Packet:
            self.packet_class: Any = _WirePacket

    if enabled(Override.INLINE_DISPATCH):

        def _engineio_client_class(self) -> type:
            return InlineEngineIOClient

    def send_request(self, event: str, data: Any, callback: Callable[..., Any]) -> Optional[int]:
        """Emit ``event`` with ``data`` to the default namespace, ``callback`` taking its
        ack; returns the ack id when known (the fast path), else None."""
        if _FAST_SEND and self._is_flat(event, data):
            # A request while none is waiting for its ack (a sequential send, a
            # listen) is written at once; requests that follow each other
            # (pipelining) are queued and batched by the write loop.
            callbacks = self.callbacks.get("/")
            lone = not callbacks or len(callbacks) <= 1  # [0] is the id counter
            ack_id: int = self._generate_ack_id("/", callback)
            text = event_packet(event, data, ack_id)
            if lone:
                self.eio.send_first(text)
            else:
                self.eio.send(text)
            return ack_id
        super().emit(event, data, callback=callback)
        return None

    def forget_acks(self, entries: Iterable[Tuple[Optional[int], Callable[..., Any]]]) -> int:
        """Remove the ack callbacks of requests given up on (expired): python-socketio
        keeps them until an ack comes, which for these may be never.  ``entries`` are
        (ack id or None, callback); without an id, the callback is looked up."""
        table = self.callbacks.get("/")
        if not table:
            return 0
        removed = 0
        unknown = set()
        for ack_id, callback in entries:
            if ack_id is None:
                unknown.add(id(callback))
            elif table.pop(ack_id, None) is not None:
                removed += 1
        if unknown:
            for key, value in list(table.items()):
                if key != 0 and id(value) in unknown and table.pop(key, None) is not None:
                    removed += 1
        return removed

    def acks_waiting(self) -> int:
        """How many ack callbacks python-socketio holds for the default namespace."""
        table = self.callbacks.get("/")
        return max(len(table) - 1, 0) if table else 0  # [0] is the id counter

    def _is_flat(self, event: Any, data: Any) -> bool:
        # A flat JSON object to the default namespace (every Watchers request):
        # encoded in one step, without python-socketio's recursive binary
        # checks, Packet objects and log call.
        if (type(data) is not dict or type(event) is not str or "/" not in self.namespaces
                or self.packet_class.json is not WireJson
                or self.logger.isEnabledFor(_INFO)):
            return False
        return all(type(value) in _PLAIN for value in data.values())

    if _FAST_SEND:

        def emit(self, event: Any, data: Any = None, namespace: Any = None,
                 callback: Any = None) -> None:
            if (namespace is None or namespace == "/") and callback is not None:
                self.send_request(event, data, callback)
                return
            super().emit(event, data, namespace=namespace, callback=callback)

    if enabled(Override.FAST_RECEIVE):

        def _handle_eio_message(self, data: Any) -> None:
            # EVENT and ACK packets of the default namespace: one regex, one
            # json.loads, and the handler or callback called here, in order.
            if type(data) is str and self._binary_packet is None:
                m = EVENT_OR_ACK.match(data)
                if m is not None and not self.logger.isEnabledFor(_INFO):
                    codec = self.packet_class.json
                    try:
                        if codec is WireJson or codec is _ENGINEIO_JSON:
                            args = _DECODE(data[m.end() - 1:])
                        else:
                            args = codec.loads(data[m.end() - 1:])
                    except ValueError:
                        args = None  # upstream decodes it again and raises
                    if type(args) is list:  # an ack may be empty: "3<id>[]"
                        ack_id = m.group(2)
                        if m.group(1) == "2":
                            if not ack_id and args:  # the server wants no answer
                                event = args[0]
                                handlers = self.handlers.get("/")
                                handler = handlers.get(event) if handlers and type(
                                    event) is str else None
                                if handler is not None:
                                    handler(*args[1:])
                                    return
                        elif ack_id:
                            callbacks = self.callbacks.get("/")
                            callback = callbacks.pop(int(ack_id), None) if callbacks else None
                            if callback is not None:
                                callback(*args)
                                return
            super()._handle_eio_message(data)


def seam_available() -> bool:
    """Whether the installed python-socketio/engineio still have every name in
    :data:`.upstream.SEAMS` that is looked up on a class (instances: see the tests)."""
    return all(hasattr(seam.owner, seam.name) for seam in SEAMS if not seam.instance)
