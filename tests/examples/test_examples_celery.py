"""examples/celery_deploy/tasks.py with a real redis-server, a real ``celery worker`` and the
listener command, as its README says to run it, against the emulator."""

import os
from pathlib import Path

import pytest
from redis_server import redis_server  # noqa: F401  (a fixture)
from requirements import require_module

require_module("celery", extra="celery", what="the Celery example test")

from celery_cluster import cluster_env, spawn, stop_all  # noqa: E402

from watchers_bot.emulator import Emulator  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "celery_deploy"


@pytest.mark.timeout(60)
def test_the_example_deployment_answers(redis_server, tmp_path):  # noqa: F811
    procs = []
    with Emulator(tokens=["ex-token"], api_keys=["ex-key"]) as emu:
        env = cluster_env(redis_server.url, emu, "ex-token", "ex-key")
        env["REDIS_URL"] = redis_server.url
        env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), str(EXAMPLE.parent.parent)])
        try:
            procs.append(spawn(["-m", "celery", "-A", "tasks", "worker", "-c", "2",
                                "--without-gossip", "--without-mingle", "-l", "WARNING"],
                               "worker", env, str(tmp_path), cwd=str(EXAMPLE)))
            procs.append(spawn(["-m", "watchers_bot.contrib.celery", "tasks:bridge", "room-1",
                                "room-2", "--shard", "0/1"],
                               "listener", env, str(tmp_path), cwd=str(EXAMPLE)))
            emu.wait_for_listeners("room-1", 1, timeout=30)
            emu.wait_for_listeners("room-2", 1, timeout=30)
            emu.post("room-1", "/ping", user_id="alice")
            emu.post("room-2", "hello", user_id="bob")
            emu.wait_for_sent(2, timeout=30)
            assert sorted((m.room_id, m.text) for m in emu.sent) == [
                ("room-1", "pong"), ("room-2", "echo: hello")]
        finally:
            stop_all(procs)
