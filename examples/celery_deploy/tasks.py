"""A bot on Celery workers: the module the workers and the listeners both import.

    celery -A tasks worker --concurrency 4
    python -m watchers_bot.contrib.celery tasks:bridge room-1 room-2 --metrics-port 9464

The bot's credentials come from WATCHERS_TOKEN, WATCHERS_API_KEY and WATCHERS_BOT_ID
(and WATCHERS_REGION or WATCHERS_URL); Redis from REDIS_URL.
"""

import os

from celery import Celery

from watchers_bot import Router
from watchers_bot.contrib.celery import Bridge

app = Celery("tasks", broker=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
app.conf.update(
    worker_prefetch_multiplier=1,  # a worker takes one task at a time: no hoarding
    # A task of a worker that vanished comes back after this; the listeners' sweep usually
    # gives its room to another worker sooner (after watchers_lock_ttl).
    broker_transport_options={"visibility_timeout": 3600},
    watchers_lock_ttl=30.0,
)

router = Router()


@router.command("ping")
def ping(msg):
    return "pong"


@router.message()
def echo(msg):
    return "echo: " + msg.text


bridge = Bridge(app, router)
