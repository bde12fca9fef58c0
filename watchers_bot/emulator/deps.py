"""The emulator's third-party dependencies (the ``emulator`` extra), imported once.

A missing one is an ImportError naming the extra to install, whichever emulator
module is imported first.  :mod:`.packets`, :mod:`.generation` and
:mod:`.server` use them; :mod:`.gateway` only raises python-socketio's
connection refusal.
"""

from __future__ import annotations

try:
    import simple_websocket  # noqa: F401  (engineio's threading driver needs it)
    import socketio
    from engineio import packet as eio_packet
    from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
    from engineio.exceptions import SocketIsClosedError
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "watchers_bot.emulator needs python-socketio, simple-websocket and werkzeug; "
        "install them with: pip install 'watchers-bot[emulator]' "
        f"(missing: {exc.name or exc})"
    ) from exc

from ..transport.upstream import version

# python-socketio 5.18 split its manager's connect in two (pre_connect, then connect
# once the connect handler accepted): emulator/generation.py's Manager relies on that.
if not hasattr(socketio.base_manager.BaseManager, "pre_connect"):
    raise ImportError(
        "watchers_bot.emulator needs python-socketio 5.18 or later (installed: "
        f"{'.'.join(map(str, version('python_socketio'))) or '?'}); install it with: "
        "pip install 'watchers-bot[emulator]'"
    )

__all__ = ["SimpleWebSocketWSGI", "SocketIsClosedError", "ThreadedWSGIServer",
           "WSGIRequestHandler", "eio_packet", "socketio"]
