"""Is a ``Host`` (or ``Origin``) local?  The one place that decides what "loopback" means.

The emulator's control API (:mod:`watchers_bot.emulator.guard`) and a bridge's
``/metrics`` endpoint both refuse requests whose ``Host`` is not a loopback
name (DNS rebinding) with these functions.  Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Optional, Tuple
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_NAMES", "is_loopback", "split_host"]

#: Host names that mean this machine without being an IP address.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> Tuple[str, Optional[int]]:
    """A ``Host`` header's name and port (``("", None)`` when it cannot be parsed)."""
    try:
        parts = urlsplit("//" + value)
        return parts.hostname or "", parts.port
    except ValueError:
        return "", None
