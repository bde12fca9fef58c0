"""Checks of the bot's arguments: a TypeError or ValueError naming the argument,
before anything goes on the wire."""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Any, Optional
from urllib.parse import urlsplit

__all__ = ["MAX_TIMEOUT", "check_ca_certs", "check_id", "check_secret", "is_insecure_remote",
           "optional_seconds", "seconds"]


def check_secret(value: Any, name: str, *, allow_callable: bool = False) -> Any:
    if allow_callable and callable(value) and not isinstance(value, str):
        return value
    if not isinstance(value, str):
        kind = "a str or a callable returning one" if allow_callable else "a str"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def check_ca_certs(value: Any) -> None:
    # Fail here, naming the path, rather than on every connection attempt later.
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


def check_id(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


#: The longest timeout accepted (about 3 years): beyond it the platform's own
#: limits (threading.TIMEOUT_MAX, socket timeouts) overflow.  ``None`` waits
#: without limit where a call allows it.
MAX_TIMEOUT = 1e8


def seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if number > MAX_TIMEOUT:
        raise ValueError(
            f"{name} must be at most {MAX_TIMEOUT:g} seconds, got {number:g} "
            "(where allowed, None waits without limit)"
        )
    return number


def optional_seconds(value: Any, name: str) -> Optional[float]:
    return None if value is None else seconds(value, name)


def is_insecure_remote(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("ws", "http"):
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
