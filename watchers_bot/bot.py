"""Kept for imports of ``watchers_bot.bot``: the Bot lives in :mod:`watchers_bot.client.bot`."""

from .client.bot import Bot, DuplicateBotWarning

__all__ = ["Bot", "DuplicateBotWarning"]
