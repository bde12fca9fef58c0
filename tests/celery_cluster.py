"""Real Celery worker processes and in-process listeners for the bridge tests and the bench."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from watchers_bot import Bot

TESTS = Path(__file__).resolve().parent


def worker_env(redis_url, emulator, token, key, *, sleep=0.0, lock_ttl=3.0):
    env = dict(os.environ)
    env.update({
        "WATCHERS_TEST_REDIS": redis_url, "WATCHERS_TEST_SLEEP": str(sleep),
        "WATCHERS_TEST_LOCK_TTL": str(lock_ttl),
        "WATCHERS_TOKEN": token, "WATCHERS_API_KEY": key, "WATCHERS_BOT_ID": "bot-1",
        "WATCHERS_URL": emulator.url, "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
    })
    env.pop("WATCHERS_REGION", None)
    return env


def start_worker(name, env, concurrency=1, log_dir=None):
    """``celery worker --pool prefork`` in its own process group (so SIGKILL takes it all)."""
    # The file stays open for the worker's life; the test's tmp dir removes it.
    log = open(os.path.join(log_dir, f"{name}.log"), "wb") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_bot_app", "worker", "--pool", "prefork",
         "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "WARNING"],
        cwd=str(TESTS), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def kill_group(process, sig=signal.SIGKILL):
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    process.wait(timeout=15)


class Listener:
    """A bridge listener on its own thread with its own bot."""

    def __init__(self, bridge, emulator, token, key, rooms, shard=None):
        self.bot = Bot(token, key, "bot-1", url=emulator.url, connect_timeout=5.0,
                       ack_timeout=5.0, reconnect_delay=0.05, reconnect_delay_max=0.5,
                       max_queue=None)
        self.stop = threading.Event()
        self.error = None
        self.forwarded = 0
        self._args = (bridge, rooms, shard)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        bridge, rooms, shard = self._args
        try:
            self.forwarded = bridge.listen(self.bot, rooms, shard=shard, stop=self.stop,
                                           sweep_interval=1.0)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)
        self.bot.close()
