"""``watchers-bot demo``: an echo bot and a simulated human on an embedded emulator."""

from __future__ import annotations

import argparse
import contextlib
import secrets as random_secrets
import threading
import time
from typing import Any, List

from ...sigterm import Terminated
from ..parser import EXIT_OK, Failure
from ..terminal import Secrets

__all__ = ["import_emulator", "page_url", "run"]

#: What the simulated human says.
DEMO_LINES = (
    "hello",
    "is anyone there?",
    "what's the weather like in Frankfurt?",
    "thanks, bye!",
)
DEMO_ROOM = "lobby"
DEMO_BOT_ID = "echo-bot"
DEMO_HUMAN_ID = "human"
#: Seconds any single step of the demo may take before it counts as a failure.
DEMO_STEP_TIMEOUT = 5.0


def import_emulator() -> Any:
    """The Emulator class; a missing extra is one error line naming the install command."""
    try:
        from ...emulator import Emulator
    except ImportError as exc:
        raise Failure(str(exc)) from None
    return Emulator


def _demo_lines(count: int) -> List[str]:
    lines = list(DEMO_LINES[:count])
    for n in range(len(lines), count):
        lines.append(f"message number {n + 1}")
    return lines


def run(args: argparse.Namespace, secrets: Secrets) -> int:
    """Print the conversation (and with --open, keep it running in the browser)."""
    from ...client.bot import Bot
    from ...errors import BotClosed

    emulator_class = import_emulator()
    token = "demo-" + random_secrets.token_urlsafe(12)
    api_key = "demo-" + random_secrets.token_urlsafe(12)
    secrets.add(token, api_key)
    lines = _demo_lines(args.messages)
    width = max(len(DEMO_HUMAN_ID), len(DEMO_BOT_ID))
    echo_errors: List[BaseException] = []

    with emulator_class(tokens=[token], api_keys=[api_key]) as emu:
        bot = Bot(
            token, api_key, DEMO_BOT_ID, url=emu.url,
            connect_timeout=DEMO_STEP_TIMEOUT, ack_timeout=DEMO_STEP_TIMEOUT,
            reconnect_attempts=1,
        )
        with bot:
            bot.listen(DEMO_ROOM)

            def echo() -> None:
                try:
                    for msg in bot.messages():
                        bot.reply(msg, "echo: " + msg.text)
                except BotClosed:
                    pass  # closed while replying: the demo is over
                except Exception as exc:  # reported by the main thread
                    echo_errors.append(exc)

            worker = threading.Thread(target=echo, name="demo-echo-bot", daemon=True)
            worker.start()
            try:
                print(f"# demo: '{DEMO_BOT_ID}' and '{DEMO_HUMAN_ID}' in room "
                      f"'{DEMO_ROOM}' on an emulator at {emu.url}", flush=True)
                print(f"# playground page (this machine only): {page_url(emu)}", flush=True)
                emu.wait_for_listeners(DEMO_ROOM, 1, timeout=DEMO_STEP_TIMEOUT)
                for n, line in enumerate(lines, 1):
                    print(f"{DEMO_HUMAN_ID:<{width}} > {line}", flush=True)
                    emu.post(DEMO_ROOM, line, user_id=DEMO_HUMAN_ID)
                    try:
                        sent = emu.wait_for_sent(n, timeout=DEMO_STEP_TIMEOUT)
                    except TimeoutError as exc:
                        if echo_errors:
                            raise Failure(
                                f"demo failed: the echo bot stopped: {echo_errors[0]}"
                            ) from None
                        raise Failure(f"demo failed: no echo: {exc}") from None
                    answer = sent[n - 1]
                    print(f"{answer.user_id:<{width}} > {answer.text}", flush=True)
                if args.open:
                    _open_and_wait(page_url(emu))
            finally:
                bot.close()
                worker.join(DEMO_STEP_TIMEOUT)
    if echo_errors:
        raise Failure(f"demo failed: the echo bot stopped: {echo_errors[0]}")
    print(f"# {len(lines)} message(s) echoed; emulator stopped", flush=True)
    return EXIT_OK


def page_url(emu: Any) -> str:
    """The emulator's playground page."""
    from ...emulator.control import page_url as control_page_url

    return control_page_url(emu)


def _open_and_wait(page: str) -> None:
    import webbrowser

    if not webbrowser.open(page):
        print(f"# could not start a browser: open {page} yourself", flush=True)
    print("# the echo bot keeps answering in the page; press Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt, Terminated):
        while True:
            time.sleep(0.5)
