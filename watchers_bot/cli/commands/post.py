"""``watchers-bot post ROOM TEXT --as USER``: post as a human, through a running emulator's
control API (local only; needs no token)."""

from __future__ import annotations

import argparse
import json

from ... import settings
from ...control_api import ControlError, call
from ..parser import EXIT_OK, Failure
from ..terminal import Secrets, read_text, status

__all__ = ["run"]

DEFAULT_URL = "http://127.0.0.1:8765"


def run(args: argparse.Namespace, secrets: Secrets) -> int:
    """Post, and print the posted payload as JSON."""

    text = read_text(args.text)
    url = args.url or settings.lookup(settings.get("URL"), [settings.env_layer()]).value
    url = url or DEFAULT_URL
    try:
        answer = call(url, "post", {"room": args.room, "text": text, "user": args.user},
                      timeout=args.timeout)
    except ControlError as exc:
        raise Failure(str(exc)) from None
    print(json.dumps(answer["posted"], ensure_ascii=False), flush=True)
    status(args, f"posted in {args.room} as {args.user}; "
                  f"{answer['listeners']} bot socket(s) listening there")
    return EXIT_OK
