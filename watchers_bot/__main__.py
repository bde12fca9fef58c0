"""``python -m watchers_bot``: the ``watchers-bot`` command line (see :mod:`watchers_bot.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
