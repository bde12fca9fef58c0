"""The rooms a bot listens to: asked for, acknowledged, refused."""

from __future__ import annotations

import threading
from typing import Dict, Tuple

__all__ = ["Rooms"]


class Rooms:
    """What :attr:`Bot.rooms` and :meth:`Bot.health` show; re-listened after reconnects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._acked: Dict[str, None] = {}  # ordered: listened again in this order
        self._wanted: Dict[str, None] = {}  # every room the user asked to listen to
        self._refused: Dict[str, str] = {}  # room -> why the server refused it

    def want(self, room: str) -> None:
        with self._lock:
            self._wanted[room] = None

    def acked(self, room: str) -> None:
        with self._lock:
            self._acked[room] = None
            self._refused.pop(room, None)

    def refuse(self, room: str, error: BaseException) -> None:
        """The server refused to listen to ``room`` (shown in health())."""
        with self._lock:
            self._refused[room] = f"{type(error).__name__}: {error}"

    @property
    def listening(self) -> Tuple[str, ...]:
        """Rooms the server acknowledged."""
        with self._lock:
            return tuple(self._acked)

    @property
    def wanted(self) -> Tuple[str, ...]:
        """Every room the user asked to listen to (acknowledged or not)."""
        with self._lock:
            return tuple(self._wanted)

    @property
    def refused(self) -> Dict[str, str]:
        with self._lock:
            return dict(self._refused)

    @property
    def listening_to_all(self) -> bool:
        """Whether every room the user asked for is acknowledged and not refused."""
        with self._lock:
            return not self._refused and all(room in self._acked for room in self._wanted)
