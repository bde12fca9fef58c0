#!/usr/bin/env python3
"""Send one message and exit: for cron jobs, CI steps and shell scripts.

::

    # crontab: WATCHERS_* variables are not inherited there, set them in the line
    0 9 * * 1-5  . $HOME/.watchers.env && python /path/to/send_once.py room-1 "Good morning"

Exit codes: 0 the server acknowledged the message; 1 it did not (one line on
stderr says why, and whether the message may have been posted anyway); 2 bad
arguments; 130 interrupted.  Nothing is printed on success, so cron sends no
mail.
"""

import argparse
import sys

from watchers_bot import Bot, WatchersError

PROG = "send_once"


def seconds(text):
    """A --timeout value: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def main(argv):
    parser = argparse.ArgumentParser(prog=PROG, description="Send one message to a room.")
    parser.add_argument("room", help="the room id")
    parser.add_argument("text", help="the message")
    parser.add_argument("--timeout", type=seconds, default=10.0,
                        help="seconds to connect, and to wait for the acknowledgement "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        with Bot.from_env(connect_timeout=args.timeout, ack_timeout=args.timeout,
                          reconnect=False) as bot:
            try:
                bot.send(args.room, args.text)
            except ValueError as exc:
                # Bad ROOM or TEXT is a usage error: exit 2 as argparse does;
                # nothing went on the wire.
                parser.error(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (WatchersError, ValueError) as exc:
        # One line.  After AckTimeout or ConnectionLost the text says the
        # outcome is unknown: a blind retry may post the message twice.
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
