"""Statistical repro (not for the suite): 100 wss:// connects in a row per test, one TLS emulator.

Copy it into tests/transport/ to run it (it needs tests/conftest.py's ``ca`` and helpers)::

    cp tests/scripts/repro_wss_connects.py tests/transport/test_zz_repro.py
    REPRO_REPS=5 REPRO_WATCH=1 python -m pytest -q -s tests/transport/test_zz_repro.py

``REPRO_REPS`` runs of 100 connects; ``REPRO_WATCH=1`` installs tests/scripts/sslwatch.py and
prints every close of an SSLSocket made while another thread was inside an SSL call on it.
Before the fix: 31 such closes in 300 connects (werkzeug's request thread closing while
simple-websocket's reader wrote the close reply); after it: none in 500.
"""
from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest
from helpers import tls_context

from watchers_bot import Bot
from watchers_bot.emulator import Emulator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import sslwatch

if os.environ.get("REPRO_WATCH"):
    sslwatch.install()

TOKEN = "tls-serial-token-77c1"
API_KEY = "tls-serial-key-5d0e"
WAIT = 10.0


@pytest.fixture
def tls_emu(ca: object) -> Iterator[Emulator]:
    server = Emulator(tokens=[TOKEN], api_keys=[API_KEY],
                      ssl_context=tls_context(ca, "127.0.0.1"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("rep", range(int(os.environ.get("REPRO_REPS", "1"))))
def test_many_wss_connects_in_a_row_each_hold(tls_emu: Emulator, rep: int) -> None:
    url = tls_emu.url.replace("https://", "wss://", 1)
    try:
        for i in range(100):
            with Bot(TOKEN, API_KEY, "bot", url=url, verify_ssl=False, connect_timeout=WAIT,
                     ack_timeout=WAIT) as bot:
                bot.listen(f"room-{i}")
                assert bot.stats.reconnects == 0
    finally:
        if sslwatch.EVENTS:
            for ev in sslwatch.EVENTS[:5]:
                print("OVERLAP", ev[:4], "\n", ev[4], file=sys.stderr)
            print("OVERLAPS", len(sslwatch.EVENTS), file=sys.stderr)
            sslwatch.EVENTS.clear()
