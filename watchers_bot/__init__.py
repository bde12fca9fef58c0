"""watchers_bot: a synchronous Python client for the Watchers.io bot API.

::

    from watchers_bot import Bot

    with Bot.from_env() as bot:
        bot.listen("room-1")
        for msg in bot.messages():
            bot.reply(msg, "echo: " + msg.text)
"""

from . import _logging  # noqa: F401  (installs the redacting log filters first)
from .bot import Bot, DuplicateBotWarning
from .connection import AckFuture, State
from .errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    ReceiveTimeout,
    ServerError,
    WatchersError,
)
from .handler import HandlerThread
from .models import Health, Message, Stats
from .regions import REGIONS

__version__ = "0.1.0"

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
    "DuplicateBotWarning",
    "HandlerThread",
    "Health",
    "Message",
    "ReceiveTimeout",
    "ServerError",
    "State",
    "Stats",
    "WatchersError",
    "__version__",
]
