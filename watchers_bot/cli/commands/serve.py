"""``watchers-bot serve``: run the emulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import secrets as random_secrets
import shlex
import signal
import threading
from typing import Any, Dict, List, Optional, Sequence

from ...sigterm import Terminated
from ..parser import EXIT_OK, Failure
from ..terminal import Secrets, status
from .demo import import_emulator, page_url

__all__ = ["run"]


def _split_list(values: Optional[Sequence[str]]) -> List[str]:
    """Flatten repeated, comma-separated option values; drop blanks and duplicates."""
    seen: Dict[str, None] = {}
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if item:
                seen[item] = None
    return list(seen)


def _serve_banner(emu: Any, tokens: List[str], api_keys: List[str]) -> str:
    url = emu.url
    lines = [
        f"watchers-bot emulator listening on {url} (project {emu.project!r})",
        f"playground page:   {page_url(emu)} (chat, inspector, faults; this machine only)",
        f"accepted tokens:   {', '.join(tokens)}",
        f"accepted API keys: {', '.join(api_keys)}",
        "",
        "Point a bot at it (these are the emulator's own test credentials):",
        "",
        f"    export WATCHERS_URL={shlex.quote(url)}",
        f"    export WATCHERS_TOKEN={shlex.quote(tokens[0])}",
        f"    export WATCHERS_API_KEY={shlex.quote(api_keys[0])}",
        "    export WATCHERS_BOT_ID=my-bot",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, secrets: Secrets) -> int:
    """Serve until Ctrl-C or SIGTERM (both exit 0: that is how a server stops)."""
    emulator_class = import_emulator()
    tokens = _split_list(args.token) or ["emu-" + random_secrets.token_urlsafe(16)]
    api_keys = _split_list(args.api_key) or ["emu-" + random_secrets.token_urlsafe(16)]
    emu = emulator_class(
        tokens=tokens, api_keys=api_keys, host=args.host, port=args.port,
        project=args.project, ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    # Ctrl-C and SIGTERM are how a server is meant to stop: handle both here
    # (even when the shell started us with SIGINT ignored, as `serve &` does),
    # so that stopping never interrupts anything half-way.
    previous: Dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            previous[signum] = signal.signal(signum, on_signal)
    try:
        try:
            emu.start()
        except OSError as exc:
            raise Failure(
                f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        try:
            print(_serve_banner(emu, tokens, api_keys), flush=True)
            # Event.wait in slices: a signal is noticed within half a second.
            while not stop.wait(0.5):
                pass
        except (KeyboardInterrupt, Terminated):  # handlers not installed (not main thread)
            pass
        finally:
            status(args, "stopping the emulator")
            emu.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return EXIT_OK
