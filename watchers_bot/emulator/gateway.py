"""The protocol gateway: every connect, request and answer of the emulator.

Requests are validated with :func:`watchers_bot.protocol.server.validate_request`
(the same field spec the client checks its arguments with), and every answer,
``exception`` event and ``message`` event is built by
:mod:`watchers_bot.protocol.server`, so client and emulator cannot drift.
Records are kept and fault rules applied here, in one pass per request.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .._redact import mask_secrets
from ..protocol.events import EVENT_EXCEPTION, EVENT_LISTEN, EVENT_MESSAGE
from ..protocol.server import (
    DEFAULT_ERROR,
    Refused,
    exception_body,
    listen_answer,
    message_payload,
    validate_request,
)
from .deps import socketio
from .faults import AckRules, RateLimit
from .generation import Generation
from .records import Records, RequestRecord, SentMessage
from .state import State, close_raw

__all__ = ["Gateway", "Observers"]

logger = logging.getLogger("watchers_bot.emulator")

Observer = Callable[[str, Dict[str, Any]], None]


class Observers:
    """Callbacks told of everything that happens (the playground's control API)."""

    def __init__(self) -> None:
        self.callbacks: List[Observer] = []

    def add(self, observer: Observer) -> None:
        self.callbacks.append(observer)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def notify(self, kind: str, data: Dict[str, Any]) -> None:
        # Observers must not block (the playground's only queues); a failing
        # one is logged and never breaks the server.
        for observer in list(self.callbacks):
            try:
                observer(kind, data)
            except Exception:  # pragma: no cover - defensive
                logger.exception("emulator observer failed on %s", kind)


class Gateway:
    """Implements :class:`~.server.Handlers`: auth at connect, then every event."""

    def __init__(self, state: State, records: Records, rules: AckRules, rate: RateLimit,
                 observers: Observers, *, project: str, echo_sender: bool) -> None:
        self.state = state
        self.records = records
        self.rules = rules
        self.rate = rate
        self.observers = observers
        self.project = project
        self.echo_sender = echo_sender
        # orders message ids with their broadcast (posts and sends alike)
        self.send_lock = threading.Lock()
        self.ids = itertools.count(1)

    # ------------------------------------------------------------------ connections

    def on_connect(self, gen: Generation, sid: str, environ: Mapping[str, Any],
                   auth: Any) -> Any:
        if gen.stopping.is_set():
            # Not an auth refusal (a client gives up on those for good): the
            # link is cut, so the client sees a transport error and retries.
            close_raw(environ.get("werkzeug.socket"))
            return False
        bearer = auth.get("bearer") if isinstance(auth, Mapping) else None
        state = self.state
        if not isinstance(bearer, str) or not bearer:
            state.refuse()
            logger.debug("refused %s: no bearer token", sid)
            raise socketio.exceptions.ConnectionRefusedError(
                'Unauthorized: missing bearer token (auth must be {"bearer": <token>})'
            )
        with state.lock:
            if bearer not in state.tokens:
                state.refuse()
                logger.debug("refused %s: invalid bearer token", sid)
                raise socketio.exceptions.ConnectionRefusedError(
                    "Unauthorized: invalid bearer token"
                )
            state.pending[sid] = (gen.eio_sid(sid), bearer, environ.get("werkzeug.socket"))
        return True

    def on_connected(self, gen: Generation, sid: str) -> None:
        if self.state.connected(sid, gen):
            logger.debug("client %s connected", sid)
            self.observers.notify("connect", {"sid": sid})

    def on_gone(self, gen: Generation, sid: str) -> None:
        if self.state.gone(sid):
            logger.debug("client %s disconnected", sid)
            self.observers.notify("disconnect", {"sid": sid})

    # ------------------------------------------------------------------ requests

    def on_event(self, gen: Generation, event: str, sid: str, args: Tuple[Any, ...]) -> Any:
        """Every client event lands here (python-socketio's catch-all handler).

        Never raises: a failure is logged (masked) and answered as an error ack.
        """
        if not self.observers:
            return self._handle(gen, event, sid, args)[0]
        started = time.monotonic()
        answer, mode, shown = self._handle(gen, event, sid, args)
        acked = answer is not gen.not_handled
        self.observers.notify("request", {
            "event": event, "sid": sid, "mode": mode, "payload": shown,
            "acked": acked, "ack": mask_secrets(answer) if acked else None,
            "ack_ms": (time.monotonic() - started) * 1000.0,
        })
        return answer

    def _handle(self, gen: Generation, event: str, sid: str,
                args: Tuple[Any, ...]) -> Tuple[Any, Optional[str], Any]:
        """``(answer, mode, masked payload)`` of one event."""
        payload = args[0] if args else None
        mode: Optional[str] = None
        shown = None
        try:
            state = self.state
            shown = mask_secrets(payload)
            with state.lock:
                rule = self.rules.take(event)
                mode = None if rule is None else rule.mode
                self.records.add_request(RequestRecord(event, sid, shown, mode, time.monotonic()))
            if rule is None:
                logger.debug("ignored event %r from %s", event, sid)
                return gen.not_handled, mode, shown
            if mode == "error":
                return (dict(DEFAULT_ERROR) if rule.error is None else rule.error), mode, shown
            if mode == "exception":
                self.emit(gen, EVENT_EXCEPTION, [exception_body(event, payload, rule.error)],
                          to=sid)
                return gen.not_handled, mode, shown
            answer: Optional[Dict[str, Any]]
            try:
                request = validate_request(event, payload, state.api_keys)
                if event == EVENT_LISTEN:
                    answer = self._listen(gen, sid, request["roomId"])
                else:
                    self.rate.check()
                    self._send(gen, sid, request, shown)
                    answer = None
            except Refused as refused:
                answer = refused.answer()
            if mode == "withhold":
                return gen.not_handled, mode, shown
            if mode == "delay" and gen.stopping.wait(rule.delay):
                return gen.not_handled, mode, shown  # stopped meanwhile: the socket is gone
            return answer, mode, shown
        except Exception as exc:
            logger.error(
                "emulator: %s handler failed for %s (payload %r): %s: %s",
                event, sid, mask_secrets(payload) if shown is None else shown,
                type(exc).__name__, exc,
            )
            return dict(DEFAULT_ERROR), mode, shown

    def _listen(self, gen: Generation, sid: str, room_id: str) -> Dict[str, Any]:
        if not self.state.join(sid, room_id):
            raise Refused(400, "socket is not connected")
        logger.debug("%s listens to %r", sid, room_id)
        return listen_answer(room_id)

    def _send(self, gen: Generation, sid: str, request: Dict[str, str], shown: Any) -> None:
        room_id, text, user_id = request["roomId"], request["text"], request["userId"]
        state = self.state
        with self.send_lock:
            msg_id = next(self.ids)
            with state.lock:
                self.records.add_sent(SentMessage(
                    room_id, text, user_id, sid, shown, time.monotonic(), msg_id,
                ))
                if self.observers:
                    self.observers.notify("message", {"sid": sid, "payload": message_payload(
                        room_id, msg_id, text, user_id, self.project)})
                # Nobody to tell: skip building and encoding a broadcast that
                # reaches no socket (a socket still waiting for its listen ack
                # is not owed this message).
                listeners = state.rooms.get(room_id)
                echo = self.echo_sender
                audience = bool(listeners) and (echo or listeners != {sid})
            if audience:
                message = message_payload(room_id, msg_id, text, user_id, self.project)
                self.emit(gen, EVENT_MESSAGE, [message], room=room_id,
                          skip_sid=None if echo else sid)

    # ------------------------------------------------------------------ events out

    def emit(self, gen: Generation, event: str, args: List[Any], *, to: Optional[str] = None,
             room: Optional[str] = None, skip_sid: Optional[str] = None) -> int:
        """Send an event to the client ``to``, to the listeners of ``room``, or to every
        client (but ``skip_sid``); returns how many were addressed.  ``message``
        events are recorded as written (``record_writes``)."""
        state = self.state
        with state.lock:
            clients = state.clients
            if to is not None:
                client = clients.get(to)
                targets = [] if client is None else [(to, client.eio_sid)]
            else:
                sids = state.rooms.get(room, ()) if room is not None else clients
                targets = [(sid, clients[sid].eio_sid) for sid in sids
                           if sid != skip_sid and sid in clients]
        on_write = None
        if self.records.record_writes and event == EVENT_MESSAGE and len(args) == 1:
            room_id, msg_id = _message_ids(args[0])
            if room_id is not None:
                add = self.records.add_write

                def on_write(sid: str) -> Callable[[], None]:
                    return functools.partial(add, sid, room_id, msg_id)

        gen.send_event(targets, event, args, on_write)
        return len(targets)


def _message_ids(data: Any) -> Tuple[Optional[str], Any]:
    """``(roomId, message.id)`` of a ``message`` payload, ``(None, None)`` if it has none."""
    if isinstance(data, Mapping):
        body = data.get("message")
        if isinstance(data.get("roomId"), str) and isinstance(body, Mapping) and "id" in body:
            return data["roomId"], body["id"]
    return None, None
