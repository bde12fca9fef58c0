#!/usr/bin/env python3
"""An echo bot: answers every message in the given rooms with "echo: <text>".

Configuration comes from the environment (see ``Bot.from_env``)::

    export WATCHERS_TOKEN=... WATCHERS_API_KEY=... WATCHERS_BOT_ID=...
    export WATCHERS_REGION=eu            # or WATCHERS_URL=...
    python echo_bot.py room-1 room-2     # rooms default to $WATCHERS_ROOMS or room-1

Ctrl-C stops it cleanly (the bot disconnects) with exit code 130, SIGTERM
(``kill``, ``docker stop``, systemd) with 143; errors are one line on stderr
and exit code 1.  It prints one line per message answered; when stdout is
closed (``| head -1``) it stops quietly.
"""

import os
import signal
import sys

from watchers_bot import Bot, WatchersError

PROG = "echo_bot"


def _terminate(signum, frame):
    # SIGTERM kills Python without running ``finally`` blocks or atexit:
    # turn it into an exception so the ``with`` block closes the bot.
    raise SystemExit(143)


def main(argv):
    rooms = argv or os.environ.get("WATCHERS_ROOMS", "room-1").split(",")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with Bot.from_env() as bot:
            bot.listen(*rooms)
            print(f"{PROG}: listening to {', '.join(rooms)} (Ctrl-C to stop)",
                  file=sys.stderr, flush=True)
            for msg in bot.messages():
                bot.reply(msg, "echo: " + msg.text)
                print(f"{msg.room_id} {msg.user_id}: {msg.text}", flush=True)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except WatchersError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:
        # Whoever read stdout is gone (``echo_bot.py | head -1``): stop quietly,
        # and keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
