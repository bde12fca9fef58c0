"""python-engineio's client, dispatching ordinary packets on its read thread.

python-engineio starts a new thread for every incoming packet.  That loses
the order in which the server sent messages and costs a thread start per
message.  Here the packets that are safe to handle inline (Socket.IO CONNECT,
EVENT, ACK and CONNECT_ERROR) run on the read thread itself, in order; the
rest (DISCONNECT, whose handler joins the read thread, and binary packets)
keep upstream's thread.  The seam is ``start_background_task`` (public) as
called by ``engineio.Client._trigger_event(..., run_async=True)``
(``INLINE_DISPATCH`` in :mod:`.upstream`).

On the fast path, ``_receive_packet`` hands Engine.IO MESSAGE packets straight
to the Socket.IO client (``FAST_RECEIVE``), and ``send_first`` and the write
loop write requests with fewer thread hops and socket writes (``FAST_SEND``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List

import engineio
import websocket

from ..protocol.framing import ENGINEIO_MESSAGE
from .upstream import Override, enabled
from .websocket import WebSocket

__all__ = ["INLINE_PACKET_TYPES", "InlineEngineIOClient"]

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

_MESSAGE = 4  # Engine.IO MESSAGE packet type
_INFO = logging.INFO


class _Flush:
    """A write-loop queue entry: finish a frame that a direct write left half written."""

    __slots__ = ()
    binary = False
    packet_type = 6  # NOOP, for upstream's log line


_FLUSH = _Flush()


class InlineEngineIOClient(engineio.Client):
    """An Engine.IO client that dispatches ordinary packets on its read thread."""

    #: Packets handled inline since creation (read by tests and stats).
    inline_dispatches = 0
    #: Called with the exception when an inline handler raised (never re-raised).
    on_dispatch_error: Callable[[BaseException], None] = staticmethod(lambda exc: None)

    if enabled(Override.FAST_RECEIVE):

        def _receive_packet(self, pkt: Any) -> None:
            # MESSAGE packets go straight to the Socket.IO client, on this
            # thread; PING, CLOSE and the rest (and everything while INFO
            # logging is on) take upstream's path.
            if pkt.packet_type == _MESSAGE:
                data = pkt.data
                if (type(data) is str and data[:1] in INLINE_PACKET_TYPES
                        and not self.logger.isEnabledFor(_INFO)):
                    handler = self.handlers.get("message")
                    if handler is not None:
                        self.inline_dispatches += 1
                        self._dispatch(handler, data)
                        return
            super()._receive_packet(pkt)

    if enabled(Override.FAST_SEND):

        def send_first(self, data: str) -> None:
            """Send a MESSAGE packet, written at once from this thread when nothing
            is queued or being written; otherwise (or when the write could block)
            through upstream's queue and write loop, as ``send()``.

            The queue's unfinished count stays above zero until the write loop has
            written everything it took, so packets keep their order.  Saves the
            write thread's wake-up, which is a good part of a lone request's
            round trip.
            """
            if (self.state == "connected" and self.queue.unfinished_tasks == 0
                    and self.current_transport == "websocket"
                    and not self.logger.isEnabledFor(_INFO)):
                ws = self.ws
                if isinstance(ws, WebSocket) and ws.send_direct(ENGINEIO_MESSAGE + data):
                    if ws.has_tail():
                        self.queue.put(_FLUSH)
                    return
            self.send(data)

        def _write_loop(self) -> None:
            # Upstream's websocket write loop, but every packet waiting in the
            # queue goes out in one socket write (see WebSocket.send_texts).
            if self.current_transport != "websocket":  # pragma: no cover - polling
                super()._write_loop()
                return
            get = self.queue.get
            empty = self.queue_empty
            while self.state == "connected":
                timeout = max(self.ping_interval, self.ping_timeout) + 5
                try:
                    packets = [get(timeout=timeout)]
                except empty:
                    self.logger.error("packet queue is empty, aborting")
                    break
                if packets[0] is None:
                    self.queue.task_done()
                    packets = []
                else:
                    while True:
                        try:
                            packets.append(get(block=False))
                        except empty:
                            break
                        if packets[-1] is None:
                            packets.pop()
                            self.queue.task_done()
                            break
                if not packets:
                    break  # an empty batch means: connection closed
                try:
                    texts: List[str] = []
                    for pkt in packets:
                        if pkt is _FLUSH:
                            self.ws.flush_tail()
                            continue
                        encoded = pkt.encode()
                        if pkt.binary:
                            self.ws.send_texts(texts)
                            texts = []
                            self.ws.send_binary(encoded)
                        else:
                            texts.append(encoded)
                    self.ws.send_texts(texts)
                    for _ in packets:
                        self.queue.task_done()
                except (websocket.WebSocketConnectionClosedException, BrokenPipeError, OSError):
                    self.logger.warning("WebSocket connection was closed, aborting")
                    break
            self.logger.info("Exiting write loop task")
            self.write_loop_task = None

    else:

        def send_first(self, data: str) -> None:
            """Send a MESSAGE packet (upstream's ``send``: the fast path is off)."""
            self.send(data)

    if enabled(Override.INLINE_DISPATCH):

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


