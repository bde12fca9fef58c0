"""Kept for imports of ``watchers_bot.inbox``: see :mod:`watchers_bot.client.inbox`."""

from .client.inbox import CLOSED, OVERFLOW_POLICIES, Inbox

__all__ = ["CLOSED", "OVERFLOW_POLICIES", "Inbox"]
