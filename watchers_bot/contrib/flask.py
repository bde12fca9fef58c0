"""Flask integration: one bot per process, background message handlers, a health view.

::

    from flask import Flask
    from watchers_bot.contrib.flask import WatchersBot

    watchers = WatchersBot()

    @watchers.on_message
    def pong(msg):
        if msg.text == "ping":
            watchers.bot.reply(msg, "pong")

    def create_app():
        app = Flask(__name__)
        app.config["WATCHERS_ROOMS"] = ["room-1"]
        watchers.init_app(app)

        @app.post("/hello")
        def hello():
            return {"ack": watchers.send("room-1", "hello")}

        app.add_url_rule("/health", view_func=watchers.health_view)
        return app

**When the bot starts.**  Nothing connects in :meth:`WatchersBot.init_app`.
The bot is created on first use (:attr:`WatchersBot.bot`, :meth:`WatchersBot.send`)
and *started* (connected, listening to ``WATCHERS_ROOMS``, handlers running on
a thread) by the first request the process serves, or by an explicit
:meth:`WatchersBot.start`.  A process that never serves a request never
connects: the Werkzeug reloader's watcher process (``flask run --reload``,
``app.run(debug=True)``), ``flask routes``/``flask shell`` and other CLI
commands, and a ``gunicorn --preload`` master.  Every process that serves
has one bot, shared by all its threads; a forked child gets a bot of its own
and never touches its parent's connection.

**Several worker processes** (``gunicorn -w 4``) mean several bots: each
would answer every incoming message.  With more than one process, set
``WATCHERS_RUN_HANDLERS = False`` and run the handlers in one process of
their own with ``flask watchers run``.

Configuration (``app.config``, falling back to the environment variable of
the same name): ``WATCHERS_TOKEN`` and ``WATCHERS_API_KEY`` (required),
``WATCHERS_BOT_ID`` (required to send), ``WATCHERS_URL`` or
``WATCHERS_REGION``, ``WATCHERS_ROOMS`` (a list, or a comma-separated
string), ``WATCHERS_RUN_HANDLERS`` (default ``True``) and
``WATCHERS_OPTIONS`` (a dict of other :class:`~watchers_bot.Bot` arguments,
e.g. ``{"ack_timeout": 5.0}``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import click
from flask import Flask, Response, current_app, has_request_context, jsonify
from flask.cli import AppGroup

from .. import settings
from ..client.bot import Bot
from ..client.handler import HandlerThread
from ..errors import ConfigError, WatchersError
from ..models import Message
from ..routing import Context, invoke, name_of
from . import error_status, parse_rooms
from .foreground import ForegroundError, connect_and_listen, run_foreground
from .slot import BotSlot

__all__ = ["WatchersBot", "error_response"]

log = logging.getLogger("watchers_bot")

EXTENSION_KEY = "watchers_bot"

Handler = Callable[[Message], object]
H = TypeVar("H", bound=Handler)


def _cli_without_server() -> bool:
    """Whether this process is a ``flask`` CLI process that does not serve.

    ``flask run --reload`` loads the app in the reloader's watcher process
    too; only its child (``WERKZEUG_RUN_MAIN=true``) serves.  Other
    ``flask`` commands (``routes``, ``shell``...) load it and never serve.
    """
    return (os.environ.get("FLASK_RUN_FROM_CLI") == "true"
            and os.environ.get("WERKZEUG_RUN_MAIN") != "true")


def error_response(exc: BaseException) -> Tuple[Response, int]:
    """A JSON response for an error raised by ``send()`` (see
    :func:`watchers_bot.contrib.error_status`): 502 refused, 504 delivery
    unknown, 503 not connected, 400 bad arguments."""
    status, body = error_status(exc)
    return jsonify(body), status


class _AppState:
    """What the extension keeps per app (in ``app.extensions["watchers_bot"]``)."""

    def __init__(self, ext: "WatchersBot", app: Flask) -> None:
        self.ext = ext
        self.app = app
        self.slot = BotSlot(self.make_bot, name=f"watchers bot of app {app.name!r}")
        self.handler: Optional[HandlerThread] = None
        self.start_error: Optional[str] = None

    @property
    def layers(self) -> List[settings.Layer]:
        """``app.config`` (under the variable's name), then the environment."""
        config = settings.Layer(lambda s: self.app.config.get(s.env),
                                lambda s: f"app.config[{s.env!r}]")
        return [config, settings.env_layer()]

    def setting(self, key: str) -> Any:
        return settings.lookup(settings.get(key), self.layers).value

    def make_bot(self) -> Bot:
        kwargs = settings.bot_arguments(
            self.layers, lambda s: "put it in app.config or the environment")
        options = self.app.config.get("WATCHERS_OPTIONS") or {}
        if not isinstance(options, dict):
            raise ConfigError("WATCHERS_OPTIONS must be a dict of Bot arguments")
        kwargs.update(options)
        return Bot(kwargs.pop("token"), kwargs.pop("api_key"), kwargs.pop("bot_id", None),
                   **kwargs)

    @property
    def rooms(self) -> Tuple[str, ...]:
        return parse_rooms(self.setting("ROOMS"), "WATCHERS_ROOMS")

    @property
    def run_handlers(self) -> bool:
        return settings.flag(self.setting("RUN_HANDLERS"))

    def dispatch(self, msg: Message, ctx: Context) -> None:
        """Call every handler with an app context pushed (a fresh one per message).

        Handlers (functions or a :class:`~watchers_bot.Router`) go through
        :func:`watchers_bot.routing.invoke`; a returned string is sent as the reply.
        """
        first: Optional[BaseException] = None
        with self.app.app_context():
            for handler in list(self.ext._handlers):
                try:
                    reply = invoke(handler, msg, ctx)
                    if reply:
                        ctx.bot.reply(msg, reply)
                except Exception as exc:
                    if first is None:
                        first = exc
                    else:
                        log.exception("message handler %r raised on %r", handler, msg)
        if first is not None:
            raise first  # logged and counted by the handler pool

    def pooled_handler(self) -> Callable[[Message, Context], None]:
        """:meth:`dispatch` as a handler of the bot's pool, named after the user's handlers
        (the pool's error reports name the function it runs)."""
        def dispatch(msg: Message, ctx: Context) -> None:
            self.dispatch(msg, ctx)

        names = ", ".join(name_of(h) for h in self.ext._handlers)
        dispatch.__qualname__ = f"{names} (Flask app {self.app.name!r})"
        return dispatch

    def launch(self, bot: Bot) -> None:
        """Connect in the background; listen and run the handlers when configured."""
        rooms = self.rooms
        handlers = bool(self.ext._handlers) and self.run_handlers
        if handlers and not rooms:
            log.warning("watchers: message handlers are registered but WATCHERS_ROOMS is empty")
        if not handlers:
            rooms = ()
        stop = threading.Event()
        self.start_error = None

        def run() -> None:
            if not connect_and_listen(bot, rooms, stop):
                if not stop.is_set() and not bot.closed:
                    self.start_error = "could not start; see the log"
                return
            if handlers and rooms and not stop.is_set():
                try:
                    self.handler = bot.run_in_thread(
                        self.pooled_handler(), name=f"watchers-handler-{self.app.name}")
                except Exception as exc:  # closed meanwhile
                    log.debug("handler thread not started: %s", exc)

        def on_close() -> None:
            stop.set()
            handler = self.handler
            if handler is not None:
                handler.stop()
            self.handler = None

        starter = threading.Thread(target=run, name="watchers-starter", daemon=True)
        self.slot.add_close_hook(on_close)
        self.slot.add_thread(starter)
        starter.start()


class WatchersBot:
    """The Flask extension: ``WatchersBot(app)`` or ``WatchersBot()`` then
    :meth:`init_app` (one extension object may serve several apps; each app
    gets its own bot in each process).

    See the module documentation for configuration and for when the bot starts.
    """

    def __init__(self, app: Optional[Flask] = None) -> None:
        self.app = app
        self._handlers: List[Handler] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``.  Does not connect."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("WatchersBot is already registered on this app")
        app.extensions[EXTENSION_KEY] = _AppState(self, app)
        app.before_request(self._before_request)
        app.cli.add_command(self._cli_group())

    # ------------------------------------------------------------------ per app

    def _state(self, app: Optional[Flask] = None) -> _AppState:
        if app is None:
            app = self.app if self.app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            state = app.extensions[EXTENSION_KEY]
        except KeyError:
            raise RuntimeError(
                "WatchersBot is not registered on this app: call init_app(app)") from None
        if not isinstance(state, _AppState) or state.ext is not self:
            raise RuntimeError("the app's WatchersBot is another extension object")
        return state

    def get_bot(self, app: Optional[Flask] = None) -> Bot:
        """The app's bot in this process, created on first use (not connected
        yet: it connects on first send, or when started).  Thread-safe.

        Raises :class:`~watchers_bot.ConfigError` naming a missing setting.
        """
        return self._state(app).slot.get()

    @property
    def bot(self) -> Bot:
        """The current app's bot (see :meth:`get_bot`)."""
        return self.get_bot()

    def send(self, room_id: str, text: str, *, timeout: Optional[float] = None) -> Any:
        """Send through the current app's bot; returns the server's ack.

        Raises what :meth:`watchers_bot.Bot.send` raises; :func:`error_response`
        turns that into a JSON response.
        """
        return self.get_bot().send(room_id, text, timeout=timeout)

    def start(self, app: Optional[Flask] = None, *, force: bool = False) -> bool:
        """Start the app's bot in this process now: connect in the background,
        listen to ``WATCHERS_ROOMS`` and run the handlers.  Idempotent.

        The first request does this anyway; call it to start earlier (e.g. in
        gunicorn's ``post_worker_init`` hook).  Outside a request, in a
        ``flask`` CLI process that does not serve (the reloader's watcher,
        ``flask routes``...) it does nothing and returns ``False`` unless
        ``force``.  Note that ``app.run(debug=True)`` cannot be told apart:
        don't call it from an app factory used that way.
        """
        state = self._state(app)
        if state.slot.started and state.slot.peek() is not None:
            return True
        if not force and not has_request_context() and _cli_without_server():
            log.info("watchers: not starting the bot in a flask CLI process that does not serve")
            return False
        state.slot.start_once(state.launch)
        return True

    def _before_request(self) -> None:
        state = self._state(current_app._get_current_object())  # type: ignore[attr-defined]
        if state.slot.started:
            return
        try:
            self.start(state.app)
        except ConfigError as exc:  # never break requests that don't use the bot
            if state.start_error is None:
                log.error("watchers bot not started: %s", exc)
            state.start_error = str(exc)

    def close(self, app: Optional[Flask] = None) -> None:
        """Stop the handlers and close the app's bot in this process.

        Done at interpreter exit anyway.  The next use creates a new bot.  (Not
        for ``teardown_appcontext``: that runs after every request.)
        """
        self._state(app).slot.close()

    # ------------------------------------------------------------------ handlers

    def on_message(self, handler: H) -> H:
        """Decorator: call ``handler(message)`` for every message in ``WATCHERS_ROOMS``.

        ``handler(message, ctx)`` and a :class:`~watchers_bot.Router` work too; a
        returned string is sent as the reply in the message's room.

        Handlers run on the bot's handler thread (one per app and process), one
        message at a time, with an app context pushed for each message.  One
        that raises is logged and counted, and the loop goes on.
        """
        if not callable(handler):
            raise TypeError("on_message needs a callable")
        self._handlers.append(handler)
        return handler

    @property
    def handler_thread(self) -> Optional[HandlerThread]:
        """The current app's handler thread in this process, once started."""
        return self._state().handler

    # ------------------------------------------------------------------ health

    def health(self, app: Optional[Flask] = None) -> Dict[str, Any]:
        """A JSON-ready snapshot: :meth:`watchers_bot.Bot.health` plus the
        handler thread's counters and any start error."""
        state = self._state(app)
        try:
            bot = state.slot.get()
        except ConfigError as exc:
            return {"ok": False, "state": "misconfigured", "start_error": str(exc)}
        data = bot.health().as_dict()
        handler = state.handler
        data["handler"] = None if handler is None else {
            "running": handler.running, "handled": handler.handled, "errors": handler.errors,
        }
        data["start_error"] = state.start_error
        return data

    def health_view(self) -> Tuple[Response, int]:
        """A view function: the :meth:`health` JSON, status 200 when connected,
        503 otherwise.  ``app.add_url_rule("/health", view_func=ext.health_view)``."""
        data = self.health()
        return jsonify(data), 200 if data.get("ok") else 503

    # ------------------------------------------------------------------ CLI

    def _cli_group(self) -> AppGroup:
        group = AppGroup("watchers", help="The Watchers.io bot of this app.")

        @group.command("run")
        @click.option("--rooms", default=None,
                      help="Comma-separated room ids (default: WATCHERS_ROOMS).")
        @click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
                      help="Rooms handled at once (messages of one room stay in order).")
        def run_command(rooms: Optional[str], workers: int) -> None:
            """Listen and run the @on_message handlers in this process until Ctrl-C."""
            state = self._state(current_app._get_current_object())  # type: ignore[attr-defined]
            room_ids = parse_rooms(rooms, "--rooms") if rooms else state.rooms
            if not room_ids:
                raise click.UsageError("no rooms: pass --rooms or set WATCHERS_ROOMS")
            sys.exit(self._run_foreground(state, room_ids, workers))

        return group

    def _run_foreground(self, state: _AppState, rooms: Tuple[str, ...], workers: int) -> int:
        """Exit codes: 0 closed or SIGTERM, 1 error, 130 Ctrl-C."""
        try:
            return run_foreground(state.slot.get, state.slot.close, rooms,
                                  state.pooled_handler(), workers=workers,
                                  say=lambda line: click.echo(line, err=True))
        except (ForegroundError, WatchersError) as exc:  # not configured, token refused...
            click.echo(f"error: {exc}", err=True)
            return 1
