"""Tests of the Flask and Django integrations (watchers_bot/contrib/), and of the Bot
API they stand on (run_in_thread, health, state listeners)."""
