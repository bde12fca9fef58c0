"""The bridge: listeners claim messages into per-room lanes; Celery tasks drain the lanes."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from ...client.bot import Bot
from ...errors import ReceiveTimeout
from ...models import Message
from ...settings import seconds as _seconds
from ...sharding import Shard
from ._drain import Drainer
from ._lanes import Lanes
from ._metrics import BridgeCollector, MetricsServer, broker_client, serve_metrics

__all__ = ["TASK_NAME", "Bridge"]

log = logging.getLogger("watchers_bot.celery")

_bridges: "weakref.WeakSet[Bridge]" = weakref.WeakSet()


def _reset_bridges_after_fork() -> None:
    for bridge in list(_bridges):
        bridge._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_bridges_after_fork)

# How long a stopping listener waits for more messages already on their way.
_FLUSH_WAIT = 0.05
_FLUSH_FOR = 2.0

#: The name of the Celery task that drains a room's lane.
TASK_NAME = "watchers_bot.drain_room"


def _setting(value: Any, conf: Any, name: str, default: float) -> float:
    # The argument, else the Celery setting watchers_<name>, else the default.
    if value is None:
        value = conf.get(f"watchers_{name}", default)
    return _seconds(value, name)


class Bridge:
    """Run a handler (or a ``Router``) on Celery workers, each room in order, replies once.

    Create it in the module both the listener and the workers import::

        app = Celery("bot", broker="redis://localhost:6379/0")
        bridge = Bridge(app, handler)

    Settings come from keyword arguments, else the Celery configuration
    (``watchers_redis_url``, ``watchers_bot`` — a dict of :class:`~watchers_bot.Bot`
    arguments — ``watchers_lock_ttl``...), else ``broker_url`` for Redis and
    :meth:`Bot.from_env` for the bot.

    ``lock_ttl`` (seconds, 60) is how long the room of a worker that died stays locked (a
    live worker renews its lock while its handler runs); ``claim_ttl`` and ``reply_ttl`` (a
    day) how long claims and reply records are kept: longer than any redelivery. ``batch``
    (100) messages at most per task, then the room queues again. ``resend_uncertain``
    (``True``) re-sends a reply whose first attempt's fate is unknown (a worker killed
    between the send and its record); ``False`` skips it. Both are counted and logged.
    """

    def __init__(
        self,
        app: Any,
        handler: Callable[..., Optional[str]],
        *,
        redis_url: Optional[str] = None,
        bot_factory: Optional[Callable[[], Bot]] = None,
        prefix: Optional[str] = None,
        lock_ttl: Optional[float] = None,
        claim_ttl: Optional[float] = None,
        reply_ttl: Optional[float] = None,
        queue: Optional[str] = None,
        batch: Optional[int] = None,
        resend_uncertain: Optional[bool] = None,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        conf = app.conf
        self.app = app
        self.handler = handler
        self.redis_url = str(redis_url or conf.get("watchers_redis_url") or conf.broker_url)
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "redis_url must be a redis:// URL (pass redis_url= or set watchers_redis_url "
                f"when the broker is not Redis), got scheme of {self.redis_url.split(':')[0]!r}"
            )
        self.prefix = prefix or conf.get("watchers_prefix") or "watchers"
        self.lock_ttl = _setting(lock_ttl, conf, "lock_ttl", 60.0)
        self.claim_ttl = _setting(claim_ttl, conf, "claim_ttl", 86400.0)
        self.reply_ttl = _setting(reply_ttl, conf, "reply_ttl", 86400.0)
        self.queue = queue or conf.get("watchers_queue")
        self.batch = batch if batch is not None else conf.get("watchers_batch", 100)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int):
            raise TypeError(f"batch must be an int, not {type(self.batch).__name__}")
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        if resend_uncertain is None:
            resend_uncertain = conf.get("watchers_resend_uncertain", True)
        self.resend_uncertain = bool(resend_uncertain)
        self._bot_factory = bot_factory
        self._lanes: Optional[Lanes] = None
        self._lanes_pid = 0
        self._bot: Optional[Bot] = None
        self._bot_pid = 0
        self._bot_lock = threading.Lock()
        # Plain JSON whatever the app's default serializer: no library object is pickled.
        self.task = app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True,
                             ignore_result=True, serializer="json")(self._drain_task)
        from celery import signals

        signals.worker_process_shutdown.connect(self._close_bot, weak=False)
        signals.worker_ready.connect(self._serve_worker_metrics, weak=False)
        self._metrics: Optional[MetricsServer] = None
        _bridges.add(self)

    def _after_fork(self) -> None:
        # A prefork child inherits the parent's objects, maybe mid-use by a thread that
        # does not exist here: start this process's clients and lock afresh.
        self._bot_lock = threading.Lock()
        self._bot = None
        self._lanes = None

    # ------------------------------------------------------------------ per process

    @property
    def lanes(self) -> Lanes:
        """This process's Redis operations (made again in a forked child)."""
        if self._lanes is None or self._lanes_pid != os.getpid():
            import redis

            client = redis.Redis.from_url(self.redis_url, socket_timeout=30,
                                          socket_connect_timeout=10)
            self._lanes = Lanes(client, prefix=self.prefix, claim_ttl=self.claim_ttl,
                                reply_ttl=self.reply_ttl, lock_ttl=self.lock_ttl)
            self._lanes_pid = os.getpid()
        return self._lanes

    def bot(self) -> Bot:
        """This worker process's bot, created on first use and reused by every task.

        A bot inherited through ``fork()`` is never used (the library abandons it in the
        child); each prefork child makes its own.
        """
        with self._bot_lock:
            if self._bot is None or self._bot_pid != os.getpid() or self._bot.closed:
                self._bot = self.make_bot()
                self._bot_pid = os.getpid()
            return self._bot

    def make_bot(self) -> Bot:
        """A new bot configured as the workers' is (the listener command uses it too)."""
        if self._bot_factory is not None:
            return self._bot_factory()
        # Celery's ``watchers_bot`` setting (Bot's keyword arguments) overrides the
        # WATCHERS_* variables, which fill in the rest (the token, typically).
        options = self.app.conf.get("watchers_bot") or {}
        return Bot.from_env(**dict(options))

    def _close_bot(self, **_: Any) -> None:
        bot = self._bot
        if bot is not None and self._bot_pid == os.getpid():
            bot.close()

    # ------------------------------------------------------------------ metrics

    def collector(self) -> BridgeCollector:
        """A ``prometheus_client`` collector of this bridge (whole-deployment numbers)."""
        queue = self.queue or self.app.conf.get("task_default_queue") or "celery"
        broker = broker_client(self.app.conf.broker_url)
        return BridgeCollector(self.lanes, broker=broker, queues=[queue])

    def serve_metrics(self, port: int = 9464, *, host: str = "127.0.0.1",
                      allowed_hosts: Iterable[str] = ()) -> MetricsServer:
        """Serve ``/metrics`` (needs the ``metrics`` extra); see :func:`serve_metrics`."""
        return serve_metrics(self, port, host=host, allowed_hosts=allowed_hosts)

    def _serve_worker_metrics(self, sender: Any = None, **_: Any) -> None:
        # In the worker's main process once it is ready, when watchers_metrics_port is set
        # (and the worker is this bridge's app's: a process may hold several apps).
        port = self.app.conf.get("watchers_metrics_port")
        if port is None or self._metrics is not None:
            return
        if getattr(sender, "app", self.app) is not self.app:
            return
        host = self.app.conf.get("watchers_metrics_host") or "127.0.0.1"
        self._metrics = self.serve_metrics(int(port), host=str(host))
        log.info("metrics at %s", self._metrics.url)

    # ------------------------------------------------------------------ listener

    def forward(self, payload: Mapping[str, Any], project: Optional[str], room_id: str,
                message_id: Any) -> bool:
        """Claim a received message and hand it to the workers; ``False`` for a duplicate."""
        won, room_key = self.lanes.claim_push(payload, project, room_id, message_id)
        if won:
            self.kick(room_key, dict(payload))
        return won

    def kick(self, room_key: str, payload: Optional[Dict[str, Any]] = None) -> None:
        """Queue a drain task for the room (its lane in Redis holds the messages; ``payload``
        only travels with the task, for logs and inspection)."""
        options: Dict[str, Any] = {}
        if self.queue:
            options["queue"] = self.queue
        self.task.apply_async(args=(room_key, payload), **options)

    def sweep(self) -> int:
        """Send a drain task for every lane with messages and no worker on it; how many."""
        rooms = self.lanes.unlocked_backlogs()
        for room in rooms:
            self.kick(room)
        return len(rooms)

    def listen(
        self,
        bot: Bot,
        rooms: Iterable[str],
        *,
        shard: Optional[Shard] = None,
        stop: Optional[threading.Event] = None,
        sweep_interval: float = 5.0,
        idle_timeout: Optional[float] = None,
    ) -> int:
        """Listen to ``rooms`` (those of ``shard``) and forward each message; blocks.

        Returns the number of messages forwarded when ``stop`` is set or no message came for
        ``idle_timeout`` seconds. Every ``sweep_interval`` seconds it also re-sends work for
        lanes no worker holds (a worker died, or a listener died between claim and send).
        """
        rooms = list(rooms)
        chosen = rooms if shard is None else shard.select(rooms)
        if not chosen:
            raise ValueError(f"no room of {rooms!r} belongs to shard {shard}")
        bot.listen(*chosen)
        forwarded = 0
        last_sweep = time.monotonic()
        last_message = time.monotonic()
        while stop is None or not stop.is_set():
            now = time.monotonic()
            if now - last_sweep >= sweep_interval:
                self._sweep_quietly()
                last_sweep = now
            if idle_timeout is not None and now - last_message >= idle_timeout:
                break
            try:
                msg = bot.receive(timeout=min(sweep_interval, 0.5))
            except ReceiveTimeout:
                continue
            last_message = time.monotonic()
            if self._forward_until_done(msg, stop):
                forwarded += 1
        # Stopping: what the bot already received is handed on too, not dropped at close
        # (for at most _FLUSH_FOR seconds, in case the rooms are busy).
        end = time.monotonic() + _FLUSH_FOR
        while time.monotonic() < end:
            try:
                msg = bot.receive(timeout=_FLUSH_WAIT)
            except ReceiveTimeout:
                return forwarded
            if self._forward_until_done(msg, None, attempts=3):
                forwarded += 1
        return forwarded

    def _sweep_quietly(self) -> None:
        import redis

        try:
            self.sweep()
        except redis.RedisError as exc:
            log.warning("could not sweep the lanes (%s); retrying at the next sweep", exc)

    def _forward_until_done(self, msg: Message, stop: Optional[threading.Event], *,
                            attempts: Optional[int] = None) -> bool:
        # Redis unreachable: keep the message and retry (the bot's inbox holds the rest)
        # rather than lose it; a redundant listener may be forwarding it meanwhile.
        import redis

        delay = 0.1
        tries = 0
        while True:
            try:
                return self.forward(msg.raw, msg.project, msg.room_id, msg.id)
            except redis.RedisError as exc:
                tries += 1
                log.warning("could not hand message %s of room %s to Redis (%s); retrying",
                            msg.id, msg.room_id, exc)
                if (stop is not None and stop.wait(delay)) or (
                        attempts is not None and tries >= attempts):
                    log.error("stopped with message %s of room %s not handed on",
                              msg.id, msg.room_id)
                    return False
                if stop is None:
                    time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ worker

    def _drain_task(self, room_key: str, payload: Optional[Dict[str, Any]] = None) -> int:
        # ``payload`` is the message that caused this task (plain JSON, for logs and
        # inspection); the lane in Redis is the source of truth and of order.
        return self.drain(room_key)

    def drain(self, room_key: str) -> int:
        """Handle the room's waiting messages in order, if no other worker is; how many.

        At most ``batch`` messages per call: then the room goes to the back of the queue
        (a new task), so one busy room cannot hold a worker while others wait.
        """
        return Drainer(self).drain(room_key)
