"""Kept for ``docs/api.rst`` and old imports: transcripts live in
:mod:`watchers_bot.emulator.transcript`."""

from .emulator.transcript import FORMAT, Transcript, Turn, replay

__all__ = ["FORMAT", "Transcript", "Turn", "replay"]
