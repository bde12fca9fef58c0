"""Run a bridge listener: ``python -m watchers_bot.contrib.celery MODULE:BRIDGE ROOM...``.

    python -m watchers_bot.contrib.celery tasks:bridge room-1 room-2 --shard 0/2

Listens (as the bot ``Bot.from_env`` makes, with the Celery ``watchers_bot`` setting over
the ``WATCHERS_*`` variables) to the rooms of its shard, claims every message in Redis and
hands it to the workers; ``--metrics-port`` serves ``/metrics`` on loopback. Stops cleanly
on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from typing import Any, List, Optional

from ...errors import WatchersError
from ...sharding import Shard
from ._bridge import Bridge


def load_bridge(spec: str) -> Bridge:
    """The :class:`Bridge` named by ``module:attribute``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected MODULE:BRIDGE (e.g. tasks:bridge), got {spec!r}")
    sys.path.insert(0, "")  # like celery -A: the current directory's modules
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not isinstance(target, Bridge):
        raise TypeError(f"{spec} is a {type(target).__name__}, not a Bridge")
    return target


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m watchers_bot.contrib.celery",
                                     description="Listen to rooms and hand each message to "
                                                 "Celery workers through a Bridge.")
    parser.add_argument("bridge", help="the Bridge to use, as MODULE:NAME (e.g. tasks:bridge)")
    parser.add_argument("rooms", nargs="+", help="room ids (this shard's are listened to)")
    parser.add_argument("--shard", type=Shard.parse, help="INDEX/COUNT, e.g. 0/2")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="interface for /metrics (default 127.0.0.1)")
    parser.add_argument("--sweep-interval", type=float, default=5.0,
                        help="seconds between re-sends of work for lanes no worker holds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                                                   "%(message)s")
    try:
        bridge = load_bridge(args.bridge)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = None
    if args.metrics_port is not None:
        metrics = bridge.serve_metrics(args.metrics_port, host=args.metrics_host)
        logging.getLogger("watchers_bot.celery").info("metrics at %s", metrics.url)
    try:
        with bridge.make_bot() as bot:
            bridge.listen(bot, args.rooms, shard=args.shard, stop=stop,
                          sweep_interval=args.sweep_interval)
    except (WatchersError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if metrics is not None:
            metrics.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
