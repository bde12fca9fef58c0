"""Tests of examples/ run as users run them, and what their output shows (logging defaults)."""
