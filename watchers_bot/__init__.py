"""watchers_bot: a synchronous Python client for the Watchers.io bot API.

::

    from watchers_bot import Bot

    with Bot.from_env() as bot:
        bot.listen("room-1")
        for msg in bot.messages():
            bot.reply(msg, "echo: " + msg.text)
"""

from typing import TYPE_CHECKING, Any, List

from . import _logging  # noqa: F401  (installs the redacting log filters first)
from .errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    RateLimited,
    ReceiveTimeout,
    ServerError,
    WatchersError,
)
from .models import Health, Message, Stats
from .regions import REGIONS

__version__ = "0.1.0"

# The names that need python-socketio are imported on first use: the pytest
# plugin (loaded in every pytest session of anyone who installed the package)
# and the CLI's --version stay cheap.
_LAZY = {
    "Bot": ".client.bot",
    "DuplicateBotWarning": ".client.bot",
    "AckFuture": ".client.requests",
    "State": ".client.connection",
    "HandlerThread": ".client.handler",
    "Router": ".router",
    "Context": ".routing",
    "SendRate": ".ratelimit",
}

if TYPE_CHECKING:
    from .client.bot import Bot, DuplicateBotWarning
    from .client.connection import State
    from .client.handler import HandlerThread
    from .client.requests import AckFuture
    from .ratelimit import SendRate
    from .router import Router
    from .routing import Context


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "REGIONS",
    "AckFuture",
    "AckTimeout",
    "AuthError",
    "Bot",
    "BotClosed",
    "ConfigError",
    "ConnectFailed",
    "ConnectionLost",
    "Context",
    "DuplicateBotWarning",
    "HandlerThread",
    "Health",
    "Message",
    "RateLimited",
    "ReceiveTimeout",
    "Router",
    "SendRate",
    "ServerError",
    "State",
    "Stats",
    "WatchersError",
    "__version__",
]
