"""The ``watchers-bot`` command line: :func:`main`.

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

Layout: :mod:`.parser` (the options and exit codes), :mod:`.terminal` (output,
masking), one module per command in :mod:`.commands`, and :mod:`.doctor`.
This module imports no command: each is imported to run, and imports the
client itself, so ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import List, Optional

from ..errors import WatchersError
from ..sigterm import Terminated, sigterm_raises
from .parser import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    Failure,
    build_parser,
)
from .terminal import Secrets, logging_to_stderr, one_line

__all__ = ["build_parser", "main"]

#: Each command and the module (relative to this package) whose ``run(args, secrets)`` runs it.
COMMANDS = {
    "demo": ".commands.demo",
    "serve": ".commands.serve",
    "listen": ".commands.listen",
    "send": ".commands.send",
    "post": ".commands.post",
    "doctor": ".doctor",
}


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
    secrets = Secrets()

    def fail(code: int, text: str) -> int:
        with contextlib.suppress(Exception):
            print(f"{PROG}: error: {one_line(secrets.mask(text))}", file=sys.stderr,
                  flush=True)
        return code

    try:
        with logging_to_stderr(args.verbose, args.quiet), sigterm_raises():
            command = importlib.import_module(COMMANDS[args.command], __name__)
            return command.run(args, secrets)  # type: ignore[no-any-return]
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Terminated:
        with contextlib.suppress(Exception):
            print(f"{PROG}: terminated", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except (Failure, WatchersError) as exc:
        return fail(EXIT_ERROR, str(exc) or type(exc).__name__)
    except (ValueError, TypeError) as exc:  # the library's argument checks
        return fail(EXIT_USAGE, str(exc) or type(exc).__name__)
    except TimeoutError as exc:
        return fail(EXIT_ERROR, str(exc) or "timed out")
    except Exception as exc:
        if args.verbose >= 2:
            import traceback

            with contextlib.suppress(Exception):
                sys.stderr.write(secrets.mask(traceback.format_exc()))
        hint = "" if args.verbose >= 2 else " (run with -vv for details)"
        return fail(EXIT_ERROR, f"unexpected {type(exc).__name__}: {exc}{hint}")
