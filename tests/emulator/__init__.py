"""Tests of the local emulator (watchers_bot/emulator/)."""
