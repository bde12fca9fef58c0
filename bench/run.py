"""The benchmark: our Bot vs raw python-socketio vs npm socket.io-client.

    python -m bench              # full run (about 6 minutes on 2 cores)
    python -m bench --quick      # about 25 seconds
    python -m bench --json out.json

Every client runs in its own child process (``bench/driver.py`` for ``ours``
and ``raw``, ``bench/driver.js`` for ``node``), against the same server: our
emulator (in this process) and, when Node.js and the npm packages are there,
npm's socket.io server (``bench/node_server.js``).  Workloads are interleaved:
each repetition runs every workload once per client, in a rotating order, and
the table shows medians over the repetitions.  Loopback only; every wait is
bounded; children are ended on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOKEN = "bench-token-5e1f"
API_KEY = "bench-key-9c27"
READ_TIMEOUT = 180.0  # the longest one command may take, then the child is killed

#: workload -> (label, unit, what "better" is, target ratio ours/raw or None)
WORKLOADS = {
    "seq": ("sequential send+ack", "msg/s", "higher", 1.5),
    "pipe": ("pipelined send (256 in flight)", "msg/s", "higher", 4.0),
    # the window released from add_done_callback (raw and node: from their ack callbacks)
    "pipe_cb": ("pipelined send, done-callbacks", "msg/s", "higher", 6.0),
    "burst": ("burst receive", "msg/s", "higher", 4.0),
    "latency_p50": ("latency p50", "us", "lower", 1.0),
    "latency_p99": ("latency p99", "us", "lower", 1.0),
    "connect": ("connect + listen", "ms", "lower", 1.1),
    "memory": ("memory per queued message", "bytes", "lower", None),
    "idle": ("idle CPU", "ms CPU/s", "lower", None),
}

#: the commands run_workload knows, in the order they run
ALL_WORKLOADS = ("seq", "pipe", "pipe_cb", "burst", "latency", "connect", "memory", "idle")

CONFIGS = {
    #            seq   pipe   burst  latency connect memory idle_s reps
    "full": dict(seq=2000, pipe=10000, burst=50000, latency=500, connect=30, memory=10000,
                 idle=2.0, reps=5, interval_ms=2),
    "quick": dict(seq=300, pipe=3000, burst=20000, latency=100, connect=3, memory=2000,
                  idle=0.5, reps=1, interval_ms=2),
    # the smallest configuration, run by tests/test_bench.py (correctness only)
    "smoke": dict(seq=20, pipe=300, burst=500, latency=10, connect=1, memory=200,
                  idle=0.2, reps=1, interval_ms=2),
}


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    return env


def node_available() -> Optional[str]:
    node = shutil.which("node")
    if node is None:
        return None
    if not all((REPO / "node_modules" / p / "package.json").is_file()
               for p in ("socket.io", "socket.io-client")):
        return None
    return node


class Child:
    """A child process speaking JSON lines; every read has a timeout."""

    def __init__(self, argv: List[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=child_env(), text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr: List[str] = []
        self._threads = [threading.Thread(target=self._pump, daemon=True),
                         threading.Thread(target=self._pump_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def read(self, timeout: float = READ_TIMEOUT) -> Dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no answer in {timeout:g}s") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited: {''.join(self.stderr)[-2000:]}")
        return json.loads(line)

    def send(self, obj: Dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send({"cmd": "quit"})
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._threads:
            t.join(5)


# --------------------------------------------------------------------------- servers


class EmulatorServer:
    name = "emulator"

    def __init__(self) -> None:
        from watchers_bot.emulator import Emulator

        self.emu = Emulator(tokens=[TOKEN], api_keys=[API_KEY], project="bench")
        self.emu.start()
        self.url = self.emu.url

    def post_many(self, room: str, n: int, size: int) -> int:
        from bench.driver import expected_text

        texts = [expected_text(i, size) for i in range(n)]
        t0 = time.monotonic_ns()
        self.emu.post_many(room, texts)
        return t0

    def wait_listeners(self, room: str) -> None:
        self.emu.wait_for_listeners(room, 1, timeout=30)

    def post_stamped(self, room: str, n: int, interval_ms: float) -> None:
        interval = interval_ms / 1000.0
        for _ in range(n):
            self.emu.post(room, str(time.monotonic_ns()))
            time.sleep(interval)

    def sends(self) -> int:
        n = len(self.emu.sent)
        self.emu.clear_sent()  # keep the record from growing across workloads
        return n

    def drop(self) -> int:
        """Cut every client's link; returns how many (bench/rooms.py)."""
        return self.emu.drop()

    def listened_rooms(self, rooms: List[str], start: int = 0) -> int:
        """How many of ``rooms``, from ``start`` on, in order, have a listener
        up to the first that has none (rooms are polled without re-counting)."""
        listeners = self.emu.listeners
        i = start
        while i < len(rooms) and listeners(rooms[i]):
            i += 1
        return i

    def close(self) -> None:
        self.emu.stop()


class NodeServer:
    name = "node"

    def __init__(self, node: str) -> None:
        self.child = Child([node, str(HERE / "node_server.js"), "--token", TOKEN,
                            "--api-key", API_KEY], "node server")
        self.url = f"http://127.0.0.1:{self.child.read(30)['port']}"
        self._sends = 0

    def post_many(self, room: str, n: int, size: int) -> int:
        t0 = time.monotonic_ns()
        self.child.send({"cmd": "post_many", "room": room, "count": n, "size": size})
        self.child.read()
        return t0

    def wait_listeners(self, room: str) -> None:
        pass  # the drivers listen (and wait for the ack) before saying ready

    def post_stamped(self, room: str, n: int, interval_ms: float) -> None:
        self.child.send({"cmd": "post_stamped", "room": room, "count": n,
                         "interval_ms": interval_ms})
        self.child.read()

    def sends(self) -> int:
        self.child.send({"cmd": "stats"})
        total = self.child.read()["sends"]
        n, self._sends = total - self._sends, total
        return n

    def drop(self) -> int:
        """Cut every client's link; returns how many (bench/rooms.py)."""
        self.child.send({"cmd": "drop"})
        return int(self.child.read()["count"])

    def listened_rooms(self, rooms: List[str], start: int = 0) -> int:
        """How many rooms have a listener (all of them, not only ``rooms``:
        bench/rooms.py checks that no others are left before it starts)."""
        self.child.send({"cmd": "listeners"})
        return int(self.child.read()["rooms"])

    def close(self) -> None:
        self.child.close()


# --------------------------------------------------------------------------- drivers


def start_driver(kind: str, url: str, node: Optional[str]) -> Child:
    if kind == "node":
        assert node is not None
        argv = [node, str(HERE / "driver.js"), url, TOKEN, API_KEY]
    else:
        argv = [sys.executable, str(HERE / "driver.py"), kind, url, TOKEN, API_KEY]
    child = Child(argv, f"{kind} client")
    hello = child.read(60)
    if not hello.get("ready"):
        raise RuntimeError(f"{kind} client did not start: {hello}")
    return child


def run_workload(name: str, kind: str, driver: Child, server: Any, cfg: Dict[str, Any],
                 tag: str) -> Dict[str, Any]:
    """One workload for one client; returns {metric: value} plus checks."""
    if name == "seq":
        driver.send({"cmd": "seq", "n": cfg["seq"]})
        r = driver.read()
        check_result(r, kind, name)
        sends = server.sends()
        return {"seq": cfg["seq"] / r["seconds"],
                "acks_ok": r["acks"] == cfg["seq"] == sends}
    if name == "pipe":
        driver.send({"cmd": "pipe", "n": cfg["pipe"], "window": 256})
        r = driver.read()
        check_result(r, kind, name)
        sends = server.sends()
        return {"pipe": cfg["pipe"] / r["seconds"],
                "acks_ok": r["acks"] == cfg["pipe"] == sends}
    if name == "pipe_cb":
        driver.send({"cmd": "pipe_cb", "n": cfg["pipe"], "window": 256})
        r = driver.read()
        check_result(r, kind, name)
        sends = server.sends()
        return {"pipe_cb": cfg["pipe"] / r["seconds"],
                "acks_ok": r["acks"] == cfg["pipe"] == sends}
    if name == "burst":
        room = f"burst-{tag}"
        driver.send({"cmd": "burst", "n": cfg["burst"], "size": 100, "room": room})
        _ready(driver, kind, name)
        server.wait_listeners(room)
        t0 = server.post_many(room, cfg["burst"], 100)
        r = driver.read()
        check_result(r, kind, name)
        return {"burst": r["count"] / ((r["last_ns"] - t0) / 1e9),
                "count_ok": r["count"] == cfg["burst"], "in_order": r["in_order"]}
    if name == "latency":
        room = f"latency-{tag}"
        driver.send({"cmd": "latency", "n": cfg["latency"], "room": room})
        _ready(driver, kind, name)
        server.wait_listeners(room)
        server.post_stamped(room, cfg["latency"], cfg["interval_ms"])
        r = driver.read()
        check_result(r, kind, name)
        return {"latency_p50": r["p50_us"], "latency_p99": r["p99_us"],
                "count_ok": r["count"] == cfg["latency"]}
    if name == "connect":
        driver.send({"cmd": "connect", "k": cfg["connect"]})
        r = driver.read()
        check_result(r, kind, name)
        return {"connect": r["median_s"] * 1000.0}
    if name == "memory":
        if kind == "node":
            return {}
        room = f"memory-{tag}"
        driver.send({"cmd": "memory", "n": cfg["memory"], "room": room})
        _ready(driver, kind, name)
        server.wait_listeners(room)
        server.post_many(room, cfg["memory"], 100)
        r = driver.read()
        check_result(r, kind, name)
        return {"memory": r["bytes_per_message"], "count_ok": r["count"] == cfg["memory"]}
    if name == "idle":
        driver.send({"cmd": "idle", "seconds": cfg["idle"]})
        r = driver.read()
        check_result(r, kind, name)
        return {"idle": r["cpu_ms_per_s"]}
    raise ValueError(name)


def _ready(driver: Child, kind: str, name: str) -> None:
    r = driver.read()
    if not r.get("ready"):
        raise RuntimeError(f"{kind} {name}: {r.get('error', r)}")


def check_result(r: Dict[str, Any], kind: str, name: str) -> None:
    """Raise when a driver's answer ``r`` to workload ``name`` is not ok."""
    if not r.get("ok"):
        raise RuntimeError(f"{kind} {name} failed: {r.get('error')}")


def bench_server(server: Any, clients: List[str], cfg: Dict[str, Any], node: Optional[str],
                 workloads: List[str], log: Callable[[str], None]) -> Dict[str, Any]:
    """Run every workload against one server; returns raw samples per client."""
    samples: Dict[str, Dict[str, List[Any]]] = {c: {} for c in clients}
    drivers: Dict[str, Child] = {}
    try:
        for kind in clients:
            drivers[kind] = start_driver(kind, server.url, node)
        for rep in range(cfg["reps"]):
            for name in workloads:
                k = rep % len(clients)
                for kind in clients[k:] + clients[:k]:  # rotate who goes first
                    tag = f"{kind}-{rep}"
                    result = run_workload(name, kind, drivers[kind], server, cfg, tag)
                    for metric, value in result.items():
                        samples[kind].setdefault(metric, []).append(value)
            log(f"  {server.name}: repetition {rep + 1}/{cfg['reps']} done")
    finally:
        for d in drivers.values():
            d.close()
    return samples


def summarize(samples: Dict[str, Dict[str, List[Any]]]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for kind, metrics in samples.items():
        row: Dict[str, Any] = {}
        for metric, values in metrics.items():
            if metric in WORKLOADS:
                row[metric] = statistics.median(values)
            else:  # checks: all must hold
                row[metric] = all(values)
        out[kind] = row
    return out


def fmt(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(summary: Dict[str, Dict[str, Any]], clients: List[str]) -> List[str]:
    head = f"| {'workload':<32} | {'unit':<8} | " + " | ".join(f"{c:>9}" for c in clients)
    head += " | ours/raw | target |"
    lines = [head, "|" + "|".join("-" * (len(p) + 0) for p in head.split("|")[1:-1]) + "|"]
    for metric, (label, unit, better, target) in WORKLOADS.items():
        values = [summary.get(c, {}).get(metric) for c in clients]
        ours, raw = summary.get("ours", {}).get(metric), summary.get("raw", {}).get(metric)
        ratio = ours / raw if ours is not None and raw else None
        if target is None or ratio is None:
            verdict = "-"
        elif better == "higher":
            verdict = f">={target:g}x " + ("met" if ratio >= target else "NOT met")
        else:
            verdict = f"<={target:g}x " + ("met" if ratio <= target else "NOT met")
        lines.append(
            f"| {label:<32} | {unit:<8} | " + " | ".join(f"{fmt(v):>9}" for v in values)
            + f" | {fmt(ratio) + 'x' if ratio is not None else '-':>8} | {verdict} |"
        )
    checks = []
    for c in clients:
        row = summary.get(c, {})
        bits = []
        for key in ("acks_ok", "count_ok", "in_order"):
            if key in row:
                bits.append(f"{key}={'yes' if row[key] else 'NO'}")
        checks.append(f"{c}: " + ", ".join(bits))
    lines.append("")
    lines.append("checks — " + "; ".join(checks))
    return lines


def versions(node: Optional[str]) -> Dict[str, str]:
    from importlib.metadata import version

    v = {"python": platform.python_version()}
    for dist in ("python-socketio", "python-engineio", "websocket-client", "simple-websocket",
                 "werkzeug", "watchers-bot", "orjson"):
        with contextlib.suppress(Exception):
            v[dist] = version(dist)
    if node:
        with contextlib.suppress(Exception):
            v["node"] = subprocess.run([node, "--version"], capture_output=True, text=True,
                                       timeout=10).stdout.strip()
        for pkg in ("socket.io", "socket.io-client"):
            with contextlib.suppress(Exception):
                v["npm " + pkg] = json.loads(
                    (REPO / "node_modules" / pkg / "package.json").read_text())["version"]
    return v


def run(config: str = "full", *, servers: Optional[List[str]] = None,
        clients: Optional[List[str]] = None, workloads: Optional[List[str]] = None,
        log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the benchmark; returns {"config", "versions", "servers": {name: summary}}."""
    cfg = CONFIGS[config]
    node = node_available()
    clients = clients or (["ours", "raw", "node"] if node else ["ours", "raw"])
    if "node" in clients and not node:
        clients = [c for c in clients if c != "node"]
    servers = servers or (["emulator", "node"] if node else ["emulator"])
    if not node:
        servers = [s for s in servers if s != "node"]
    workloads = workloads or list(ALL_WORKLOADS)
    result: Dict[str, Any] = {
        "config": config, "settings": cfg, "clients": clients,
        "versions": versions(node), "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "servers": {},
    }
    for name in servers:
        log(f"server: {name} ({', '.join(clients)}; {cfg['reps']} repetition(s))")
        server = EmulatorServer() if name == "emulator" else NodeServer(node or "node")
        try:
            samples = bench_server(server, clients, cfg, node, workloads, log)
        finally:
            server.close()
        result["servers"][name] = {"samples": samples, "summary": summarize(samples)}
    return result


def report(result: Dict[str, Any]) -> str:
    lines = [f"{result['date']} - {result['machine']}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
             f"config: {result['config']} {result['settings']}", ""]
    for name, data in result["servers"].items():
        lines.append(f"server: {name}")
        lines.extend(table(data["summary"], result["clients"]))
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="a named configuration")
    parser.add_argument("--server", action="append", choices=["emulator", "node"],
                        help="only this server (repeatable)")
    parser.add_argument("--client", action="append", choices=["ours", "raw", "node"],
                        help="only this client (repeatable)")
    parser.add_argument("--workload", action="append",
                        choices=list(ALL_WORKLOADS),
                        help="only this workload (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    config = args.config or ("quick" if args.quick else "full")
    result = run(config, servers=args.server, clients=args.client, workloads=args.workload,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
