"""Tests of the ``watchers-bot`` command line (watchers_bot/cli/)."""
