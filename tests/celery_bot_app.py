"""The Celery app the bridge tests start real workers with (``celery -A celery_bot_app``).

Configured from the environment the test sets: ``WATCHERS_TEST_REDIS`` (broker and lanes),
``WATCHERS_TEST_SLEEP`` (seconds each handler sleeps), and the usual ``WATCHERS_*``.
"""

import os
import time

from celery import Celery

from watchers_bot.contrib.celery import Bridge

app = Celery("celery_bot_app", broker=os.environ["WATCHERS_TEST_REDIS"])
app.conf.update(
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    watchers_lock_ttl=float(os.environ.get("WATCHERS_TEST_LOCK_TTL", "3")),
)
SLEEP = float(os.environ.get("WATCHERS_TEST_SLEEP", "0"))


def answer(msg):
    if SLEEP:
        time.sleep(SLEEP)
    return f"re:{msg.text}"


bridge = Bridge(app, answer)
