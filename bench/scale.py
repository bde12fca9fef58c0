"""The scale-out curve: messages/s through the Celery bridge with 1, 2, 4 and 8 workers.

    python -m bench.scale                 # sleep 50 ms and no-op handlers, 1/2/4/8 workers
    python -m bench.scale --workers 1 2 --messages 200 --json out.json

Real parts on loopback: a redis-server on a free port, the emulator (in this process), one
bridge listener process, and one ``celery worker --pool prefork -c N`` (N worker processes,
each with its own bot). 50 rooms; every run first warms the workers up, then posts all its
messages at once and times from the first post to the last reply the server accepted, and
checks every message was answered once and each room in order. Needs redis-server and the
``celery`` extra. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from celery_cluster import (  # noqa: E402
    cluster_env,
    kill_group,
    start_listener,
    start_worker,
    stop_all,
)

from watchers_bot.emulator import Emulator  # noqa: E402

TOKEN, KEY = "scale-token", "scale-key"
ROOMS = [f"room-{n}" for n in range(50)]


def _replies(emu: Emulator) -> List[Any]:
    return [m for m in emu.sent if m.text.startswith("re:")]


def run_once(redis_url: str, workers: int, sleep: float, messages: int,
             log_dir: str) -> Dict[str, Any]:
    with Emulator(tokens=[TOKEN], api_keys=[KEY], project="bench") as emu:
        env = cluster_env(redis_url, emu, TOKEN, KEY, sleep=sleep, lock_ttl=10.0)
        procs = [start_worker(f"w{workers}", env, concurrency=workers, log_dir=log_dir),
                 start_listener(f"l{workers}", env, ROOMS, log_dir=log_dir)]
        try:
            emu.wait_for(lambda e: all(e.listeners(r) for r in ROOMS), 60, what="the listener")
            for room in ROOMS:  # warm-up: every pool child connects its bot
                emu.post(room, f"{room}#warm")
            emu.wait_for(lambda e: len(_replies(e)) >= len(ROOMS), 120, what="the warm-up")
            emu.clear_sent()
            rounds = max(1, messages // len(ROOMS))
            started = time.monotonic()
            for i in range(rounds):
                for room in ROOMS:
                    emu.post(room, f"{room}#{i}")
            total = rounds * len(ROOMS)
            budget = 60.0 + total * max(sleep, 0.005) * 2
            emu.wait_for(lambda e: len(_replies(e)) >= total, budget, what=f"{total} replies")
            got = _replies(emu)
            elapsed = got[total - 1].at - started
            per_room: Dict[str, List[int]] = collections.defaultdict(list)
            for m in got:
                room, _, seq = m.text[3:].partition("#")
                per_room[room].append(int(seq))
            in_order = all(per_room[r] == list(range(rounds)) for r in ROOMS)
            return {"workers": workers, "sleep_ms": sleep * 1000, "messages": total,
                    "seconds": round(elapsed, 3), "per_second": round(total / elapsed, 1),
                    "answered_once_in_order": in_order and len(got) == total}
        finally:
            stop_all(procs)
            for p in procs:
                kill_group(p)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--sleep-ms", type=float, nargs="+", default=[50.0, 0.0])
    parser.add_argument("--messages", type=int, default=400,
                        help="messages per run (rounded down to a multiple of 50 rooms)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    from redis_server import start_redis

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        server = start_redis(scratch)
        try:
            for sleep_ms in args.sleep_ms:
                for workers in args.workers:
                    server.client().flushall()
                    row = run_once(server.url, workers, sleep_ms / 1000, args.messages, scratch)
                    results.append(row)
                    print(f"sleep {sleep_ms:>4g} ms  workers {workers}  "
                          f"{row['messages']} msgs in {row['seconds']:.2f} s  "
                          f"{row['per_second']:>7.1f} msg/s  "
                          f"once+ordered: {row['answered_once_in_order']}", flush=True)
        finally:
            server.process.kill()
            server.process.wait(timeout=10)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "python": platform.python_version(), "machine": platform.machine(),
            "results": results}, indent=2) + "\n")
    return 0 if all(r["answered_once_in_order"] for r in results) else 1


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the workers, listener and redis-server are ended.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
