"""Message handlers for ``python manage.py runbot``."""

from typing import Optional

from watchers_bot import Message


def pong(message: Message) -> Optional[str]:
    """Answer "ping" with "pong": a returned string is sent as a reply."""
    if message.text.strip().lower() == "ping":
        return "pong"
    return None


def shout(message: Message) -> str:
    """Another handler, to pick with ``runbot --handler example_project.handlers.shout``."""
    if message.text == "boom":
        raise RuntimeError("the handler failed on purpose")
    return message.text.upper()
