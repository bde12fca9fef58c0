"""The ``watchers-bot`` command line.

::

    watchers-bot demo [--messages N]            # an echo bot and a human, on an embedded emulator
    watchers-bot serve [--port 8765] ...        # run the emulator until Ctrl-C
    watchers-bot listen ROOM [ROOM ...]         # print messages as JSON lines
    watchers-bot send ROOM TEXT                 # post as the bot (TEXT "-" reads stdin)

``listen`` and ``send`` take their credentials from ``--token``, ``--api-key``,
``--bot-id``, ``--region`` and ``--url``, falling back to the ``WATCHERS_*``
environment variables (prefer the variables: command-line arguments are
visible to other users of the machine).

Exit codes: 0 success, 1 error, 2 usage error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).  ``serve`` exits 0 on Ctrl-C and SIGTERM: that is
how it is meant to stop.  Errors are one line on stderr, never a traceback
(``-vv`` adds it for unexpected errors), and never contain a token or API key.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import secrets
import shlex
import signal
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import __version__
from ._logging import RedactingFilter, redact
from .bot import Bot
from .errors import BotClosed, WatchersError

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
        "each option falls back to its WATCHERS_* environment variable "
        "(prefer the variables for secrets: arguments show in the process list)",
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
    _add_credentials(listen)

    send = commands.add_parser(
        "send", parents=[common], help="post a message as the bot",
        description="Post TEXT in ROOM as the bot and wait for the server's acknowledgement.",
    )
    send.add_argument("room", metavar="ROOM", help="room id")
    send.add_argument("text", metavar="TEXT", help="the message; '-' reads it from stdin")
    send.add_argument(
        "--timeout", metavar="S", type=_positive_float, default=None,
        help="seconds to wait for the acknowledgement (default 10)",
    )
    _add_credentials(send)
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
    # python-socketio/engineio log every packet at INFO, and warn "WebSocket
    # connection was closed" even on a normal close(): show them only at -vv;
    # the library's own warnings (lost links, reconnects) tell what matters.
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
    return Bot.from_env(**overrides)


# --------------------------------------------------------------------------- commands


def _cmd_listen(args: argparse.Namespace, secrets_: _Secrets) -> int:
    with _bot_from_args(args, secrets_) as bot:
        bot.listen(*args.rooms)
        rooms = ", ".join(args.rooms)
        _status(args, f"listening to {rooms} on {bot.url} (Ctrl-C to stop)")
        for count, msg in enumerate(bot.messages(timeout=args.timeout), 1):
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
            finally:
                bot.close()
                worker.join(DEMO_STEP_TIMEOUT)
    if echo_errors:
        raise _Failure(f"demo failed: the echo bot stopped: {echo_errors[0]}")
    print(f"# {len(lines)} message(s) echoed; emulator stopped", flush=True)
    return EXIT_OK


def _serve_banner(emu: Any, tokens: List[str], api_keys: List[str]) -> str:
    url = emu.url
    lines = [
        f"watchers-bot emulator listening on {url} (project {emu.project!r})",
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
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


_COMMANDS = {
    "demo": _cmd_demo,
    "serve": _cmd_serve,
    "listen": _cmd_listen,
    "send": _cmd_send,
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
