"""Tests of the wire format (watchers_bot/protocol/)."""
