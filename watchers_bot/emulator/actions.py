"""What the control API's POST routes do: post as a human, faults, replays, exports.

Each action takes the request's JSON body (already read and checked as an
object by :mod:`.guard`), checks its fields (a clear ``TypeError`` or
``ValueError`` naming the field, answered 400) and drives the emulator through
its public methods.  Faults are published to the :class:`~.feed.Feed` so the
page shows them.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from .._redact import mask_secrets
from ..protocol.events import EVENT_MESSAGE
from .feed import Feed
from .transcript import Transcript, replay

if TYPE_CHECKING:
    from . import Emulator

__all__ = ["Actions"]

logger = logging.getLogger("watchers_bot.emulator")


class Actions:
    """The POST routes of one emulator's control API, by name."""

    def __init__(self, emulator: "Emulator", feed: Feed) -> None:
        self._emu = emulator
        self._feed = feed

    def get(self, name: str) -> Optional[Callable[[Dict[str, Any]], Any]]:
        """The action for the route ``name`` (``post``, ``drop``, ...), or None."""
        return {
            "rooms": self._create_room, "post": self._post, "drop": self._drop,
            "kick": self._kick, "freeze": self._freeze, "thaw": self._thaw,
            "restart": self._restart, "ack": self._ack, "push": self._push,
            "replay": self._replay, "export": self._export,
        }.get(name)

    @staticmethod
    def _str(body: Dict[str, Any], name: str, default: Optional[str] = None) -> str:
        value = body.get(name, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
        return value

    @staticmethod
    def _sid(body: Dict[str, Any]) -> Optional[str]:
        sid = body.get("sid")
        if sid is not None and not isinstance(sid, str):
            raise TypeError("sid must be a string or null")
        return sid or None

    def _fault(self, name: str, detail: Dict[str, Any]) -> None:
        self._feed.publish("fault", {"fault": name, **detail})

    def _create_room(self, body: Dict[str, Any]) -> Dict[str, Any]:
        room = self._str(body, "room")
        self._feed.add_room(room)
        return {"room": room}

    def _post(self, body: Dict[str, Any]) -> Dict[str, Any]:
        room, text = self._str(body, "room"), body.get("text")
        if not isinstance(text, str):
            raise TypeError("text must be a string")
        payload = self._emu.post(room, text, user_id=self._str(body, "user", "human"))
        return {"posted": payload, "listeners": len(self._emu.listeners(room))}

    def _drop(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        count = self._emu.drop(sid)
        self._fault("drop", {"sid": sid, "count": count})
        return {"dropped": count}

    def _kick(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        count = self._emu.kick(sid)
        self._fault("kick", {"sid": sid, "count": count})
        return {"kicked": count}

    def _freeze(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid, duration = self._sid(body), body.get("duration")
        if duration is not None and not isinstance(duration, (int, float)):
            raise TypeError("duration must be a number of seconds or null")
        count = self._emu.freeze(sid, duration)
        self._fault("freeze", {"sid": sid, "count": count, "duration": duration})
        return {"frozen": count}

    def _thaw(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        self._emu.thaw(sid)
        self._fault("thaw", {"sid": sid})
        return {"thawed": True}

    def _restart(self, body: Dict[str, Any]) -> Dict[str, Any]:
        down_for = body.get("down_for", 0.0)
        if not isinstance(down_for, (int, float)) or not 0 <= down_for <= 60:
            raise ValueError("down_for must be a number of seconds from 0 to 60")
        drop = bool(body.get("drop", False))
        self._fault("restart", {"down_for": down_for, "drop": drop})

        def run() -> None:  # not on this request's thread: the restart ends it
            try:
                self._emu.restart(float(down_for), drop=drop)
            except Exception as exc:
                logger.error("emulator restart from the playground failed: %s", exc)

        threading.Thread(target=run, name="watchers-emulator-restart", daemon=True).start()
        return {"restarting": True}

    def _ack(self, body: Dict[str, Any]) -> Dict[str, Any]:
        event, mode = self._str(body, "event"), self._str(body, "mode", "normal")
        delay, times = body.get("delay", 0.0), body.get("times")
        self._emu.set_ack(event, mode, delay=delay, error=body.get("error"), times=times)
        self._fault("ack", {"event": event, "mode": mode, "delay": delay, "times": times})
        return {"event": event, "mode": mode}

    def _push(self, body: Dict[str, Any]) -> Dict[str, Any]:
        sid = self._sid(body)
        if "packet" in body:
            packet = body["packet"]
            if not isinstance(packet, str):
                raise TypeError("packet must be a string (Socket.IO packet text)")
            count = self._emu.push_packet(packet, to=sid)
            shown: Any = packet
        else:
            args = body.get("args", [])
            if not isinstance(args, list):
                raise TypeError("args must be a list of the event's arguments")
            room = body.get("room") or None
            count = self._emu.push_raw(self._str(body, "event", EVENT_MESSAGE), *args,
                                       to=sid, room=room)
            shown = mask_secrets(args)
        self._feed.publish("packet", {
            "direction": "push", "event": body.get("event", "raw packet"), "sid": sid,
            "room": body.get("room"), "payload": shown, "acked": None, "ack": None,
            "ack_ms": None,
        })
        self._fault("push", {"sid": sid, "count": count})
        return {"pushed": count}

    def _replay(self, body: Dict[str, Any]) -> Dict[str, Any]:
        transcript = Transcript.from_dict(body.get("transcript"))
        start = body.get("from_turn", 0)
        timeout = body.get("timeout", 10.0)
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise ValueError("from_turn must be an int >= 0")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise ValueError("timeout must be a number of seconds from 0 to 120")
        room = body.get("room") or transcript.room
        self._feed.publish("replay", {"state": "started", "room": room, "from_turn": start})

        def run() -> None:
            try:
                result = replay(self._emu, transcript, room=room, from_turn=start,
                                timeout=float(timeout))
            except Exception as exc:
                self._feed.publish("replay", {"state": "failed", "room": room, "error": str(exc)})
                return
            expected = transcript.bot_texts(start)
            self._feed.publish("replay", {
                "state": "done", "room": room, "answers": result.bot_texts(),
                "expected": expected, "same": result.bot_texts() == expected,
            })

        threading.Thread(target=run, name="watchers-emulator-replay", daemon=True).start()
        return {"replaying": room, "from_turn": start}

    def _export(self, body: Dict[str, Any]) -> str:
        transcript = Transcript.from_dict(body.get("transcript"))
        return transcript.to_pytest(self._str(body, "handler"))
