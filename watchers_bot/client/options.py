"""Checks of the bot's arguments that only the bot has: a TypeError or ValueError
naming the argument, before anything goes on the wire.  The checks other modules
share (ids, secrets, seconds, insecure endpoints) live in :mod:`watchers_bot.settings`."""

from __future__ import annotations

import os
from typing import Any, Optional

from ..settings import seconds

__all__ = ["check_ca_certs", "optional_seconds"]


def check_ca_certs(value: Any) -> None:
    """Refuse a ``ca_certs`` that is not a readable file, naming the path, rather
    than failing on every connection attempt later."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"ca_certs must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError("ca_certs must be a str path, not bytes")
    if not os.path.exists(path):
        raise ValueError(f"ca_certs {path!r} does not exist")
    if not os.path.isfile(path):
        raise ValueError(f"ca_certs {path!r} is not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"ca_certs {path!r} cannot be read: {exc.strerror or exc}") from None


def optional_seconds(value: Any, name: str) -> Optional[float]:
    """:func:`watchers_bot.settings.seconds`, or None for None (wait without limit)."""
    return None if value is None else seconds(value, name)
