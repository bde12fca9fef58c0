"""Kept for imports of ``watchers_bot.bot``: the Bot lives in :mod:`watchers_bot.client.bot`."""

from .client.bot import Bot, DuplicateBotWarning
from .client.options import is_insecure_remote as _is_insecure_remote

__all__ = ["Bot", "DuplicateBotWarning", "_is_insecure_remote"]
