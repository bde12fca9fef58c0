"""Kept while ``cli.py`` imports it: the control API is :mod:`watchers_bot.emulator.control`."""

from .emulator.control import PREFIX, ControlError, call, control_for, page_url

__all__ = ["PREFIX", "ControlError", "call", "control_for", "page_url"]
