"""``watchers-bot listen ROOM...``: print the messages of rooms, as JSON lines or --pretty."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from ...models import Message
from ..parser import EXIT_OK, EXIT_USAGE, PROG
from ..terminal import Secrets, printable, silence_stdout, status
from .connect import bot_from_args

__all__ = ["pretty", "run"]


def run(args: argparse.Namespace, secrets: Secrets) -> int:
    """Listen until Ctrl-C, --count messages or --timeout seconds of silence."""
    own = args.rooms if args.shard is None else args.shard.select(args.rooms)
    if not own:
        print(f"{PROG} listen: none of the rooms belongs to shard {args.shard}", file=sys.stderr)
        return EXIT_USAGE
    with bot_from_args(args, secrets) as bot:
        bot.listen(*own)
        rooms = ", ".join(own)
        status(args, f"listening to {rooms} on {bot.url} (Ctrl-C to stop)")

        # The loss is the library's warning; say when it is over too.  The bot
        # counts as connected again only once it listens to every room again.
        def on_state(old: str, new: str) -> None:
            if old == "reconnecting" and new == "connected":
                status(args, f"link back: listening to {rooms} again on {bot.url}")

        bot.on_state_change(on_state)
        for count, msg in enumerate(bot.messages(timeout=args.timeout), 1):
            if args.pretty:
                line = pretty(msg, datetime.now())
            else:
                line = json.dumps(dict(msg.raw), ensure_ascii=False)
            try:
                print(line, flush=True)
            except BrokenPipeError:
                # The reader went away (e.g. `| head -1`): it has what it wanted.
                silence_stdout()
                return EXIT_OK
            if args.count is not None and count >= args.count:
                break
    return EXIT_OK


def pretty(msg: Message, when: datetime) -> str:
    """A message as one readable line: ``12:34:56  room  user: text``.

    The time is when the message arrived (payloads carry none).  Lines of a
    multi-line text after the first are indented under it.
    """
    head = f"{when:%H:%M:%S}  {printable(msg.room_id)}  {printable(msg.user_id or '?')}: "
    lines = printable(msg.text).split("\n")
    indent = "\n" + " " * len(head)
    return head + indent.join(line.replace("\t", "    ") for line in lines)
