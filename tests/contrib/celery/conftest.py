"""What every Celery bridge test stands on: a Redis server, an emulator with the cluster's
credentials, and a list of started processes that is killed afterwards."""

import pytest
from celery_cluster import KEY, TOKEN, stop_all
from redis_server import redis_server  # noqa: F401  (a fixture, offered to the tests here)

from watchers_bot.emulator import Emulator


@pytest.fixture
def emu():
    with Emulator(tokens=[TOKEN], api_keys=[KEY], project="proj") as emulator:
        yield emulator


@pytest.fixture
def procs():
    """Processes a test started (workers, listeners); all killed when it ends."""
    started = []
    yield started
    stop_all(started)
