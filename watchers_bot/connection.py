"""Kept for imports of ``watchers_bot.connection``: see :mod:`watchers_bot.client`."""

from .client.connection import Connection, State
from .client.requests import AckFuture

__all__ = ["AckFuture", "Connection", "State"]
