"""Many rooms: a bot listening to N rooms, and listening to them again after a drop.

    python -m bench.rooms               # N = 10,000, 3 repetitions
    python -m bench.rooms --quick       # N = 2,000, 1 repetition
    python -m bench.rooms --json out.json

On both servers, the emulator (in this process, as ``python -m bench`` builds it) and
npm's socket.io server (``bench/node_server.js``, when Node.js and ``npm ci`` are there),
with the clients in child processes (``bench/driver.py``), each workload on a new
connection and fresh room names:

- ``args``: ``bot.listen(*rooms)``, the Bot's pipelined multi-room listen, timed from
  the call until it returns (every room acknowledged);
- ``loop``: ``for room in rooms: bot.listen(room)``, one round trip per room;
- ``raw``: raw python-socketio, ``emit("external/listen", callback=...)`` with 256 in
  flight, the way ``python -m bench`` pipelines sends;
- ``relisten``: with the ``args`` bot's N rooms listened, the server cuts every link
  (``Emulator.drop()``; ``{"cmd":"drop"}`` on the Node server); timed from the drop
  until the server has all N rooms listened again and the bot says ``connected``.  The
  bot's ``reconnect_delay`` is 0.02 s, so the backoff before reconnecting is at most
  20 ms of it.

Checked, or the run fails: every room acknowledged, the server counts exactly the N
rooms, the bot reconnected once.  Medians over the repetitions; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from bench.run import (
    Child,
    EmulatorServer,
    NodeServer,
    check_result,
    node_available,
    start_driver,
    versions,
)

CONFIGS = {
    "full": dict(rooms=10000, reps=3),
    "quick": dict(rooms=2000, reps=1),
    # the smallest configuration, run by tests/test_bench.py (correctness only)
    "smoke": dict(rooms=50, reps=1),
}
#: workload -> its row label
WORKLOADS = {
    "args": "bot.listen(*rooms)",
    "loop": "for room: bot.listen(room)",
    "raw": "raw python-socketio, 256 in flight",
    "relisten": "re-listen after a drop",
}
#: the emulator as tests get it, then npm's server
SERVERS = ["emulator", "node"]
WAIT = 120.0  # the longest one wait may take
POLL = 0.002


def wait_listened(server: Any, rooms: List[str], timeout: float = WAIT) -> int:
    """Poll until the server has every room of ``rooms`` listened to; returns the
    monotonic_ns when it saw that.  Raises when it counts more, or not in time."""
    n, seen = len(rooms), 0
    end = time.monotonic() + timeout
    while True:
        seen = server.listened_rooms(rooms, seen)
        if seen == n:
            return time.monotonic_ns()
        if seen > n:
            raise RuntimeError(f"{server.name}: {seen} rooms listened, expected {n}")
        if time.monotonic() > end:
            raise TimeoutError(f"{server.name}: {seen} of {n} rooms listened after {timeout:g}s")
        time.sleep(POLL)


def wait_none_listened(server: Any) -> None:
    """Wait until the last workload's rooms are gone (the Node server counts them all)."""
    if isinstance(server, NodeServer):
        end = time.monotonic() + WAIT
        while server.listened_rooms([]):
            if time.monotonic() > end:
                raise TimeoutError("node: rooms of a closed client are still listened")
            time.sleep(POLL)


def listen(driver: Child, kind: str, mode: str, prefix: str, n: int) -> Dict[str, Any]:
    driver.send({"cmd": "listen_many", "n": n, "prefix": prefix, "mode": mode})
    r = driver.read()
    check_result(r, kind, f"listen {mode}")
    if r["acked"] != n:
        raise RuntimeError(f"{kind} listen {mode}: {r['acked']} of {n} rooms acknowledged")
    return r


def one_repetition(server: Any, ours: Child, raw: Child, n: int, rep: int) -> Dict[str, float]:
    """Every workload once against ``server``; returns seconds per workload."""
    out: Dict[str, float] = {}
    for mode, driver, kind in (("loop", ours, "ours"), ("raw", raw, "raw"),
                               ("args", ours, "ours")):  # args last: relisten reuses its bot
        wait_none_listened(server)
        prefix = f"{server.name}-{mode}-{rep}-"
        rooms = [f"{prefix}{i}" for i in range(n)]
        r = listen(driver, kind, "window" if mode == "raw" else mode, prefix, n)
        wait_listened(server, rooms, 10.0)  # acknowledged means joined: checks the count
        out[mode] = r["seconds"]
        if mode != "args":
            driver.send({"cmd": "close_rooms"})
            check_result(driver.read(), kind, "close_rooms")
    reconnects = r["reconnects"]
    t0 = time.monotonic_ns()
    dropped = server.drop()
    if dropped < 2:  # the rooms bot and the driver's own bot at least
        raise RuntimeError(f"{server.name}: dropped {dropped} link(s), expected 2 or more")
    listened_ns = wait_listened(server, rooms)
    ours.send({"cmd": "wait_relistened", "n": n, "reconnects": reconnects})
    r = ours.read()
    check_result(r, "ours", "relisten")
    if r["reconnects"] != reconnects + 1 or r["state"] != "connected" or r["rooms"] != n:
        raise RuntimeError(f"ours relisten: {r}")
    out["relisten"] = (max(listened_ns, r["at_ns"]) - t0) / 1e9
    ours.send({"cmd": "close_rooms"})
    check_result(ours.read(), "ours", "close_rooms")
    return out


def bench_server(name: str, node: Optional[str], cfg: Dict[str, Any],
                 log: Callable[[str], None]) -> Dict[str, List[float]]:
    if name == "node":
        server: Any = NodeServer(node or "node")
    else:
        server = EmulatorServer()
    drivers: List[Child] = []
    samples: Dict[str, List[float]] = {w: [] for w in WORKLOADS}
    try:
        ours = start_driver("ours", server.url, node)
        drivers.append(ours)
        raw = start_driver("raw", server.url, node)
        drivers.append(raw)
        for rep in range(cfg["reps"]):
            for workload, seconds in one_repetition(server, ours, raw, cfg["rooms"],
                                                    rep).items():
                samples[workload].append(seconds)
            log(f"  {name}: repetition {rep + 1}/{cfg['reps']}: "
                + ", ".join(f"{w} {s[-1]:.2f} s" for w, s in samples.items()))
    finally:
        for d in drivers:
            d.close()
        server.close()
    return samples


def run(config: str = "full", *, servers: Optional[List[str]] = None,
        log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the workloads; returns {"config", "settings", "servers": {name: {workload: s}}}."""
    cfg = CONFIGS[config]
    node = node_available()
    servers = servers or (SERVERS if node else SERVERS[:-1])
    if "node" in servers and not node:
        raise RuntimeError("the node server needs node and `npm ci` (socket.io in node_modules)")
    result: Dict[str, Any] = {
        "config": config, "settings": cfg, "versions": versions(node),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "servers": {},
        "samples": {},
    }
    for name in servers:
        log(f"server: {name} ({cfg['rooms']:,} rooms, {cfg['reps']} repetition(s))")
        samples = bench_server(name, node, cfg, log)
        result["samples"][name] = samples
        result["servers"][name] = {w: statistics.median(v) for w, v in samples.items()}
    return result


def seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(result: Dict[str, Any]) -> str:
    servers = result["servers"]
    npm = servers.get("node", {})
    emulators = [name for name in servers if name != "node"]
    names = list(servers)
    n = result["settings"]["rooms"]
    head = f"| {f'{n:,} rooms, median seconds':<36} | " + " | ".join(
        f"{s:>16}" for s in names)
    head += "".join(f" | {s + '/npm':>20}" for s in emulators if npm) + " |"
    lines = [f"{result['date']} - {result['machine']}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
             f"config: {result['config']} {result['settings']}", "", head,
             "|" + "|".join("-" * len(p) for p in head.split("|")[1:-1]) + "|"]
    for workload, label in WORKLOADS.items():
        row = f"| {label:<36} | " + " | ".join(
            f"{seconds(servers[s].get(workload)):>16}" for s in names)
        for s in emulators if npm else []:
            row += f" | {servers[s][workload] / npm[workload]:>19.2f}x"
        lines.append(row + " |")
    lines.append("")
    for name, row in servers.items():
        lines.append(f"{name}: bot.listen(*rooms) / raw = {row['args'] / row['raw']:.2f}x "
                     f"the time; {n / row['args']:,.0f} rooms/s (raw {n / row['raw']:,.0f})")
    lines.append("checks: every room acknowledged, the server counted exactly the rooms, "
                 "the bot reconnected once and was connected with all of them")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rooms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 rooms, once")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="a named configuration")
    parser.add_argument("--server", action="append", choices=["emulator", "node"],
                        help="only this server (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    config = args.config or ("quick" if args.quick else "full")
    result = run(config, servers=args.server, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
