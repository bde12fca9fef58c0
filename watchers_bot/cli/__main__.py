"""``python -m watchers_bot.cli``: the ``watchers-bot`` command line."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
