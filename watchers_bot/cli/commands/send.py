"""``watchers-bot send ROOM TEXT``: post as the bot and wait for the acknowledgement."""

from __future__ import annotations

import argparse
import logging

from ..parser import EXIT_OK
from ..terminal import Secrets, read_text
from .connect import bot_from_args

__all__ = ["run"]

_log = logging.getLogger("watchers_bot.cli")


def run(args: argparse.Namespace, secrets: Secrets) -> int:
    """Send; the ack or an error says what became of the message."""
    text = read_text(args.text)
    with bot_from_args(args, secrets, needs_bot_id=True) as bot:
        bot.send(args.room, text, timeout=args.timeout)
        _log.info("sent %d character(s) to %s", len(text), args.room)
    return EXIT_OK
