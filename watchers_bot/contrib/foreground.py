"""The foreground loop of ``flask watchers run`` and ``manage.py runbot``, and the start retry.

Both commands do the same thing: connect (retrying until the server answers),
listen to the rooms, hand every message to the handler on the bot's per-room
pool (:meth:`watchers_bot.Bot.run_in_thread`) until Ctrl-C, SIGTERM or the bot
closes, let running handlers finish, then close the bot.  Each framework only
says how to get the bot, how to print a line, and how an error ends its command.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Sequence

from ..backoff import backoff
from ..client.bot import Bot
from ..errors import AuthError, BotClosed, ConfigError, WatchersError
from ..sigterm import Terminated, sigterm_raises

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "ForegroundError", "connect_and_listen",
           "run_foreground"]

log = logging.getLogger("watchers_bot")

EXIT_OK = 0
EXIT_INTERRUPTED = 130

#: How long a stop (Ctrl-C, SIGTERM) lets running handlers finish before the bot closes.
STOP_TIMEOUT = 10.0
_POLL = 0.25


class ForegroundError(Exception):
    """The loop could not start, or the bot gave up; the text says why (exit 1)."""


def connect_and_listen(
    bot: Bot,
    rooms: Iterable[str],
    stop: threading.Event,
    *,
    delay: float = 0.5,
    max_delay: float = 30.0,
) -> bool:
    """Connect ``bot`` and listen to ``rooms``, retrying with backoff until it works.

    A bot's *first* connection is not retried by the bot itself (only lost
    links are), so a web app that starts while the server is unreachable would
    otherwise never listen.  Returns ``True`` once listening, ``False`` if
    ``stop`` was set, the bot was closed, or the failure is permanent (a
    refused token, a configuration error), which is logged.
    """
    rooms = tuple(rooms)
    attempt = 0
    while not stop.is_set():
        try:
            if rooms:
                bot.listen(*rooms)
            else:
                bot.connect()
            return True
        except BotClosed:
            return False
        except (AuthError, ConfigError) as exc:
            log.error("watchers bot not started: %s", exc)
            return False
        except WatchersError as exc:
            wait = backoff(attempt, delay, max_delay)
            attempt += 1
            log.warning("watchers bot: could not %s (%s); retrying in %.1fs",
                        "listen" if rooms else "connect", exc, wait)
            if stop.wait(wait):
                return False
    return False


def run_foreground(
    get_bot: Callable[[], Bot],
    close: Callable[[], None],
    rooms: Sequence[str],
    handler: Callable[..., Any],
    *,
    workers: int = 1,
    say: Callable[[str], None],
) -> int:
    """Listen to ``rooms`` and run ``handler`` for every message until stopped; blocks.

    ``get_bot()`` gives the bot, ``close()`` closes it at the end (always);
    ``say(line)`` prints a status line.  Messages of one room are handled in
    order, rooms at once on up to ``workers`` threads; a handler that raises
    is logged and counted, and the loop goes on.

    Returns :data:`EXIT_OK` when the bot was closed or on SIGTERM (how a
    service manager stops it), :data:`EXIT_INTERRUPTED` on Ctrl-C; either
    way running handlers get :data:`STOP_TIMEOUT` seconds to finish first.  Raises
    :class:`ForegroundError` if the bot could not start or gave up for good,
    and what ``get_bot()`` raises.
    """
    interrupted = False
    try:
        with sigterm_raises():
            bot = get_bot()
            if not connect_and_listen(bot, rooms, threading.Event()):
                raise ForegroundError("could not start the bot; see the log above")
            who = f" as {bot.bot_id}" if bot.bot_id else ""
            say(f"listening to {', '.join(rooms)}{who}; Ctrl-C to stop")
            handle = bot.run_in_thread(handler, workers=workers, name="watchers-foreground")
            try:
                while not handle.join(_POLL):  # Ctrl-C and SIGTERM land between two looks
                    pass
            except (KeyboardInterrupt, Terminated):
                # Stop as a service should: no new message, the running ones finish
                # (their replies too), then the bot closes.
                if not handle.stop(STOP_TIMEOUT):
                    log.warning("handlers still running %gs after the stop; closing anyway",
                                STOP_TIMEOUT)
                raise
            if handle.error is not None:  # a refused token, reconnection given up
                raise ForegroundError(f"the bot stopped: {handle.error}")
    except KeyboardInterrupt:
        interrupted = True
    except Terminated:
        pass
    finally:
        close()
    if interrupted:
        say("interrupted; the bot is closed")
        return EXIT_INTERRUPTED
    return EXIT_OK
