"""Tests of the WATCHERS_* settings (watchers_bot/settings.py) and of the checks a Bot
makes of its configuration."""
