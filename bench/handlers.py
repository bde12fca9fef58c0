"""Handler pool benchmark: the per-room worker pool against a bare loop, and its scaling.

    python -m bench.handlers            # full (about 20 s)
    python -m bench.handlers --quick    # about 5 s

Both workloads fill the bot's inbox first (the emulator posts, the bot queues) and then
time only the consumer, so the emulator's posting speed does not enter the figures:

- ``noop``: a handler that does nothing, through ``run_in_thread(workers=4)``, vs a bare
  ``for msg in bot.messages()`` loop; the target is a ratio of at least 0.5.
- ``slow``: a 50 ms handler (standing for a model call) over 16 rooms at 1, 2, 4 and 8
  workers; the target is throughput close to linear in the workers (8 rooms' worth of
  messages per worker at most, so 16 rooms keep 8 workers busy).

Ratios are of the same run.  Loopback, emulator in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

from watchers_bot import Bot
from watchers_bot.emulator import Emulator

TOKEN = "bench-token-5e1f"
API_KEY = "bench-key-9c27"
ROOMS = [f"room-{i}" for i in range(16)]

CONFIGS = {
    "full": dict(noop=40000, reps=3, per_room=8, workers=(1, 2, 4, 8), sleep=0.05),
    "quick": dict(noop=10000, reps=1, per_room=4, workers=(1, 2, 4, 8), sleep=0.05),
    "smoke": dict(noop=200, reps=1, per_room=1, workers=(1, 2), sleep=0.01),
}
TIMEOUT = 120.0


def _fill(emu: Emulator, bot: Bot, total: int) -> None:
    """Queue ``total`` messages spread over ROOMS in the bot's inbox, then return."""
    start = bot.stats.delivered
    per_room, extra = divmod(total, len(ROOMS))
    for i, room in enumerate(ROOMS):
        n = per_room + (1 if i < extra else 0)
        if n:
            emu.post_many(room, (f"{room}:{k}" for k in range(n)))
    deadline = time.monotonic() + TIMEOUT
    while bot.stats.delivered - start < total:
        if time.monotonic() > deadline:
            raise RuntimeError("the inbox did not fill in time")
        time.sleep(0.005)


def _bare(bot: Bot, total: int) -> float:
    t0 = time.perf_counter()
    for seen, _msg in enumerate(bot.messages(timeout=TIMEOUT), 1):
        if seen == total:
            break
    return time.perf_counter() - t0


def _post(emu: Emulator, total: int) -> None:
    per_room, extra = divmod(total, len(ROOMS))
    for i, room in enumerate(ROOMS):
        n = per_room + (1 if i < extra else 0)
        if n:
            emu.post_many(room, (f"{room}:{k}" for k in range(n)))


def _bare_live(emu: Emulator, bot: Bot, total: int) -> float:
    """From the first post to the last message read, the loop running before the posts."""
    done = threading.Event()

    def loop() -> None:
        for seen, _msg in enumerate(bot.messages(timeout=TIMEOUT), 1):
            if seen == total:
                break
        done.set()

    thread = threading.Thread(target=loop)
    thread.start()
    t0 = time.perf_counter()
    _post(emu, total)
    if not done.wait(TIMEOUT):
        raise RuntimeError("the loop did not finish in time")
    elapsed = time.perf_counter() - t0
    thread.join(10)
    return elapsed


def _pool_live(emu: Emulator, bot: Bot, total: int, workers: int) -> float:
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def counted(msg: Any) -> None:
        with lock:
            count[0] += 1
            if count[0] == total:
                done.set()

    handle = bot.run_in_thread(counted, workers=workers, backlog=0)
    t0 = time.perf_counter()
    _post(emu, total)
    if not done.wait(TIMEOUT):
        raise RuntimeError("the pool did not finish in time")
    elapsed = time.perf_counter() - t0
    handle.stop(10)
    return elapsed


def _pool(bot: Bot, total: int, workers: int, handler: Callable[[Any], None]) -> float:
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def counted(msg: Any) -> None:
        handler(msg)
        with lock:
            count[0] += 1
            if count[0] == total:
                done.set()

    t0 = time.perf_counter()
    handle = bot.run_in_thread(counted, workers=workers, backlog=0)
    if not done.wait(TIMEOUT):
        raise RuntimeError("the pool did not finish in time")
    elapsed = time.perf_counter() - t0
    handle.stop(10)
    return elapsed


def run(config: str = "full", log: Callable[[str], None] = print) -> Dict[str, Any]:
    cfg = CONFIGS[config]
    result: Dict[str, Any] = {"config": config, "cores": os.cpu_count()}
    with Emulator(tokens=[TOKEN], api_keys=[API_KEY]) as emu:
        bot = Bot(TOKEN, API_KEY, "bench-bot", url=emu.url, max_queue=0)
        with bot:
            bot.listen(*ROOMS)
            n = cfg["noop"]
            bare: List[float] = []
            pooled: List[float] = []
            for _ in range(cfg["reps"]):  # interleaved, so drift hits both alike
                _fill(emu, bot, n)
                bare.append(n / _bare(bot, n))
                _fill(emu, bot, n)
                pooled.append(n / _pool(bot, n, 4, lambda msg: None))
            result["noop"] = {"bare_msg_s": statistics.median(bare),
                              "pool4_msg_s": statistics.median(pooled)}
            result["noop"]["ratio"] = result["noop"]["pool4_msg_s"] / result["noop"]["bare_msg_s"]
            log(f"no-op, inbox filled first: bare loop {result['noop']['bare_msg_s']:,.0f} "
                f"msg/s, pool of 4 {result['noop']['pool4_msg_s']:,.0f} msg/s, "
                f"ratio {result['noop']['ratio']:.2f} (target >= 0.5)")
            bare_live: List[float] = []
            pooled_live: List[float] = []
            for _ in range(cfg["reps"]):
                bare_live.append(n / _bare_live(emu, bot, n))
                pooled_live.append(n / _pool_live(emu, bot, n, 4))
            live = result["noop_live"] = {"bare_msg_s": statistics.median(bare_live),
                                          "pool4_msg_s": statistics.median(pooled_live)}
            live["ratio"] = live["pool4_msg_s"] / live["bare_msg_s"]
            log(f"no-op, posted while consuming: bare loop {live['bare_msg_s']:,.0f} msg/s, "
                f"pool of 4 {live['pool4_msg_s']:,.0f} msg/s, ratio {live['ratio']:.2f} "
                "(target >= 0.5)")

            pause = cfg["sleep"]
            total = cfg["per_room"] * len(ROOMS)
            slow: Dict[int, float] = {}
            for workers in cfg["workers"]:
                rates = []
                for _ in range(cfg["reps"]):
                    _fill(emu, bot, total)
                    rates.append(total / _pool(bot, total, workers,
                                               lambda msg: time.sleep(pause)))
                slow[workers] = statistics.median(rates)
            base = slow[cfg["workers"][0]]
            result["slow"] = {
                str(w): {"msg_s": r, "speedup": r / base, "ideal": w / cfg["workers"][0]}
                for w, r in slow.items()
            }
            for w, r in slow.items():
                log(f"{pause * 1000:.0f} ms handler, 16 rooms, {w} worker(s): {r:,.1f} msg/s, "
                    f"speedup {r / base:.2f} (ideal {w / cfg['workers'][0]:.0f})")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handlers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = run("quick" if args.quick else "full")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
