"""What every CLI test stands on: an environment without the user's WATCHERS_* settings or
proxies, and an emulator that accepts the test module's ``TOKEN`` and ``API_KEY``."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from watchers_bot.emulator import Emulator


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WATCHERS_") or name.lower() in ("http_proxy", "https_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An emulator in this process accepting the test module's TOKEN and API_KEY (each module
    has its own, so a leaked secret in one module's output names the module)."""
    server = Emulator(tokens=[request.module.TOKEN], api_keys=[request.module.API_KEY]).start()
    try:
        yield server
    finally:
        server.stop()
