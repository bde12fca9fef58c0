"""A bridge listener process: ``python celery_listener.py [--shard I/N] ROOM...``.

Uses ``celery_bot_app.bridge`` and a bot from the ``WATCHERS_*`` variables; runs until
SIGTERM (or SIGKILL, in the tests that kill it).
"""

import argparse
import signal
import threading

from celery_bot_app import bridge

from watchers_bot import Bot
from watchers_bot.sharding import Shard


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shard", type=Shard.parse)
    parser.add_argument("rooms", nargs="+")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Bot.from_env(connect_timeout=5.0, ack_timeout=5.0, reconnect_delay=0.05,
                      reconnect_delay_max=0.5, max_queue=None) as bot:
        bridge.listen(bot, args.rooms, shard=args.shard, stop=stop, sweep_interval=0.5)


if __name__ == "__main__":
    main()
