"""Message handlers for ``python manage.py runbot``."""

from typing import Optional

from watchers_bot import Context, Message, Router


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


#: A Router is a handler too: ``runbot --handler example_project.handlers.router``.
router = Router()


@router.command("echo")
def echo(message: Message, ctx: Context) -> str:
    """``/echo some words`` answers ``some words``."""
    return ctx.args
