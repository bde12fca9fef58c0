"""The Celery app the bridge tests start real workers with (``celery -A celery_bot_app``).

Configured from the environment the test sets: ``WATCHERS_TEST_REDIS`` (broker and lanes),
``WATCHERS_TEST_SLEEP`` (seconds each handler sleeps), ``WATCHERS_TEST_LOCK_TTL``, and the
usual ``WATCHERS_*`` for the workers' bot.
"""

import os
import time

from celery import Celery

from watchers_bot.contrib.celery import Bridge

app = Celery("celery_bot_app", broker=os.environ["WATCHERS_TEST_REDIS"])
app.conf.update(
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # A killed worker's task comes back after this; the listeners' sweep usually restarts
    # the room sooner (after lock_ttl).
    broker_transport_options={"visibility_timeout": 20},
    watchers_lock_ttl=float(os.environ.get("WATCHERS_TEST_LOCK_TTL", "2")),
    watchers_bot={"connect_timeout": 5.0, "ack_timeout": 5.0, "reconnect_delay": 0.05,
                  "reconnect_delay_max": 0.5},
)
if os.environ.get("WATCHERS_TEST_METRICS_PORT"):
    app.conf.watchers_metrics_port = int(os.environ["WATCHERS_TEST_METRICS_PORT"])
SLEEP = float(os.environ.get("WATCHERS_TEST_SLEEP", "0"))


def answer(msg):
    if msg.text.startswith("boom"):
        raise RuntimeError("the handler blew up on purpose")
    if SLEEP:
        time.sleep(SLEEP)
    return f"re:{msg.text}"


bridge = Bridge(app, answer)

if os.environ.get("WATCHERS_TEST_BOT_IN_PARENT"):
    # The worker's main process makes (and connects) the bridge's bot before it forks its
    # pool: each child must make its own instead of using the inherited one.
    bridge.bot().connect()
    bridge.lanes.redis.ping()
