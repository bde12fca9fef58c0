"""Spread a bot's handler over Celery workers on Redis: each room in order, replies once.

Needs the ``celery`` extra (``pip install 'watchers-bot[celery]'``). See the "Scaling out"
guide for the design, the failure modes and the deployment.
"""

from __future__ import annotations

from ._bridge import TASK_NAME, Bridge
from ._lanes import HANDLER_BUCKETS, Lanes
from ._metrics import BridgeCollector, MetricsServer, serve_metrics

__all__ = ["HANDLER_BUCKETS", "TASK_NAME", "Bridge", "BridgeCollector", "Lanes",
           "MetricsServer", "serve_metrics"]
