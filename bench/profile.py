"""Profile one client-side workload of our Bot (or raw python-socketio).

    py-spy record -o burst.svg -- python -m bench.profile burst
    python -m bench.profile burst --pyinstrument      # pyinstrument, all threads
    python -m bench.profile pipe --client raw

The emulator runs in a child process so that only the client is profiled.
Workloads: burst (receive N messages), pipe (pipelined sends), seq.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from typing import Any

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from bench.run import API_KEY, TOKEN


def _serve(conn: Any) -> None:
    from bench.driver import expected_text
    from watchers_bot.emulator import Emulator

    emu = Emulator(tokens=[TOKEN], api_keys=[API_KEY])
    with emu:
        conn.send(emu.url)
        while True:
            if not conn.poll(120):
                return
            cmd = conn.recv()
            if cmd is None:
                return
            room, n = cmd
            emu.wait_for_listeners(room, 1, timeout=30)
            emu.post_many(room, [expected_text(i, 100) for i in range(n)])
            conn.send("posted")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["burst", "pipe", "pipe_cb", "seq"])
    parser.add_argument("--client", choices=["ours", "raw"], default="ours")
    parser.add_argument("-n", type=int, default=50000)
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--node", action="store_true", help="npm socket.io server (seq/pipe)")
    args = parser.parse_args()

    from bench.driver import Ours, Raw

    parent, child = mp.Pipe()
    if args.node:
        from bench.run import NodeServer, node_available

        node_server = NodeServer(node_available() or "node")
        server: Any = None
        url = node_server.url
    else:
        server = mp.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
        server.start()
        url = parent.recv()
    client = (Ours if args.client == "ours" else Raw)(url, TOKEN, API_KEY)
    profiler = None
    if args.pyinstrument:
        import pyinstrument

        profiler = pyinstrument.Profiler(async_mode="disabled")
    try:
        if args.workload == "burst":
            client.listen("p")
            parent.send(("p", args.n))
            t0 = time.perf_counter()
            if profiler:
                profiler.start()
            client.consume(args.n, lambda text, msg_id: None)
        else:
            t0 = time.perf_counter()
            if profiler:
                profiler.start()
            if args.workload == "pipe":
                client.pipe(args.n, 256)
            elif args.workload == "pipe_cb":
                client.pipe_cb(args.n, 256)
            else:
                client.seq(args.n)
        seconds = time.perf_counter() - t0
        if profiler:
            profiler.stop()
        print(f"{args.client} {args.workload}: {args.n / seconds:,.0f} msg/s", file=sys.stderr)
        if profiler:
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        client.close()
        if server is not None:
            parent.send(None)
            server.join(10)
        else:
            node_server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
