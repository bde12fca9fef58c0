"""The ``watchers-bot`` command line.

::

    watchers-bot demo [--messages N]            # an echo bot and a human, on an embedded emulator
    watchers-bot serve [--port 8765] ...        # run the emulator until Ctrl-C
    watchers-bot listen ROOM [ROOM ...]         # print messages as JSON lines
    watchers-bot send ROOM TEXT                 # post as the bot (TEXT "-" reads stdin)
    watchers-bot post ROOM TEXT --as alice      # post as a human into a running emulator
    watchers-bot doctor [--room R] [--send T]   # check a configuration end to end

``listen``, ``send`` and ``doctor`` take their credentials from ``--token``, ``--api-key``,
``--bot-id``, ``--region`` and ``--url``, falling back to the ``WATCHERS_*``
environment variables (prefer the variables: command-line arguments are
visible to other users of the machine).

Exit codes: 0 success, 1 error, 2 usage error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).  ``serve`` exits 0 on Ctrl-C and SIGTERM: that is
how it is meant to stop.  ``doctor`` exits 0 when every check it ran passed,
1 otherwise.  Errors are one line on stderr, never a traceback
(``-vv`` adds it for unexpected errors), and never contain a token or API key.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import math
import os
import secrets
import shlex
import signal
import socket
import ssl
import sys
import threading
import time
import unicodedata
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from . import __version__
from ._logging import RedactingFilter, redact
from .bot import Bot, _is_insecure_remote
from .errors import (
    AckTimeout,
    AuthError,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    ServerError,
    WatchersError,
)
from .models import Message
from .regions import DEFAULT_REGION, resolve_url
from .sharding import Shard

__all__ = ["main"]

PROG = "watchers-bot"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: What the simulated human says in ``demo``.
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

_log = logging.getLogger("watchers_bot.cli")


class _Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler."""


class _Failure(Exception):
    """An error already phrased for the user (exit 1)."""


# --------------------------------------------------------------------------- argument types


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), got {text!r}")
    return value


def _split_list(values: Optional[Sequence[str]]) -> List[str]:
    """Flatten repeated, comma-separated option values; drop blanks and duplicates."""
    seen: Dict[str, None] = {}
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if item:
                seen[item] = None
    return list(seen)


# --------------------------------------------------------------------------- parser


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "connection",
        "--token, --api-key, --bot-id, --region and --url fall back to their WATCHERS_* "
        "environment variables (prefer the variables for secrets: arguments show in the "
        "process list)",
    )
    group.add_argument("--token", metavar="T", help="bearer token [WATCHERS_TOKEN]")
    group.add_argument("--api-key", metavar="K", help="project API key [WATCHERS_API_KEY]")
    group.add_argument("--bot-id", metavar="ID", help="the bot's user id [WATCHERS_BOT_ID]")
    group.add_argument(
        "--region", metavar="R", help="eu (default), us, sa, hk or za [WATCHERS_REGION]"
    )
    group.add_argument(
        "--url", metavar="URL", help="explicit endpoint, overrides --region [WATCHERS_URL]"
    )
    group.add_argument(
        "--connect-timeout", metavar="S", type=_positive_float, default=None,
        help="seconds to wait for the connection (default 10)",
    )
    group.add_argument(
        "--ca-certs", metavar="FILE", default=None,
        help="CA bundle (PEM) to verify the server's certificate with, instead of the "
        "system's (e.g. a TLS-inspecting proxy's CA)",
    )
    group.add_argument(
        "--no-verify-ssl", dest="verify_ssl", action="store_false", default=True,
        help="do not verify the server's TLS certificate (insecure; for diagnosis only)",
    )
    group.add_argument(
        "--allow-insecure", action="store_true", default=False,
        help="allow an unencrypted ws:// or http:// URL to a host other than this machine",
    )


def _add_output_options(parser: argparse.ArgumentParser, *, default: bool) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0 if default else argparse.SUPPRESS,
        help="log to stderr: -v for INFO, -vv for DEBUG (secrets are masked)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=False if default else argparse.SUPPRESS,
        help="no status lines or warnings on stderr, only errors",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``watchers-bot`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Command-line client and local emulator for the Watchers.io bot API.",
        epilog="Run '%(prog)s COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_output_options(parser, default=True)
    # -v/-q are accepted after the command too (`watchers-bot listen room -v`).
    common = argparse.ArgumentParser(add_help=False)
    _add_output_options(common, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo", parents=[common], help="an echo bot and a human talking on an embedded emulator",
        description="Start an emulator on a free port, an echo bot and a simulated human, "
        "and print their conversation.",
    )
    demo.add_argument(
        "--messages", metavar="N", type=_positive_int, default=3,
        help="how many lines the human says (default 3)",
    )
    demo.add_argument(
        "--open", action="store_true", default=False,
        help="open the playground page in a browser and keep the emulator and the echo bot "
        "running until Ctrl-C (default: print the conversation and exit)",
    )

    serve = commands.add_parser(
        "serve", parents=[common], help="run the Watchers bot-server emulator until Ctrl-C",
        description="Run the emulator standalone: a local Socket.IO server speaking the "
        "Watchers bot protocol.  Stops on Ctrl-C or SIGTERM.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)"
    )
    serve.add_argument(
        "--token", action="append", metavar="T",
        help="accepted bearer token; repeatable, comma-separated lists too "
        "(default: one random token)",
    )
    serve.add_argument(
        "--api-key", action="append", metavar="K",
        help="accepted API key; repeatable, comma-separated lists too (default: one random key)",
    )
    serve.add_argument(
        "--ping-interval", metavar="S", type=_positive_float, default=25.0,
        help="Engine.IO ping interval in seconds (default 25)",
    )
    serve.add_argument(
        "--ping-timeout", metavar="S", type=_positive_float, default=20.0,
        help="Engine.IO ping timeout in seconds (default 20)",
    )
    serve.add_argument(
        "--project", default="demo", help="the 'project' field of messages (default demo)"
    )

    listen = commands.add_parser(
        "listen", parents=[common], help="print the messages of rooms as JSON lines",
        description="Listen to rooms and print each message payload, as received, as one "
        "JSON object per line on stdout.  Runs until Ctrl-C unless --count or --timeout.",
    )
    listen.add_argument("rooms", nargs="+", metavar="ROOM", help="room id")
    listen.add_argument(
        "--count", metavar="N", type=_positive_int, default=None,
        help="stop after N messages",
    )
    listen.add_argument(
        "--timeout", metavar="S", type=_positive_float, default=None,
        help="stop after S seconds without a message",
    )
    listen.add_argument(
        "--pretty", action="store_true", default=False,
        help="one readable line per message (time, room, user: text) instead of JSON",
    )
    listen.add_argument(
        "--include-own", action="store_true", default=False,
        help="also print the bot's own messages (default: when the bot id is set, by "
        "--bot-id or WATCHERS_BOT_ID, the bot's own messages are not printed)",
    )
    listen.add_argument(
        "--shard", metavar="I/N", type=_shard, default=None,
        help="listen only to the given rooms that belong to shard I of N (stable crc32 of "
        "the room id; run N listeners with 0/N .. N-1/N to split the rooms)",
    )
    _add_credentials(listen)

    send = commands.add_parser(
        "send", parents=[common], help="post a message as the bot",
        description="Post TEXT in ROOM as the bot and wait for the server's acknowledgement.",
    )
    send.add_argument("room", metavar="ROOM", help="room id")
    send.add_argument("text", metavar="TEXT", help="the message; '-' reads it from stdin")
    send.add_argument(
        "--timeout", metavar="S", type=_positive_float, default=None,
        help="deadline in seconds for the whole send, connecting included (default: up to "
        "--connect-timeout to connect, then 10 for the acknowledgement)",
    )
    _add_credentials(send)

    post = commands.add_parser(
        "post", parents=[common], help="post a message as a human into a running emulator",
        description="Post TEXT in ROOM as the human user --as, through the control API of "
        "an emulator started with 'watchers-bot serve' (local only; needs no token).  "
        "Prints the posted message payload as JSON.",
    )
    post.add_argument("room", metavar="ROOM", help="room id")
    post.add_argument("text", metavar="TEXT", help="the message; '-' reads it from stdin")
    post.add_argument(
        "--as", dest="user", metavar="USER", default="human",
        help="the user id to post as (default human)",
    )
    post.add_argument(
        "--url", default=None,
        help="the emulator's address (default $WATCHERS_URL, else http://127.0.0.1:8765)",
    )
    post.add_argument(
        "--timeout", metavar="S", type=_positive_float, default=10.0,
        help="seconds the whole call may take (default 10)",
    )

    doctor = commands.add_parser(
        "doctor", parents=[common], help="check a configuration end to end",
        description="Check the configuration, then each step of a connection: endpoint, "
        "proxy, DNS, TCP, TLS, Socket.IO connect and token; with --room, listening; with "
        "--send, posting a message.  Prints one line per check (ok, FAIL or skip) and "
        "exits 0 only if every check it ran passed.  Never prints a secret.",
    )
    doctor.add_argument(
        "--room", metavar="ROOM", default=None,
        help="also listen to ROOM and wait for the acknowledgement (checks the API key)",
    )
    doctor.add_argument(
        "--send", metavar="TEXT", default=None,
        help="also post TEXT in ROOM as the bot and wait for the acknowledgement "
        "(needs --room and a bot id; the message is really posted)",
    )
    doctor.add_argument(
        "--timeout", metavar="S", type=_positive_float, default=10.0,
        help="seconds each check may take (default 10)",
    )
    _add_credentials(doctor)
    return parser


# --------------------------------------------------------------------------- output helpers


class _Secrets:
    """Values that must never reach the terminal, masked in every error line."""

    def __init__(self) -> None:
        self.values: List[str] = []

    # Shorter values would mask ordinary letters everywhere (as in the library's log filter).
    MIN_LENGTH = 4

    def add(self, *values: Optional[str]) -> None:
        for value in values:
            if value and len(value.strip()) >= self.MIN_LENGTH:
                self.values.append(value.strip())
                if value != value.strip():
                    self.values.append(value)

    def mask(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return redact(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _status(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int, quiet: bool) -> Iterator[None]:
    """Send the library's log records to stderr for the duration of a command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if verbosity >= 2:
        level = logging.DEBUG
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
        ))
    elif verbosity == 1:
        level = logging.INFO
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    else:
        level = logging.ERROR if quiet else logging.WARNING
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    # python-socketio/engineio log every packet at INFO (and their warnings, such
    # as "WebSocket connection was closed" on a normal close(), as INFO too):
    # show them only at -vv; the library's own records (lost links, reconnects)
    # tell what matters.
    wire_level = logging.DEBUG if verbosity >= 2 else logging.ERROR
    loggers: List[Tuple[logging.Logger, int]] = [
        (logging.getLogger("watchers_bot"), level),
        (logging.getLogger("watchers_bot.socketio"), wire_level),
        (logging.getLogger("watchers_bot.engineio"), wire_level),
        (logging.getLogger("websocket"), wire_level),
    ]
    saved = [(lg, lg.level, lg.propagate) for lg, _ in loggers]
    for lg, lvl in loggers:
        lg.setLevel(lvl)
    root_logger, websocket_logger = loggers[0][0], loggers[3][0]
    root_logger.addHandler(handler)
    websocket_logger.addHandler(handler)
    websocket_logger.propagate = False
    try:
        yield
    finally:
        root_logger.removeHandler(handler)
        websocket_logger.removeHandler(handler)
        for lg, lvl, propagate in saved:
            lg.setLevel(lvl)
            lg.propagate = propagate


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` in the main thread, while the command runs."""

    def on_sigterm(signum: int, frame: Any) -> None:
        raise _Terminated()

    installed = False
    previous: Any = None
    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
        installed = True
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
        pass
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)


_REQUIRED = (
    # (attribute, variable, option, why)
    ("token", "WATCHERS_TOKEN", "--token", "the bot's bearer token"),
    ("api_key", "WATCHERS_API_KEY", "--api-key", "the project's API key"),
)
_BOT_ID = ("bot_id", "WATCHERS_BOT_ID", "--bot-id", "sending needs the bot's user id")


def _bot_from_args(
    args: argparse.Namespace, secrets_: _Secrets, *, needs_bot_id: bool = False
) -> Bot:
    secrets_.add(args.token, args.api_key, os.environ.get("WATCHERS_TOKEN"),
                 os.environ.get("WATCHERS_API_KEY"))
    required = _REQUIRED + ((_BOT_ID,) if needs_bot_id else ())
    for attr, variable, option, why in required:
        if getattr(args, attr) is None and not os.environ.get(variable, "").strip():
            raise _Failure(f"{variable} is not set: export it or pass {option} ({why})")
    overrides: Dict[str, Any] = {}
    for name in ("token", "api_key", "bot_id", "region", "url"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.connect_timeout is not None:
        overrides["connect_timeout"] = args.connect_timeout
    overrides.update(_tls_overrides(args))
    if getattr(args, "include_own", False):
        overrides["include_own"] = True
    return Bot.from_env(**overrides)


def _tls_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    overrides: Dict[str, Any] = {}
    if args.ca_certs is not None:
        overrides["ca_certs"] = args.ca_certs
    if not args.verify_ssl:
        overrides["verify_ssl"] = False
    if args.allow_insecure:
        overrides["allow_insecure"] = True
    return overrides


# --------------------------------------------------------------------------- commands


def _cmd_listen(args: argparse.Namespace, secrets_: _Secrets) -> int:
    own = args.rooms if args.shard is None else args.shard.select(args.rooms)
    if not own:
        print(f"{PROG} listen: none of the rooms belongs to shard {args.shard}", file=sys.stderr)
        return EXIT_USAGE
    with _bot_from_args(args, secrets_) as bot:
        bot.listen(*own)
        rooms = ", ".join(own)
        _status(args, f"listening to {rooms} on {bot.url} (Ctrl-C to stop)")

        # The loss is the library's warning; say when it is over too.  The bot
        # counts as connected again only once it listens to every room again.
        def on_state(old: str, new: str) -> None:
            if old == "reconnecting" and new == "connected":
                _status(args, f"link back: listening to {rooms} again on {bot.url}")

        bot.on_state_change(on_state)
        for count, msg in enumerate(bot.messages(timeout=args.timeout), 1):
            if args.pretty:
                line = _pretty(msg, datetime.now())
            else:
                line = json.dumps(dict(msg.raw), ensure_ascii=False)
            try:
                print(line, flush=True)
            except BrokenPipeError:
                # The reader went away (e.g. `| head -1`): it has what it wanted.
                _silence_stdout()
                return EXIT_OK
            if args.count is not None and count >= args.count:
                break
    return EXIT_OK


def _printable(text: str) -> str:
    """``text`` with control characters (terminal escapes included) shown as ``\\xNN``."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _pretty(msg: Message, when: datetime) -> str:
    """A message as one readable line: ``12:34:56  room  user: text``.

    The time is when the message arrived (payloads carry none).  Lines of a
    multi-line text after the first are indented under it.
    """
    head = f"{when:%H:%M:%S}  {_printable(msg.room_id)}  {_printable(msg.user_id or '?')}: "
    lines = _printable(msg.text).split("\n")
    indent = "\n" + " " * len(head)
    return head + indent.join(line.replace("\t", "    ") for line in lines)


def _silence_stdout() -> None:
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _read_text(text: str) -> str:
    if text != "-":
        return text
    data = sys.stdin.read()
    # `echo hi | watchers-bot send room -`: the final line ending is not part of the message.
    if data.endswith("\r\n"):
        return data[:-2]
    if data.endswith("\n"):
        return data[:-1]
    return data


def _cmd_send(args: argparse.Namespace, secrets_: _Secrets) -> int:
    text = _read_text(args.text)
    with _bot_from_args(args, secrets_, needs_bot_id=True) as bot:
        bot.send(args.room, text, timeout=args.timeout)
        _log.info("sent %d character(s) to %s", len(text), args.room)
    return EXIT_OK


def _cmd_post(args: argparse.Namespace, secrets_: _Secrets) -> int:
    from ._control import ControlError, call

    text = _read_text(args.text)
    url = args.url or os.environ.get("WATCHERS_URL", "").strip() or "http://127.0.0.1:8765"
    try:
        answer = call(url, "post", {"room": args.room, "text": text, "user": args.user},
                      timeout=args.timeout)
    except ControlError as exc:
        raise _Failure(str(exc)) from None
    print(json.dumps(answer["posted"], ensure_ascii=False), flush=True)
    _status(args, f"posted in {args.room} as {args.user}; "
                  f"{answer['listeners']} bot socket(s) listening there")
    return EXIT_OK


def _import_emulator() -> Any:
    try:
        from .emulator import Emulator
    except ImportError as exc:
        raise _Failure(str(exc)) from None
    return Emulator


def _demo_lines(count: int) -> List[str]:
    lines = list(DEMO_LINES[:count])
    for n in range(len(lines), count):
        lines.append(f"message number {n + 1}")
    return lines


def _cmd_demo(args: argparse.Namespace, secrets_: _Secrets) -> int:
    emulator_class = _import_emulator()
    token = "demo-" + secrets.token_urlsafe(12)
    api_key = "demo-" + secrets.token_urlsafe(12)
    secrets_.add(token, api_key)
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
                print(f"# playground page (this machine only): {_page_url(emu)}", flush=True)
                emu.wait_for_listeners(DEMO_ROOM, 1, timeout=DEMO_STEP_TIMEOUT)
                for n, line in enumerate(lines, 1):
                    print(f"{DEMO_HUMAN_ID:<{width}} > {line}", flush=True)
                    emu.post(DEMO_ROOM, line, user_id=DEMO_HUMAN_ID)
                    try:
                        sent = emu.wait_for_sent(n, timeout=DEMO_STEP_TIMEOUT)
                    except TimeoutError as exc:
                        if echo_errors:
                            raise _Failure(
                                f"demo failed: the echo bot stopped: {echo_errors[0]}"
                            ) from None
                        raise _Failure(f"demo failed: no echo: {exc}") from None
                    answer = sent[n - 1]
                    print(f"{answer.user_id:<{width}} > {answer.text}", flush=True)
                if args.open:
                    _open_and_wait(_page_url(emu))
            finally:
                bot.close()
                worker.join(DEMO_STEP_TIMEOUT)
    if echo_errors:
        raise _Failure(f"demo failed: the echo bot stopped: {echo_errors[0]}")
    print(f"# {len(lines)} message(s) echoed; emulator stopped", flush=True)
    return EXIT_OK


def _page_url(emu: Any) -> str:
    from ._control import page_url

    return page_url(emu)


def _open_and_wait(page: str) -> None:
    import webbrowser

    if not webbrowser.open(page):
        print(f"# could not start a browser: open {page} yourself", flush=True)
    print("# the echo bot keeps answering in the page; press Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt, _Terminated):
        while True:
            time.sleep(0.5)


def _serve_banner(emu: Any, tokens: List[str], api_keys: List[str]) -> str:
    url = emu.url
    lines = [
        f"watchers-bot emulator listening on {url} (project {emu.project!r})",
        f"playground page:   {_page_url(emu)} (chat, inspector, faults; this machine only)",
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


def _cmd_serve(args: argparse.Namespace, secrets_: _Secrets) -> int:
    emulator_class = _import_emulator()
    tokens = _split_list(args.token) or ["emu-" + secrets.token_urlsafe(16)]
    api_keys = _split_list(args.api_key) or ["emu-" + secrets.token_urlsafe(16)]
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
            raise _Failure(
                f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        try:
            print(_serve_banner(emu, tokens, api_keys), flush=True)
            # Event.wait in slices: a signal is noticed within half a second.
            while not stop.wait(0.5):
                pass
        except (KeyboardInterrupt, _Terminated):  # handlers not installed (not main thread)
            pass
        finally:
            _status(args, "stopping the emulator")
            emu.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return EXIT_OK


# --------------------------------------------------------------------------- doctor

OK, FAIL, SKIP = "ok", "FAIL", "skip"

_DOCTOR_VARIABLES = (
    # (attribute, variable, option, what)
    ("token", "WATCHERS_TOKEN", "--token", "token"),
    ("api_key", "WATCHERS_API_KEY", "--api-key", "API key"),
    ("bot_id", "WATCHERS_BOT_ID", "--bot-id", "bot id"),
    ("region", "WATCHERS_REGION", "--region", "region"),
    ("url", "WATCHERS_URL", "--url", "url"),
)


class _CheckFailed(Exception):
    """A check failed; the text is its one-line explanation."""


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _resolve(host: str, port: int, timeout: float) -> List[Tuple[Any, ...]]:
    """``getaddrinfo`` bounded by ``timeout`` (it has no timeout of its own)."""
    box: List[Any] = []

    def work() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # reported by the caller
            box.append(exc)

    worker = threading.Thread(target=work, name="watchers-doctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        raise _CheckFailed(f"cannot resolve {host}: no answer in {timeout:g}s "
                           "(is a DNS server reachable?)")
    if isinstance(box[0], BaseException):
        exc = box[0]
        raise _CheckFailed(f"cannot resolve {host}: {_os_reason(exc)} "
                           "(check the host name in the URL, and DNS)")
    return list(box[0])


def _tls_hint(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = str(exc.verify_message or exc.reason or exc)
        lowered = message.lower()
        if "hostname" in lowered or "ip address mismatch" in lowered:
            hint = "the certificate is for another host: check --url/--region"
        elif "expired" in lowered or "not yet valid" in lowered:
            hint = "check the server's certificate, and this machine's clock"
        else:
            hint = ("the certificate is not signed by a CA this machine trusts: pass "
                    "--ca-certs FILE with the CA bundle; behind a TLS-inspecting proxy, "
                    "its CA")
        return f"certificate verification failed: {message} ({hint})"
    reason = str(exc.reason or exc)
    if "WRONG_VERSION_NUMBER" in reason or "record layer" in reason.lower():
        return (f"TLS handshake failed: {reason} (the server does not speak TLS on this "
                "port: a ws:// endpoint?)")
    return f"TLS handshake failed: {reason}"


class _Doctor:
    """``watchers-bot doctor``: each check prints one line; a failure skips what depends on it."""

    def __init__(self, args: argparse.Namespace, secrets_: _Secrets) -> None:
        self.args = args
        self.secrets = secrets_
        self.timeout: float = args.timeout
        self.results: List[str] = []
        self.values: Dict[str, Optional[str]] = {}
        self.sources: Dict[str, str] = {}
        self.proxy_auth: Optional[Tuple[str, str]] = None
        self.bot: Optional[Bot] = None

    # -------------------------------------------------------------- output

    def line(self, status: str, name: str, detail: str) -> None:
        self.results.append(status)
        text = _one_line(self.secrets.mask(detail))
        print(f"{status:<4}  {name:<9}  {text}", flush=True)

    def check(self, name: str, fn: Any) -> Any:
        """Run ``fn`` (returns ``(detail, value)``); print its line; ``None`` on failure."""
        try:
            detail, value = fn()
        except _CheckFailed as exc:
            self.line(FAIL, name, str(exc))
            return None
        self.line(OK, name, detail)
        return value if value is not None else True

    def skip(self, names: Sequence[str], why: str) -> None:
        for name in names:
            self.line(SKIP, name, why)

    # -------------------------------------------------------------- checks

    def configuration(self) -> Tuple[str, bool]:
        args = self.args
        for attr, variable, option, _what in _DOCTOR_VARIABLES:
            value = getattr(args, attr)
            if value is not None:
                self.values[attr], self.sources[attr] = value, option
                continue
            env = os.environ.get(variable, "").strip()
            if env:
                self.values[attr], self.sources[attr] = env, variable
            else:
                self.values[attr] = None
        self.secrets.add(self.values["token"], self.values["api_key"])
        missing = []
        needed = _DOCTOR_VARIABLES[:2] + (_DOCTOR_VARIABLES[2:3] if args.send else ())
        for attr, variable, option, what in needed:
            value = self.values[attr]
            if value is None or not value.strip():
                missing.append(f"{what} ({variable} or {option})")
        if missing:
            raise _CheckFailed("not set: " + ", ".join(missing))
        found = [
            f"{what} from {self.sources[attr]}"
            for attr, _variable, _option, what in _DOCTOR_VARIABLES
            if attr in self.sources
        ]
        if self.values["bot_id"] is None:
            found.append("no bot id (only needed to send)")
        return ", ".join(found), True

    def endpoint(self) -> Tuple[str, Tuple[str, str, int, bool]]:
        region, url = self.values["region"], self.values["url"]
        try:
            resolved = resolve_url(region or DEFAULT_REGION, url)
            parts = urlsplit(resolved)
            secure = parts.scheme.lower() in ("wss", "https")
            port = parts.port or (443 if secure else 80)
        except (ValueError, TypeError) as exc:
            raise _CheckFailed(str(exc)) from None
        if not self.args.allow_insecure and _is_insecure_remote(resolved):
            raise _CheckFailed(
                f"{resolved} is unencrypted and not on this machine: the token would travel "
                "in clear; use wss:// (or pass --allow-insecure)"
            )
        host = parts.hostname or ""
        if url is not None:
            origin = f"from {self.sources['url']}"
            if region is not None:
                origin += f"; {self.sources['region']} ignored"
        else:
            where = f"from {self.sources['region']}" if region is not None else "the default"
            origin = f"region {(region or DEFAULT_REGION).strip().lower()}, {where}"
        return f"{resolved} ({origin})", (resolved, host, port, secure)

    def proxy(self, host: str, port: int, secure: bool) -> Tuple[str, Optional[Tuple[str, int]]]:
        variable = "https_proxy" if secure else "http_proxy"
        setting = os.environ.get(variable) or os.environ.get(variable.upper())
        try:
            from websocket._url import get_proxy_info  # what the bot's websocket does
        except ImportError:  # pragma: no cover - websocket-client moved it
            return "not checked (websocket-client's proxy rules not found)", None
        try:
            proxy_host, proxy_port, proxy_auth = get_proxy_info(host, secure)
        except Exception as exc:
            raise _CheckFailed(f"bad proxy setting in {variable}: {exc}") from None
        if not proxy_host:
            if setting:
                return f"direct: NO_PROXY matches {host}", None
            return f"direct: no {variable}/{variable.upper()} variable", None
        if proxy_auth:
            self.secrets.add(*(part for part in proxy_auth if part))
            self.proxy_auth = proxy_auth
        if not proxy_port:
            raise _CheckFailed(f"the proxy in {variable} has no port: "
                               "write it as http://HOST:PORT")
        return (f"through {proxy_host}:{proxy_port} (from {variable}; add {host} to NO_PROXY "
                "to bypass it)"), (proxy_host, int(proxy_port))

    def dns(self, host: str, port: int, proxy: Optional[Tuple[str, int]]) -> Tuple[str, Any]:
        target, target_port = proxy if proxy else (host, port)
        infos = _resolve(target, target_port, self.timeout)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more"
                                            if len(addresses) > 3 else "")
        what = f"proxy {target}" if proxy else target
        note = f"; the proxy resolves {host}" if proxy else ""
        return f"{what} -> {shown}{note}", infos

    def tcp(self, host: str, port: int, infos: List[Tuple[Any, ...]],
            proxy: Optional[Tuple[str, int]]) -> Tuple[str, socket.socket]:
        started = time.monotonic()
        last: Optional[BaseException] = None
        sock: Optional[socket.socket] = None
        for family, kind, proto, _canon, address in infos:
            candidate = socket.socket(family, kind, proto)
            candidate.settimeout(self.timeout)
            try:
                candidate.connect(address)
            except OSError as exc:
                candidate.close()
                last = exc
                continue
            sock = candidate
            break
        target = f"{proxy[0]}:{proxy[1]}" if proxy else f"{host}:{port}"
        if sock is None:
            reason = _os_reason(last) if last is not None else "no address"
            what = "the proxy " if proxy else ""
            raise _CheckFailed(
                f"cannot connect to {what}{target}: {reason} (is the server up, the port "
                "right, and no firewall in the way?)"
            )
        if proxy is None:
            return f"connected to {target} in {_ms(started)}", sock
        try:
            status = self._tunnel(sock, host, port)
        except BaseException:
            sock.close()
            raise
        return (f"connected to proxy {target}; tunnel to {host}:{port} opened in "
                f"{_ms(started)} ({status})"), sock

    def _tunnel(self, sock: socket.socket, host: str, port: int) -> str:
        request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        auth = self.proxy_auth
        if auth and auth[0]:
            pair = auth[0] + (f":{auth[1]}" if auth[1] else "")
            request += f"Proxy-Authorization: Basic {base64.b64encode(pair.encode()).decode()}\r\n"
        request += "\r\n"
        try:
            sock.sendall(request.encode("latin-1"))
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError as exc:
            raise _CheckFailed(f"the proxy failed during CONNECT: {_os_reason(exc)}") from None
        status = head.split(b"\r\n", 1)[0].decode("latin-1", "replace").strip()
        fields = status.split(None, 2)
        if len(fields) < 2 or fields[1] != "200":
            raise _CheckFailed(f"the proxy refused the tunnel to {host}:{port}: "
                               f"{status or 'no answer'}")
        return status

    def tls(self, sock: socket.socket, host: str) -> Tuple[str, socket.socket]:
        args = self.args
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if args.verify_ssl:
            bundle = args.ca_certs or os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE")
            if bundle:
                try:
                    context.load_verify_locations(cafile=bundle)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    raise _CheckFailed(
                        f"cannot load the CA bundle {bundle}: {_os_reason(exc)}"
                    ) from None
            else:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        started = time.monotonic()
        try:
            tls = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as exc:
            raise _CheckFailed(_tls_hint(exc)) from None
        except OSError as exc:
            raise _CheckFailed(f"TLS handshake failed: {_os_reason(exc)}") from None
        version = tls.version() or "TLS"
        if not args.verify_ssl:
            return (f"{version} handshake in {_ms(started)}; certificate NOT verified "
                    "(--no-verify-ssl)"), tls
        cert = tls.getpeercert() or {}
        issuer: Dict[str, str] = {}
        names = cert.get("issuer", ())
        for rdn in names if isinstance(names, tuple) else ():
            for pair in rdn:
                if isinstance(pair, tuple) and len(pair) == 2:
                    issuer[str(pair[0])] = str(pair[1])
        detail = f"{version} in {_ms(started)}, certificate verified for {host}"
        if issuer.get("organizationName") or issuer.get("commonName"):
            detail += f" (issued by {issuer.get('organizationName') or issuer['commonName']}"
            expires = cert.get("notAfter")
            detail += f", expires {expires})" if expires else ")"
        if args.ca_certs:
            detail += f" with CA bundle {args.ca_certs}"
        elif os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE"):
            detail += " with the CA bundle in WEBSOCKET_CLIENT_CA_BUNDLE"
        return detail, tls

    def socketio(self, url: str) -> Tuple[str, Bot]:
        args = self.args
        values = self.values
        bot = Bot(
            values["token"] or "", values["api_key"] or "", values["bot_id"], url=url,
            connect_timeout=args.connect_timeout or self.timeout, ack_timeout=self.timeout,
            reconnect=False, **_tls_overrides(args),
        )
        self.bot = bot
        started = time.monotonic()
        try:
            bot.connect()
        except AuthError as exc:
            raise _CheckFailed(f"token refused: {exc.reason}") from None
        except ConnectFailed as exc:
            raise _CheckFailed(
                f"no Socket.IO connection: {exc} (the checks above passed: is {url} a "
                "Watchers bot endpoint?)"
            ) from None
        return f"connected in {_ms(started)}, token accepted", bot

    def listen(self, bot: Bot, room: str) -> Tuple[str, bool]:
        started = time.monotonic()
        try:
            bot.listen(room, timeout=self.timeout)
        except ServerError as exc:
            raise _CheckFailed(f"the server refused to listen to {room!r}: {exc} "
                               "(check the API key and the room id)") from None
        except AckTimeout:
            raise _CheckFailed(f"no acknowledgement for {room!r} in {self.timeout:g}s") from None
        except (ConnectionLost, ConnectFailed, BotClosed) as exc:
            raise _CheckFailed(f"the link dropped while listening: {exc}") from None
        return f"{room} acknowledged in {_ms(started)} (API key accepted)", True

    def send(self, bot: Bot, room: str, text: str) -> Tuple[str, bool]:
        started = time.monotonic()
        try:
            bot.send(room, text, timeout=self.timeout)
        except ServerError as exc:
            raise _CheckFailed(f"the server refused the message: {exc}") from None
        except (AckTimeout, ConnectionLost) as exc:
            raise _CheckFailed(f"{exc}") from None
        except (ConnectFailed, BotClosed) as exc:
            raise _CheckFailed(f"not sent: {exc}") from None
        return f"posted {len(text)} character(s) in {room}, acknowledged in {_ms(started)}", True

    # -------------------------------------------------------------- the run

    def run(self) -> int:
        args = self.args
        if args.send is not None and args.room is None:
            raise ValueError("doctor --send needs --room ROOM (where to post)")
        try:
            self._run()
        finally:
            if self.bot is not None:
                self.bot.close()
        failed = self.results.count(FAIL)
        passed = self.results.count(OK)
        skipped = self.results.count(SKIP)
        if failed:
            print(f"{failed} check(s) failed, {passed} passed, {skipped} skipped", flush=True)
            return EXIT_ERROR
        print(f"all {passed} check(s) passed, {skipped} skipped", flush=True)
        return EXIT_OK

    def _run(self) -> None:
        args = self.args
        later = ["socket.io", "listen", "send"]
        configured = self.check("config", self.configuration)
        endpoint = self.check("endpoint", self.endpoint)
        if not endpoint:
            self.skip(["proxy", "dns", "tcp", "tls", *later], "needs a valid endpoint")
            return
        url, host, port, secure = endpoint
        proxy = self.check("proxy", lambda: self.proxy(host, port, secure))
        if proxy is None:
            self.skip(["dns", "tcp", "tls", *later], "needs a usable proxy setting")
            return
        proxy = proxy if isinstance(proxy, tuple) else None
        infos = self.check("dns", lambda: self.dns(host, port, proxy))
        if not infos:
            self.skip(["tcp", "tls", *later], "needs the host's address")
            return
        raw = self.check("tcp", lambda: self.tcp(host, port, infos, proxy))
        if not raw:
            self.skip(["tls", *later], "needs a TCP connection")
            return
        try:
            if secure:
                tls = self.check("tls", lambda: self.tls(raw, host))
                if tls:
                    with contextlib.suppress(OSError):
                        tls.close()
                else:
                    self.skip(later, "needs a trusted TLS connection")
                    return
            else:
                self.skip(["tls"], f"{urlsplit(url).scheme}:// is unencrypted")
        finally:
            with contextlib.suppress(OSError):
                raw.close()  # the probe's connection; the bot opens its own
        if not configured:
            self.skip(later, "needs the token and API key")
            return
        bot = self.check("socket.io", lambda: self.socketio(url))
        if not bot:
            self.skip(["listen", "send"], "needs a Socket.IO connection")
            return
        if args.room is None:
            self.skip(["listen"], "pass --room ROOM to check listening (and the API key)")
        elif not self.check("listen", lambda: self.listen(bot, args.room)):
            self.skip(["send"], "needs listening to work")
            return
        if args.send is None:
            self.skip(["send"], "pass --send TEXT (with --room) to post a test message")
        else:
            self.check("send", lambda: self.send(bot, args.room, args.send))


def _cmd_doctor(args: argparse.Namespace, secrets_: _Secrets) -> int:
    return _Doctor(args, secrets_).run()


_COMMANDS = {
    "demo": _cmd_demo,
    "serve": _cmd_serve,
    "listen": _cmd_listen,
    "send": _cmd_send,
    "post": _cmd_post,
    "doctor": _cmd_doctor,
}


# --------------------------------------------------------------------------- entry point


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``watchers-bot`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Never raises: errors are reported as one ``watchers-bot: error: ...`` line
    on stderr and turned into exit codes (1 error, 2 usage, 130 Ctrl-C,
    143 SIGTERM).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    secrets_ = _Secrets()

    def fail(code: int, text: str) -> int:
        with contextlib.suppress(Exception):
            print(f"{PROG}: error: {_one_line(secrets_.mask(text))}", file=sys.stderr,
                  flush=True)
        return code

    try:
        with _logging_to_stderr(args.verbose, args.quiet), _sigterm_raises():
            return _COMMANDS[args.command](args, secrets_)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except _Terminated:
        with contextlib.suppress(Exception):
            print(f"{PROG}: terminated", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except (_Failure, WatchersError) as exc:
        return fail(EXIT_ERROR, str(exc) or type(exc).__name__)
    except (ValueError, TypeError) as exc:  # the library's argument checks
        return fail(EXIT_USAGE, str(exc) or type(exc).__name__)
    except TimeoutError as exc:
        return fail(EXIT_ERROR, str(exc) or "timed out")
    except Exception as exc:
        if args.verbose >= 2:
            import traceback

            with contextlib.suppress(Exception):
                sys.stderr.write(secrets_.mask(traceback.format_exc()))
        hint = "" if args.verbose >= 2 else " (run with -vv for details)"
        return fail(EXIT_ERROR, f"unexpected {type(exc).__name__}: {exc}{hint}")
