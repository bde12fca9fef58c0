"""An emulator restart while a bot is connected: the bot reconnects, it does not give up.

Through the public API only (Bot + Emulator) on real sockets.  Connection
attempts during the restart meet a closed port or a 503, never an auth
refusal, so the bot must treat them as transient.
"""

from __future__ import annotations

import threading
from typing import List, Tuple

import pytest
from helpers import make_bot, wait_until

from watchers_bot import Bot
from watchers_bot.emulator import Emulator


@pytest.mark.parametrize("drop", [False, True], ids=["graceful", "crash"])
def test_a_restart_while_connected_ends_in_a_reconnect_not_a_failure(emulator: Emulator, drop):
    bot: Bot = make_bot(emulator)
    changes: List[Tuple[str, str]] = []
    lock = threading.Lock()

    @bot.on_state_change
    def record(old: str, new: str) -> None:
        with lock:
            changes.append((old, new))

    with bot:
        bot.listen("r")
        emulator.wait_for_listeners("r")
        refused_before = emulator.refused
        # down long enough for several reconnect attempts to meet the restart
        emulator.restart(down_for=1.0, drop=drop)
        wait_until(lambda: bot.connected and bot.stats.reconnects >= 1, 15, "the reconnect")
        assert bot.state == "connected"
        bot.send("r", "after the restart", timeout=5)
        assert emulator.wait_for_sent(1)[-1].text == "after the restart"
        emulator.wait_for_listeners("r")  # its room is listened to again
        emulator.post("r", "to the bot")
        assert bot.receive(timeout=5).text == "to the bot"
        assert emulator.refused == refused_before  # no attempt was refused as unauthorized
        with lock:
            seen = list(changes)
    assert all(new != "failed" for _, new in seen), seen
    assert any(new == "reconnecting" for _, new in seen), seen
