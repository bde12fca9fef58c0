"""The emulator's state: credentials, connected clients, rooms, counters.

One re-entrant lock guards it all, with one condition (:attr:`State.changed`)
notified on every change; the records (:mod:`.records`) share it, so a wait
can look at both at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import attrs

__all__ = ["Client", "State", "check_name", "close_raw"]


def check_name(name: str, value: Any) -> str:
    """``value`` if it is a non-empty string, else ``ValueError`` naming ``name``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    return value


def close_raw(sock: Optional[socket.socket]) -> None:
    """Cut a TCP link at once (no close handshake); nothing if already closed."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@attrs.define(eq=False)
class Client:
    """One connected socket."""

    sid: str
    eio_sid: str
    token: str = attrs.field(repr=False)
    raw_sock: Optional[socket.socket] = attrs.field(repr=False)
    gen: Any = attrs.field(repr=False)  # the server.Generation that accepted it
    rooms: Set[str] = attrs.Factory(set)
    thaw: threading.Event = attrs.Factory(threading.Event)
    frozen: bool = False


class State:
    """Credentials, clients and rooms of one emulator (kept across restarts,
    except clients and rooms, which a restart loses)."""

    def __init__(self, tokens: Iterable[str], api_keys: Iterable[str]) -> None:
        if isinstance(tokens, str) or isinstance(api_keys, str):
            raise TypeError("tokens and api_keys must be iterables of strings, not a string")
        self.tokens: Set[str] = {check_name("token", t) for t in tokens}
        self.api_keys: Set[str] = {check_name("api key", k) for k in api_keys}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.clients: Dict[str, Client] = {}
        self.rooms: Dict[str, Set[str]] = {}
        # sid -> (eio sid, token, raw socket) between the connect handler and
        # the CONNECT packet being queued (see server.Manager.connect)
        self.pending: Dict[str, Tuple[str, str, Optional[socket.socket]]] = {}
        self.connections = 0
        self.refused = 0

    # ------------------------------------------------------------------ credentials

    def add_token(self, token: str) -> None:
        with self.lock:
            self.tokens.add(check_name("token", token))

    def revoke_token(self, token: str) -> List[str]:
        """Forget ``token``; returns the sids of the sockets that used it."""
        with self.lock:
            self.tokens.discard(token)
            return [c.sid for c in self.clients.values() if c.token == token]

    def add_api_key(self, key: str) -> None:
        with self.lock:
            self.api_keys.add(check_name("api key", key))

    def revoke_api_key(self, key: str) -> None:
        with self.lock:
            self.api_keys.discard(key)

    def refuse(self) -> None:
        with self.lock:
            self.refused += 1
            self.changed.notify_all()

    # ------------------------------------------------------------------ clients

    def connected(self, sid: str, gen: Any) -> bool:
        """A pending sid became a client; False if it was not pending."""
        with self.lock:
            entry = self.pending.pop(sid, None)
            if entry is None:
                return False
            eio_sid, token, raw = entry
            self.clients[sid] = Client(sid, eio_sid, token, raw, gen)
            self.connections += 1
            self.changed.notify_all()
            return True

    def gone(self, sid: str) -> bool:
        """``sid`` disconnected; True if it was a client."""
        with self.lock:
            self.pending.pop(sid, None)
            known = self.forget(sid)
            self.changed.notify_all()
            return known

    def forget(self, sid: str) -> bool:
        with self.lock:
            client = self.clients.pop(sid, None)
            if client is None:
                return False
            if client.frozen:
                # a half-open link stays silent to the end: nothing queued may leak out
                close_raw(client.raw_sock)
            client.thaw.set()
            rooms = self.rooms
            for room_id in client.rooms:
                members = rooms.get(room_id)
                if members is not None:
                    members.discard(sid)
                    if not members:
                        del rooms[room_id]
            return True

    def forget_generation(self, gen: Any) -> None:
        with self.lock:
            for sid in [s for s, c in self.clients.items() if c.gen is gen]:
                self.forget(sid)
            self.changed.notify_all()

    def join(self, sid: str, room_id: str) -> bool:
        """``sid`` listens to ``room_id``; False if it is not connected."""
        with self.lock:
            client = self.clients.get(sid)
            if client is None:
                return False
            client.rooms.add(room_id)
            members = self.rooms.get(room_id)
            if members is None:
                self.rooms[room_id] = {sid}
            else:
                members.add(sid)
            self.changed.notify_all()
            return True

    def select(self, sid: Optional[str]) -> List[Client]:
        """Every client, or the one with ``sid`` (``ValueError`` if not connected)."""
        with self.lock:
            if sid is None:
                return list(self.clients.values())
            client = self.clients.get(sid)
            if client is None:
                raise ValueError(f"no connected client with sid {sid!r}")
            return [client]

    def listeners(self, room_id: str) -> Set[str]:
        with self.lock:
            return set(self.rooms.get(room_id, ()))
