"""``python manage.py runbot``: listen to rooms and hand every message to a handler."""

from __future__ import annotations

import sys
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any, Callable, Optional

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils.module_loading import import_string

from watchers_bot.contrib import django as integration
from watchers_bot.contrib.django import conf
from watchers_bot.contrib.foreground import EXIT_OK, ForegroundError, run_foreground
from watchers_bot.models import Message
from watchers_bot.routing import Context, invoke, name_of


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


class Command(BaseCommand):
    """Listen to rooms and dispatch each message to a handler function.

    The handler is ``WATCHERS['HANDLER']`` (or ``--handler``), a dotted path
    to ``handler(message)`` (or ``handler(message, ctx)``, or a Router); a
    ``str`` it returns is sent as a reply in the message's room.  Messages of
    one room are handled in order, ``--workers`` rooms at once.  A handler
    that raises is logged and the loop goes on.  Database connections are
    checked before and after each message, as a request would.  Ctrl-C exits
    with code 130, SIGTERM with 0.
    """

    help = "Listen to Watchers rooms and run the message handler for each message."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--rooms", nargs="+", metavar="ROOM",
            help="room ids (space- or comma-separated); default: WATCHERS['ROOMS']")
        parser.add_argument(
            "--handler", metavar="DOTTED.PATH",
            help="the handler function; default: WATCHERS['HANDLER']")
        parser.add_argument(
            "--workers", metavar="N", type=_positive, default=1,
            help="rooms handled at once; messages of one room stay in order (default 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        rooms_arg = options.get("rooms")
        try:
            rooms = conf.rooms(",".join(rooms_arg) if rooms_arg else None)
            handler = self._load_handler(options.get("handler"))
            integration.get_bot()  # configuration errors here, before anything starts
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not rooms:
            raise CommandError("no rooms: pass --rooms or set WATCHERS['ROOMS']")
        try:
            code = run_foreground(integration.get_bot, integration.close_bot, rooms,
                                  _with_fresh_connections(handler),
                                  workers=options.get("workers") or 1, say=self.stderr.write)
        except ForegroundError as exc:
            raise CommandError(str(exc)) from None
        if code != EXIT_OK:
            sys.exit(code)

    def _load_handler(self, path: Optional[str]) -> Callable[..., Any]:
        path = path or conf.handler_path()
        if not path:
            raise ImproperlyConfigured(
                "no message handler: pass --handler or set WATCHERS['HANDLER'] "
                "(or the WATCHERS_HANDLER environment variable) to a dotted path")
        try:
            handler = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"cannot import the handler {path!r}: {exc}") from None
        if not callable(handler):
            raise ImproperlyConfigured(f"the handler {path!r} is not callable")
        return handler  # type: ignore[no-any-return]


def _with_fresh_connections(handler: Callable[..., Any]) -> Callable[[Message, Context], Any]:
    """``handler`` (a function or a Router) with database connections checked around each
    message, as a request would: connections that went stale are dropped."""
    def dispatch(msg: Message, ctx: Context) -> Any:
        close_old_connections()
        try:
            return invoke(handler, msg, ctx)
        finally:
            close_old_connections()

    dispatch.__qualname__ = name_of(handler)  # the pool's error reports name the user's handler
    return dispatch
