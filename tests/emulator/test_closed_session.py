"""An answer for a session that closed while it was being made (emulator/server.py).

python-engineio's ``send_packet`` looks a session up, then sends to it; a drop, a
kick or a vanished client can close the session in between.  Upstream's socket
then raises ``SocketIsClosedError`` in the thread that answered (a handler's
thread after a delay fault): an unhandled exception in one of the emulator's
threads, seen once in CI under test_faults' drops.  The interleaving is forced
here by closing the session right after its lookup.
"""

from __future__ import annotations

import threading
from typing import Any, List

import engineio
import pytest

from tests.helpers import make_bot, wait_until
from watchers_bot import ConnectionLost
from watchers_bot.emulator import Emulator

pytestmark = pytest.mark.timeout(30)

SEND = "external/send"


def test_an_answer_to_a_session_closed_after_its_lookup_is_dropped_quietly(
        emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    uncaught: List[Any] = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    close_next = threading.Event()
    lookup = engineio.Server._get_socket

    def closed_after_lookup(server: Any, sid: str) -> Any:
        engine_socket = lookup(server, sid)
        if close_next.is_set():
            close_next.clear()
            engine_socket.close(wait=False, abort=True)
        return engine_socket

    monkeypatch.setattr(engineio.Server, "_get_socket", closed_after_lookup)
    bot = make_bot(emu, ack_timeout=3.0)
    try:
        bot.connect()
        # in a handler's thread, as the delay fault runs them; no listener of the
        # room, so the only packet the server looks the bot up for is the ack
        emu.set_ack(SEND, "delay", delay=0.2, times=1)
        close_next.set()
        with pytest.raises(ConnectionLost):
            bot.send("r", "answered to nobody", timeout=3.0)
        assert not close_next.is_set(), "the ack's lookup did not happen"
        # the bot reconnects to the same emulator, which still answers
        wait_until(lambda: bot.connected, timeout=10, what="reconnected")
        bot.send("r", "answered", timeout=3.0)
    finally:
        bot.close()
    assert [u.exc_type.__name__ for u in uncaught] == []
