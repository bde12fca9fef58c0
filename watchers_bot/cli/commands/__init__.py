"""The commands of ``watchers-bot`` but ``doctor``: one module each, with ``run(args, secrets)``.

:func:`watchers_bot.cli.main` imports a command's module only to run it, and
each imports the client (or the emulator) itself: ``--help`` and
``--version`` load neither.
"""
