"""A real ``redis-server`` for tests: a free loopback port, its own scratch dir, no persistence.

Import the ``redis_server`` fixture into a test module (``from tests.redis_server import
redis_server``) or a conftest. The server is SIGKILLed at teardown: nothing it held survives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Iterator

import pytest
from requirements import require, require_module


class RedisServer:
    """A running redis-server: its ``url``, ``port`` and process."""

    def __init__(self, port: int, process: "subprocess.Popen[bytes]") -> None:
        self.port = port
        self.process = process
        self.url = f"redis://127.0.0.1:{port}/0"

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(scratch: str, timeout: float = 10.0, port: int = 0) -> RedisServer:
    """Start redis-server in ``scratch`` (on ``port``, else a free one); return once it
    answers PING."""
    program = require("redis-server", what="the Celery/Redis tests")
    require_module("redis", extra="celery", what="the Celery/Redis tests")
    import redis

    port = port or _free_port()
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", scratch, "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=scratch,
    )
    server = RedisServer(port, process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return server
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.02)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, killed after it."""
    server = start_redis(str(tmp_path_factory.mktemp("redis")))
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
