"""Kept for imports of ``watchers_bot.handler``: see :mod:`watchers_bot.client.handler`."""

from .client.handler import HandlerThread

__all__ = ["HandlerThread"]
