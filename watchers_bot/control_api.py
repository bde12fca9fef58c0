"""Where the emulator's control API lives, and its client side (``watchers-bot post``).

Outside the emulator package, and standard library only, so that a command which
only talks to a running emulator does not load the emulator (python-socketio,
werkzeug) to do it; :mod:`watchers_bot.emulator.control` serves these routes.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

__all__ = ["API", "PREFIX", "ControlError", "call"]

#: Where the playground page and the control API live on the emulator's port.
PREFIX = "/_emulator/"
API = PREFIX + "api/"


class ControlError(Exception):
    """The control API could not be reached, or refused the request (the text says why)."""


def call(url: str, route: str, body: Optional[Dict[str, Any]] = None, *,
         timeout: float = 10.0) -> Any:
    """POST ``body`` (or GET without one) to the control API of the emulator at ``url``.

    Used by ``watchers-bot post``.  Goes straight to the address (no proxy: the
    API is on loopback); ``timeout`` bounds the whole call.  Raises
    :class:`ControlError` with the server's reason.
    """
    import socket
    import urllib.error
    import urllib.request

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be the emulator's http://host:port address, not {url!r}")
    target = f"{parts.scheme}://{parts.netloc}{API}{route}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(target, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            reason = exc.reason
        raise ControlError(
            f"the emulator at {parts.netloc} answered {exc.code}: {reason}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        if isinstance(why, socket.timeout) or isinstance(exc, socket.timeout):
            why = f"no answer within {timeout:g}s"
        raise ControlError(
            f"cannot reach the emulator's control API at {parts.netloc}: {why} "
            "(is `watchers-bot serve` running there?)"
        ) from None
