"""Prometheus metrics of a bridge (the ``metrics`` extra: ``prometheus-client``).

Listeners and workers keep their counters in Redis (the ``{prefix}:stats`` hash), so one
scrape of any process shows the whole deployment: what came in, what was handled and
answered, what was suppressed, and how far behind each room and the broker queue are.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..._control import _is_loopback, _split_host
from ._lanes import HANDLER_BUCKETS, Lanes

if TYPE_CHECKING:
    from ._bridge import Bridge

__all__ = ["COUNTERS", "BridgeCollector", "MetricsServer", "serve_metrics"]

#: stats field -> (metric name without ``_total``, help text). One home for both sides.
COUNTERS: Dict[str, Tuple[str, str]] = {
    "messages_in": ("watchers_messages_in", "Messages claimed and forwarded by listeners"),
    "duplicates": ("watchers_duplicates_suppressed",
                   "Messages another listener had already claimed (not forwarded)"),
    "handled": ("watchers_messages_handled", "Messages whose handler ran"),
    "handler_errors": ("watchers_handler_errors", "Handler calls that raised"),
    "malformed": ("watchers_messages_malformed", "Messages dropped as malformed"),
    "replies": ("watchers_replies", "Replies the server acknowledged"),
    "replies_suppressed": ("watchers_replies_suppressed",
                           "Re-runs that found the reply already recorded (not posted again)"),
    "replies_uncertain": ("watchers_replies_uncertain",
                          "Replies re-sent (or skipped) with their first attempt's fate unknown"),
    "reply_errors": ("watchers_reply_errors", "Replies the server refused"),
}


class BridgeCollector:
    """A ``prometheus_client`` collector reading a bridge's state from Redis at each scrape."""

    def __init__(self, lanes: Lanes, *, broker: Any = None, queues: Iterable[str] = ()) -> None:
        self.lanes = lanes
        self.broker = broker  # a redis client on the Celery broker, for queue lengths
        self.queues = list(queues)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self.lanes.stats()
        for field, (name, doc) in COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=stats.get(field, 0.0))
        yield CounterMetricFamily(
            "watchers_wait_seconds",
            "Seconds messages waited in their lanes before their handler ran (sum)",
            value=stats.get("lag_sum_ms", 0.0) / 1000.0)
        buckets: List[Tuple[str, float]] = [
            (f"{bound:g}", stats.get(f"handler_le_{bound:g}", 0.0)) for bound in HANDLER_BUCKETS
        ]
        buckets.append(("+Inf", stats.get("handler_count", 0.0)))
        yield HistogramMetricFamily("watchers_handler_seconds", "Time handlers took",
                                    buckets=buckets, sum_value=stats.get("handler_sum", 0.0))
        backlog = GaugeMetricFamily("watchers_room_backlog", "Messages waiting in a room's lane",
                                    labels=["room"])
        lag = GaugeMetricFamily("watchers_room_lag_seconds",
                                "Age of the oldest message waiting in a room's lane",
                                labels=["room"])
        for room, (waiting, age) in sorted(self.lanes.backlog().items()):
            backlog.add_metric([room], waiting)
            lag.add_metric([room], age)
        yield backlog
        yield lag
        if self.broker is not None and self.queues:
            queued = GaugeMetricFamily("watchers_broker_queue_length",
                                       "Drain tasks waiting in the Celery queue",
                                       labels=["queue"])
            for queue in self.queues:
                queued.add_metric([queue], float(self.broker.llen(queue)))
            yield queued


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class _Threaded(WSGIServer):
    daemon_threads = True


class MetricsServer:
    """A running ``/metrics`` endpoint: its :attr:`url`; :meth:`close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/metrics"

    def close(self) -> None:
        """Stop serving and wait (bounded) for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve_metrics(bridge: "Bridge", port: int = 9464, *, host: str = "127.0.0.1",
                  allowed_hosts: Iterable[str] = ()) -> MetricsServer:
    """Serve ``/metrics`` for ``bridge`` on a thread; returns the running server.

    Binds loopback by default and answers only requests whose ``Host`` header is a
    loopback address (DNS rebinding); a Prometheus on another machine needs ``host=`` and
    its name for this machine in ``allowed_hosts``. ``port=0`` picks a free port.
    """
    from prometheus_client import CollectorRegistry, make_wsgi_app

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, got {port!r}")
    if isinstance(allowed_hosts, str):
        raise TypeError("allowed_hosts must be an iterable of host names, not a str")
    allowed = {h.lower() for h in allowed_hosts}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(bridge.collector())
    metrics = make_wsgi_app(registry)

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        name, _ = _split_host(environ.get("HTTP_HOST", ""))
        if not (_is_loopback(name) or name.lower() in allowed):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"refused: the Host header must name this machine (loopback)\n"]
        if environ.get("PATH_INFO", "") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(host, port, app, server_class=_Threaded, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25},
                              name="watchers-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


def broker_client(broker_url: Optional[str]) -> Any:
    """A redis client on the Celery broker when it is Redis, else ``None``."""
    if not broker_url or not str(broker_url).startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    return redis.Redis.from_url(str(broker_url), socket_timeout=5, socket_connect_timeout=5)
