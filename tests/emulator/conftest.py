"""Fixtures of the playground tests: an emulator of their own and an echo bot on it."""

from __future__ import annotations

import pytest

from tests.helpers import KEY, TOKEN, make_bot
from watchers_bot.emulator import Emulator


def echo(msg):
    """What the echo bot answers to ``msg``."""
    return "echo: " + msg.text


@pytest.fixture
def emu():
    with Emulator(tokens=[TOKEN], api_keys=[KEY]) as emulator:
        yield emulator


@pytest.fixture
def echo_bot(emu):
    """A bot ``echo-bot`` answering ``echo: <text>`` in ``room-1``."""
    bot = make_bot(emu, bot_id="echo-bot")
    bot.connect()
    bot.listen("room-1")
    worker = bot.run_in_thread(lambda msg: bot.reply(msg, echo(msg)))
    yield bot
    worker.stop()
    bot.close()
