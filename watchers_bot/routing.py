"""What a message handler is, and how the library calls one.

A *handler* is any callable taking the message alone, ``handler(msg)``, or the message and
a :class:`Context`, ``handler(msg, ctx)``. It returns the reply text, or ``None`` for no
reply. Every runner (``Bot.run``, ``Bot.run_in_thread``, the Flask and Django integrations,
the Celery bridge) calls handlers through :func:`invoke`, so they all agree on that contract.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

import attrs

from .models import Message

if TYPE_CHECKING:
    from .client.bot import Bot

__all__ = ["Context", "Handler", "invoke", "takes_context"]

#: A message handler: ``handler(msg)`` or ``handler(msg, ctx)``, returning the reply or ``None``.
Handler = Callable[..., Optional[str]]


@attrs.frozen
class Context:
    """What a handler may want besides the message: the bot, and what its route matched."""

    #: The bot the message came through (use it to send elsewhere, or ``ctx.reply``).
    bot: "Bot"
    #: The message being handled.
    message: Message
    #: The regular expression match of the route, if it had one.
    match: Optional["re.Match[str]"] = None
    #: The command's name without its slash (``"start"`` for ``/start a b``), if a command route.
    command: Optional[str] = None
    #: The command's arguments as one string (``"a b"``), ``""`` when there are none.
    args: str = ""

    @property
    def room_id(self) -> str:
        """The room the message came from (where a returned reply goes)."""
        return self.message.room_id

    @property
    def argv(self) -> Tuple[str, ...]:
        """The command's arguments split on whitespace."""
        return tuple(self.args.split())

    def reply(self, text: str, *, timeout: Optional[float] = None) -> Any:
        """Send ``text`` in the message's room now (blocking until acked), besides any return."""
        return self.bot.reply(self.message, text, timeout=timeout)


def name_of(handler: Callable[..., Any]) -> str:
    """The name error reports give ``handler``: its qualified name, else its type's."""
    return str(getattr(handler, "__qualname__", type(handler).__name__))


def takes_context(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` accepts a second positional argument (the :class:`Context`)."""
    own = getattr(handler, "takes_context", None)
    if isinstance(own, bool):  # a Router (or any handler object) may say so itself
        return own
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):  # builtins without a signature: message only
        return False
    positional = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return True
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def invoke(
    handler: Callable[..., Any],
    message: Message,
    context: Context,
    *,
    wants_context: Optional[bool] = None,
) -> Optional[str]:
    """Call ``handler`` the way it was written; return its reply (a ``str``) or ``None``.

    ``wants_context`` is :func:`takes_context` of the handler when the caller computed
    it once already (a runner calling the same handler for every message).

    Raises :class:`TypeError` if the handler returns anything else, so a handler that
    returns by mistake (a dict, a number) is reported instead of silently not replying.
    """
    if wants_context is None:
        wants_context = takes_context(handler)
    result = handler(message, context) if wants_context else handler(message)
    if result is None or isinstance(result, str):
        return result
    name = getattr(handler, "__qualname__", type(handler).__name__)
    raise TypeError(
        f"handler {name} returned {type(result).__name__}; a handler returns the reply "
        "text (str) or None"
    )
