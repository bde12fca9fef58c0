"""Tests of the pytest plugin (watchers_bot/testing.py)."""
