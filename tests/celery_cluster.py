"""Real Celery worker processes and bridge listener processes for the bridge tests and bench."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# The credentials every worker, listener and emulator of the bridge tests share.
TOKEN, KEY = "cluster-token", "cluster-key"


def cluster_env(redis_url, emulator, token, key, *, sleep=0.0, lock_ttl=2.0):
    """The environment of every worker and listener process of one test."""
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


def spawn(args, name, env, log_dir, cwd=TESTS):
    # Its own session (process group), so one killpg takes a worker and its pool children.
    log = open(os.path.join(log_dir, f"{name}.log"), "wb") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen([sys.executable, *args], cwd=str(cwd), env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_dir:
            log.close()  # the child has its own copy


def start_worker(name, env, *, concurrency=1, log_dir=None):
    """``celery worker --pool prefork`` with ``concurrency`` children."""
    return spawn(["-m", "celery", "-A", "celery_bot_app", "worker", "--pool", "prefork",
                   "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
                  name, env, log_dir)


def start_listener(name, env, rooms, *, shard=None, log_dir=None):
    """A bridge listener process (``python -m watchers_bot.contrib.celery``) on ``rooms``."""
    args = ["-m", "watchers_bot.contrib.celery", "celery_bot_app:bridge", *rooms,
            "--sweep-interval", "0.5"] + (["--shard", shard] if shard else [])
    return spawn(args, name, env, log_dir)


def kill_group(process, sig=signal.SIGKILL, timeout=15.0):
    """Send ``sig`` to the process's group and wait (bounded) for it to end."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def stop_all(processes):
    """SIGTERM everyone still running, then SIGKILL whoever is left after a few seconds."""
    for p in processes:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            kill_group(p)
