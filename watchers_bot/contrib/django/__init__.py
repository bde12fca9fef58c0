"""Django integration: a process-wide bot configured by ``settings.WATCHERS``.

Add ``"watchers_bot.contrib.django"`` to ``INSTALLED_APPS`` and configure::

    WATCHERS = {
        "TOKEN": "...",            # or the WATCHERS_TOKEN environment variable
        "API_KEY": "...",          # or WATCHERS_API_KEY
        "BOT_ID": "my-bot",        # or WATCHERS_BOT_ID (needed to send)
        "URL": "wss://...",        # or REGION ("eu", "us"...); WATCHERS_URL / WATCHERS_REGION
        "ROOMS": ["room-1"],       # for runbot; or WATCHERS_ROOMS="room-1,room-2"
        "HANDLER": "myapp.bot.handle",   # for runbot; or WATCHERS_HANDLER
        "OPTIONS": {"ack_timeout": 5.0}, # other watchers_bot.Bot arguments
    }

In views, :func:`send` posts through one bot per process, created on first
use (thread-safe; a forked worker gets its own) and closed at exit.  Incoming
messages are handled by ``python manage.py runbot`` in a process of its own,
so that several web workers don't each answer every message.
"""

from __future__ import annotations

from typing import Any, Optional

from django.core.exceptions import ImproperlyConfigured

from ...client.bot import Bot
from ...errors import ConfigError
from ..slot import BotSlot
from . import conf

__all__ = ["asend", "close_bot", "get_bot", "send"]


def _make_bot() -> Bot:
    kwargs = conf.bot_kwargs()
    try:
        return Bot(kwargs.pop("token"), kwargs.pop("api_key"), kwargs.pop("bot_id", None),
                   **kwargs)
    except (TypeError, ValueError) as exc:  # a bad URL, region or option
        raise ImproperlyConfigured(f"settings.WATCHERS: {exc}") from exc


_slot = BotSlot(_make_bot, name="django watchers bot")


def get_bot() -> Bot:
    """The process-wide bot, created on first call from the settings.

    Thread-safe: concurrent first calls get the same bot.  It is not connected
    yet; it connects on first send (or ``listen``/``connect``).  Closed at
    interpreter exit; after ``fork()`` the child creates its own.  Raises
    ``ImproperlyConfigured`` naming a missing setting.
    """
    return _slot.get()


def send(room_id: str, text: str, timeout: Optional[float] = None) -> Any:
    """Post ``text`` in ``room_id`` through :func:`get_bot`; block until the server acks.

    Returns the server's answer (``None`` for the documented empty ack).
    Raises what :meth:`watchers_bot.Bot.send` raises;
    :func:`watchers_bot.contrib.error_status` maps that to an HTTP status.
    A send without ``BOT_ID`` raises ``ImproperlyConfigured``.
    """
    try:
        return get_bot().send(room_id, text, timeout=timeout)
    except ConfigError as exc:
        raise ImproperlyConfigured(
            f"{exc} (settings.WATCHERS['BOT_ID'] or WATCHERS_BOT_ID)") from exc


async def asend(room_id: str, text: str, timeout: Optional[float] = None) -> Any:
    """:func:`send` for async views: runs it in a worker thread, so the event
    loop is not blocked while waiting for the ack."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(send, thread_sensitive=False)(room_id, text, timeout)


def close_bot() -> None:
    """Close the process-wide bot (the next :func:`get_bot` makes a new one)."""
    _slot.close()
