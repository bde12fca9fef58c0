"""The ``watchers-bot`` argument parser, and the exit codes.

Imports only the standard library and :mod:`watchers_bot.settings`: parsing
(``--help``, ``--version``, a usage error) never loads the client.
"""

from __future__ import annotations

import argparse
from typing import Dict, Tuple

from .. import __version__, settings
from ..sharding import Shard

__all__ = [
    "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE", "PROG",
    "Failure", "build_parser", "command_parser",
]

PROG = "watchers-bot"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Failure(Exception):
    """An error already phrased for the user (exit 1)."""


# --------------------------------------------------------------------------- argument types


def seconds(text: str) -> float:
    """An option's number of seconds (the library's own rule: positive, finite, bounded)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return settings.seconds(value, "the value")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds (at most {settings.MAX_TIMEOUT:g}), "
            f"got {text!r}") from None


def positive_int(text: str) -> int:
    """A count: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def shard(text: str) -> Shard:
    """A shard spec ``I/N`` (see :class:`watchers_bot.sharding.Shard`)."""
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port(text: str) -> int:
    """A TCP port, 0 for any free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), got {text!r}")
    return value


# --------------------------------------------------------------------------- parser


#: How ``--help`` shows the options of the settings that are Bot arguments.
_OPTION_HELP = {
    "TOKEN": ("T", "bearer token"),
    "API_KEY": ("K", "project API key"),
    "BOT_ID": ("ID", "the bot's user id"),
    "REGION": ("R", "eu (default), us, sa, hk or za"),
    "URL": ("URL", "explicit endpoint, overrides --region"),
}


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    """--token, --api-key, --bot-id, --region and --url: the options of the settings table."""
    group = parser.add_argument_group(
        "connection",
        "--token, --api-key, --bot-id, --region and --url fall back to their WATCHERS_* "
        "environment variables (prefer the variables for secrets: arguments show in the "
        "process list)",
    )
    for setting in settings.BOT_SETTINGS:
        metavar, text = _OPTION_HELP[setting.key]
        group.add_argument(setting.option, metavar=metavar, help=f"{text} [{setting.env}]")
    group.add_argument(
        "--connect-timeout", metavar="S", type=seconds, default=None,
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
    return _build()[0]


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` (its ``--help`` is generated into the docs)."""
    return _build()[1][name]


def _build() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
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
        "--messages", metavar="N", type=positive_int, default=3,
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
        "--port", type=port, default=8765, help="port (default 8765; 0 picks a free one)"
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
        "--ping-interval", metavar="S", type=seconds, default=25.0,
        help="Engine.IO ping interval in seconds (default 25)",
    )
    serve.add_argument(
        "--ping-timeout", metavar="S", type=seconds, default=20.0,
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
        "--count", metavar="N", type=positive_int, default=None,
        help="stop after N messages",
    )
    listen.add_argument(
        "--timeout", metavar="S", type=seconds, default=None,
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
        "--shard", metavar="I/N", type=shard, default=None,
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
        "--timeout", metavar="S", type=seconds, default=None,
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
        "--timeout", metavar="S", type=seconds, default=10.0,
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
        "--timeout", metavar="S", type=seconds, default=10.0,
        help="seconds each check may take (default 10)",
    )
    _add_credentials(doctor)
    return parser, {"demo": demo, "serve": serve, "listen": listen, "send": send, "post": post,
                    "doctor": doctor}
