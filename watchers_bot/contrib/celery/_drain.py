"""The worker side of the bridge: drain a room's lane in order, under its lock, replying once.

A drain takes the room's lock (renewed by a :class:`Lease` while it works), handles the
lane's head message, pops it, and goes on for at most ``batch`` messages.  A reply is
recorded in Redis before it is sent and after the server's ack, so a re-run (a worker
killed mid-message) never runs the handler twice and never re-posts an acknowledged reply.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping

from ... import protocol
from ...errors import ConnectFailed, ServerError
from ...models import Message
from ...routing import Context, invoke
from ._lanes import Lanes

if TYPE_CHECKING:
    from ._bridge import Bridge

__all__ = ["Drainer", "Lease"]

log = logging.getLogger("watchers_bot.celery")


class Drainer:
    """Drains lanes for one :class:`~watchers_bot.contrib.celery.Bridge` (its handler, bot,
    Redis lanes and settings)."""

    def __init__(self, bridge: "Bridge") -> None:
        self.bridge = bridge
        self.lanes = bridge.lanes

    def drain(self, room_key: str) -> int:
        """Handle the room's waiting messages in order, if no other worker is; how many."""
        lanes = self.lanes
        handled = 0
        while True:
            token = uuid.uuid4().hex
            if not lanes.acquire(room_key, token):
                return handled  # its holder drains it, and re-checks after releasing
            lease = Lease(lanes, room_key, token)
            try:
                while handled < self.bridge.batch and not lease.lost.is_set():
                    entry = lanes.head(room_key)
                    if entry is None:
                        break
                    self._handle(room_key, entry["payload"], float(entry["at"]))
                    if not lanes.pop(room_key, token):
                        lease.lost.set()
                        break
                    handled += 1
            finally:
                lease.stop()
                more = lanes.release(room_key, token)
            if lease.lost.is_set():
                log.warning("lost the lock of room %s (Redis unreachable for longer than "
                            "lock_ttl?); its holder now may repeat the last message",
                            room_key)
                return handled
            if not more:
                return handled
            if handled >= self.bridge.batch:
                self.bridge.kick(room_key)
                return handled

    def _handle(self, room_key: str, payload: Mapping[str, Any], received_at: float) -> None:
        lanes = self.lanes
        try:
            message = protocol.parse_message(dict(payload))
        except protocol.MalformedPayload as exc:
            lanes.count("malformed")
            log.error("dropped a malformed message of room %s: %s", room_key, exc)
            return
        record = lanes.reply_record(room_key, message.id)
        if record is not None:
            self._resume(room_key, message, record)
            return
        waited = time.time() - received_at
        bot = self.bridge.bot()
        started = time.perf_counter()
        try:
            reply = invoke(self.bridge.handler, message, Context(bot=bot, message=message))
        except Exception:
            lanes.record_handled(time.perf_counter() - started, waited, failed=True)
            log.exception("the handler failed on message %s of room %s", message.id, room_key)
            return
        lanes.record_handled(time.perf_counter() - started, waited, failed=False)
        if reply is not None:
            self._reply(room_key, message, reply)

    def _resume(self, room_key: str, message: Message, record: Mapping[str, Any]) -> None:
        # This message was handled before (a re-run after a crash or a failed send): never
        # run the handler again, finish its reply from the record.
        state, text = record.get("state"), str(record.get("text", ""))
        if state == "replied":
            self.lanes.count("replies_suppressed")
            return
        if state == "refused":  # the server said no; asking again would repeat it
            return
        if state == "sending":  # the worker stopped between send and record: fate unknown
            self.lanes.note_uncertain(room_key, message.id)
            if not self.bridge.resend_uncertain:
                log.warning("not re-sending the reply to message %s of room %s: it may or "
                            "may not have been posted (resend_uncertain is off)",
                            message.id, room_key)
                return
            log.warning("re-sending the reply to message %s of room %s: the first attempt "
                        "may have been posted too", message.id, room_key)
        self._reply(room_key, message, text)

    def _reply(self, room_key: str, message: Message, text: str) -> None:
        lanes = self.lanes
        lanes.set_reply(room_key, message.id, "sending", text)
        try:
            self.bridge.bot().send(message.room_id, text)
        except ConnectFailed:
            lanes.set_reply(room_key, message.id, "unsent", text)
            raise  # nothing was sent; the message stays at the head, a later task retries
        except ServerError as exc:
            lanes.set_reply(room_key, message.id, "refused", text)
            lanes.count("reply_errors")
            log.error("the server refused the reply to message %s of room %s: %s",
                      message.id, room_key, exc)
            return
        # AckTimeout, ConnectionLost, BotClosed: fate unknown, the record says "sending"
        lanes.mark_replied(room_key, message.id, text)


class Lease:
    """Keeps a room's lock alive while its holder works, on a thread of its own."""

    def __init__(self, lanes: Lanes, room_key: str, token: str) -> None:
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._args = (lanes, room_key, token)
        self._every = max(0.05, lanes.lock_ttl_ms / 3000.0)
        self._thread = threading.Thread(target=self._run, name="watchers-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lanes, room_key, token = self._args
        while not self._stop.wait(self._every):
            try:
                if not lanes.refresh(room_key, token):
                    self.lost.set()
                    return
            except Exception:  # Redis down: the lock may expire; the holder checks lost
                log.warning("could not extend the lock of room %s", room_key, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
