"""``python manage.py runbot``: listen to rooms and hand every message to a handler."""

from __future__ import annotations

import logging
import sys
import threading
from argparse import ArgumentParser
from typing import Any, Callable, Optional

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils.module_loading import import_string

from watchers_bot.contrib import django as integration
from watchers_bot.contrib._process import Terminated, connect_and_listen, sigterm_raises
from watchers_bot.contrib.django import conf
from watchers_bot.errors import WatchersError
from watchers_bot.models import Message
from watchers_bot.routing import Context, invoke

log = logging.getLogger("watchers_bot")

EXIT_INTERRUPTED = 130


class Command(BaseCommand):
    """Listen to rooms and dispatch each message to a handler function.

    The handler is ``WATCHERS['HANDLER']`` (or ``--handler``), a dotted path
    to ``handler(message)``; a ``str`` it returns is sent as a reply in the
    message's room.  A handler that raises is logged and the loop goes on.
    Database connections are checked before and after each message, as a
    request would.  Ctrl-C exits with code 130, SIGTERM with 0.
    """

    help = "Listen to Watchers rooms and run the message handler for each message."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--rooms", nargs="+", metavar="ROOM",
            help="room ids (space- or comma-separated); default: WATCHERS['ROOMS']")
        parser.add_argument(
            "--handler", metavar="DOTTED.PATH",
            help="the handler function; default: WATCHERS['HANDLER']")

    def handle(self, *args: Any, **options: Any) -> None:
        rooms_arg = options.get("rooms")
        try:
            rooms = conf.rooms(",".join(rooms_arg) if rooms_arg else None)
            handler = self._load_handler(options.get("handler"))
            bot = integration.get_bot()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not rooms:
            raise CommandError("no rooms: pass --rooms or set WATCHERS['ROOMS']")

        try:
            with sigterm_raises():
                code = self._serve(bot, rooms, handler)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except Terminated:
            code = 0
        finally:
            integration.close_bot()
        if code == EXIT_INTERRUPTED:
            self.stderr.write("interrupted; the bot is closed")
        if code:
            sys.exit(code)

    def _load_handler(self, path: Optional[str]) -> Callable[[Message], Any]:
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

    def _serve(self, bot: Any, rooms: Any, handler: Callable[[Message], Any]) -> int:
        if not connect_and_listen(bot, rooms, threading.Event()):
            raise CommandError("could not start the bot; see the log above")
        self.stderr.write(f"listening to {', '.join(rooms)} as {bot.bot_id}; Ctrl-C to stop")
        try:
            for msg in bot.messages():
                self._dispatch(bot, handler, msg)
        except WatchersError as exc:  # the bot gave up for good (token refused...)
            raise CommandError(f"the bot stopped: {exc}") from None
        return 0

    def _dispatch(self, bot: Any, handler: Callable[[Message], Any], msg: Message) -> None:
        close_old_connections()  # like a request: drop connections that went stale
        try:
            result = invoke(handler, msg, Context(bot, msg))  # a function or a Router
            if result:
                bot.reply(msg, result)
        except Exception:
            log.exception("the message handler raised on %r; going on", msg)
        finally:
            close_old_connections()
