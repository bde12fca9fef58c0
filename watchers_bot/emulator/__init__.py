"""A local Watchers.io bot server for tests, demos and benchmarks.

:class:`Emulator` is a real Socket.IO v4 server on ``127.0.0.1`` that speaks
the Watchers bot protocol (see :mod:`watchers_bot.protocol`): bearer-token
auth at connect, ``external/listen`` and ``external/send`` with acks, and
``message`` events to the sockets listening to a room.  It runs in background
threads of the calling process, starts in a few milliseconds on a free port,
and lets a test act as a human in a room, see what bots sent, and inject the
faults a real deployment shows (dropped links, server-side disconnects,
restarts, slow or missing acks, NestJS ``exception`` events, malformed
payloads, short ping settings)::

    from watchers_bot.emulator import Emulator

    with Emulator(tokens=["test-token"], api_keys=["test-key"]) as emu:
        ...                                   # connect a bot to emu.url
        emu.wait_for_listeners("room-1")
        emu.post("room-1", "hello bot")       # as a human
        sent = emu.wait_for_sent(1)           # what the bot answered
        emu.drop()                            # cut every link: bots should reconnect

Every method is thread-safe and every wait takes a timeout.  Tokens and API
keys never appear in logs or in the records (:attr:`SentMessage.payload`
masks ``apiKey``).

The class is a facade over the package's parts: :mod:`.state` (credentials,
clients, rooms), :mod:`.records` (what was seen, and the waits),
:mod:`.gateway` (every request validated and answered through
:mod:`watchers_bot.protocol`), :mod:`.posting`, :mod:`.faults` and
:mod:`.server` with :mod:`.generation` and :mod:`.packets`
(python-socketio's ``Server(async_mode="threading")`` over werkzeug;
simple-websocket does the upgrade: the ``watchers-bot[emulator]`` extra,
imported in :mod:`.deps`).  The playground and its control API are
:mod:`.control` (routes), :mod:`.guard`, :mod:`.feed` and :mod:`.actions`;
:mod:`watchers_bot.control_api` is the API's client side.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterable
from typing import Any, Dict, Optional

from ..protocol.server import DEFAULT_ERROR
from .faults import ACK_MODES, AckRules, FaultSwitches, LinkFaults, RateLimit
from .gateway import Gateway, Observers
from .posting import Posting
from .records import Records, RequestRecord, SentMessage, WrittenMessage
from .server import JOIN_TIMEOUT, Server
from .state import State
from .transcript import Transcript, Turn, replay
from .watching import Watching

__all__ = [
    "ACK_MODES", "DEFAULT_ERROR", "Emulator", "RequestRecord", "SentMessage", "Transcript",
    "Turn", "WrittenMessage", "replay",
]


def _check_ping(interval: float, timeout: float) -> None:
    for name, value in (("ping interval", interval), ("ping timeout", timeout)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class Emulator(FaultSwitches, Watching):
    """A local Watchers.io bot server (Socket.IO v4, websocket transport only).

    :param tokens: bearer tokens accepted at connect (the ``auth`` payload
        must be ``{"bearer": <token>}``).
    :param api_keys: API keys accepted in request payloads.
    :param host: interface to bind; keep the default ``127.0.0.1``.
    :param port: port to bind; ``0`` picks a free one.  The port chosen at the
        first :meth:`start` is kept by :meth:`restart`.
    :param project: the ``project`` field of ``message`` events.
    :param ping_interval: Engine.IO ping interval in seconds (see :meth:`set_ping`).
    :param ping_timeout: Engine.IO ping timeout in seconds.
    :param echo_sender: whether a bot receives its own sent messages as
        ``message`` events (if it listens to the room).  Settable later.
    :param max_message_size: largest incoming Engine.IO packet in bytes; a
        larger one closes the connection, as the real (Node) server does.
    :param record_writes: record every ``message`` event as it is written to
        a socket, in :attr:`written` (for delivery checks across faults).
    :param ssl_context: an :class:`ssl.SSLContext` with the server's
        certificate loaded: serve TLS, and :attr:`url` is ``https://...``
        (for TLS and proxy tests).  The TLS handshake runs in the accept loop.
    :param inline_requests: handle each socket's requests on its own reader
        thread, in order (the default, and how npm's server runs them).
        ``False`` starts a thread per request, python-socketio's default.  While
        a ``"delay"`` ack rule is in force requests get a thread each anyway,
        so that a delayed ack holds up nothing else.
    :param preframed_posts: let :meth:`post_many` write pre-built websocket
        frames straight to the sockets (the default, fast);  ``False`` queues
        each message as its own Engine.IO packet (to compare both paths).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        api_keys: Iterable[str] = ("test-key",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        project: str = "demo",
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        echo_sender: bool = True,
        max_message_size: int = 1_000_000,
        record_writes: bool = False,
        ssl_context: Optional[ssl.SSLContext] = None,
        inline_requests: bool = True,
        preframed_posts: bool = True,
    ) -> None:
        self._state = state = State(tokens, api_keys)
        _check_ping(ping_interval, ping_timeout)
        self._server = Server(host=host, port=port,
                              ping=(float(ping_interval), float(ping_timeout)),
                              max_message_size=max_message_size, ssl_context=ssl_context)
        self._records = Records(state.changed, record_writes=bool(record_writes))
        self._rules = AckRules(state.lock)
        self._rate = RateLimit(state.lock)
        self._inline = bool(inline_requests)
        #: the playground's control API and others, told of every event (see feed.py)
        self.observers = Observers()
        #: the playground's control API once made (see :func:`.control.control_for`)
        self.control: Any = None
        self._gateway = Gateway(state, self._records, self._rules, self._rate, self.observers,
                                project=project, echo_sender=bool(echo_sender))
        self._posting = Posting(self._server, self._gateway, self._records,
                                preframed=bool(preframed_posts))
        self._links = LinkFaults(state, self._server)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Bind and start serving in background threads; returns ``self``.

        Does nothing when already running.  Raises ``OSError`` when the port
        cannot be bound.
        """
        from .control import control_for

        self._server.start(self._gateway, async_handlers=self._needs_threads(),
                           wrap_app=lambda app: control_for(self).wrap(app))
        return self

    def _needs_threads(self) -> bool:
        return not self._inline or self._rules.any_delay()

    def stop(self, *, timeout: float = JOIN_TIMEOUT) -> None:
        """Disconnect every client, stop serving and release the port.

        Clients get a Socket.IO disconnect (``io server disconnect``), then
        their links are closed.  Every wait is bounded by ``timeout``.
        Idempotent; safe to call from any thread.
        """
        self._shutdown(drop=False, timeout=timeout)

    def _shutdown(self, *, drop: bool, timeout: float) -> None:
        server, state = self._server, self._state
        with server.lifecycle:
            gen = server.gen
            if gen is None:
                return
            gen.stopping.set()  # refuses new sockets, releases delayed acks and frozen writers
            self.observers.notify("server", {"state": "stopping"})
            server.shutdown(gen, lambda: [(c.sid, c.raw_sock) for c in state.select(None)],
                            drop=drop, timeout=timeout)
            state.forget_generation(gen)

    def restart(self, down_for: float = 0.0, *, drop: bool = False) -> None:
        """Restart like a deploy, on the same port.

        Every client gets a server-side disconnect (or, with ``drop=True``, its
        link is cut as in a crash), the server stops, stays down ``down_for``
        seconds (connection attempts fail at the TCP or HTTP level meanwhile,
        never as an auth refusal), and starts again.  Room subscriptions are
        lost; tokens, API keys, ack settings and the :attr:`sent` /
        :attr:`requests` records are kept.
        """
        if down_for < 0:
            raise ValueError("down_for must be >= 0")
        with self._server.lifecycle:
            self._shutdown(drop=drop, timeout=JOIN_TIMEOUT)
            if down_for:
                import time

                time.sleep(down_for)
            self.start()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"<Emulator {state}, {len(self.clients)} client(s)>"

    @property
    def running(self) -> bool:
        """Whether the server is up: true from :meth:`start` until :meth:`stop`
        has finished (the port is released when it turns false)."""
        return self._server.gen is not None

    @property
    def port(self) -> int:
        """The bound port (``0`` before the first :meth:`start` with ``port=0``)."""
        return self._server.port

    @property
    def url(self) -> str:
        """The URL to connect to, like ``"http://127.0.0.1:PORT"``; stable across restarts."""
        return self._server.url

    @property
    def project(self) -> str:
        """The ``project`` field of ``message`` events."""
        return self._gateway.project

    # ------------------------------------------------------------------ credentials

    def add_token(self, token: str) -> None:
        """Accept ``token`` as a bearer token for new connections."""
        self._state.add_token(token)

    def revoke_token(self, token: str) -> int:
        """Stop accepting ``token``, and disconnect (server side) every socket
        that authenticated with it.  Returns how many were disconnected."""
        sids = self._state.revoke_token(token)
        gen = self._server.gen
        if gen is not None:
            for sid in sids:
                gen.kick(sid)
        return len(sids)

    def add_api_key(self, key: str) -> None:
        """Accept ``key`` in request payloads."""
        self._state.add_api_key(key)

    def revoke_api_key(self, key: str) -> None:
        """Stop accepting ``key``: later requests carrying it get a 401 error ack."""
        self._state.revoke_api_key(key)

    # ------------------------------------------------------------------ settings

    @property
    def echo_sender(self) -> bool:
        """Whether a bot's own sent messages come back to it as ``message`` events."""
        return self._gateway.echo_sender

    @echo_sender.setter
    def echo_sender(self, value: bool) -> None:
        self._gateway.echo_sender = bool(value)

    def set_ping(self, interval: float, timeout: float) -> None:
        """Set the Engine.IO ping interval and timeout, in seconds.

        New connections learn them from the OPEN packet; the server applies
        them at once to its own pings and timeout checks.  Short settings
        (``set_ping(1, 1)``) make a half-open link detectable in about two
        seconds, on both sides.  Note: python-engineio advertises the interval
        in whole seconds (0.5 is sent as 0), so use whole seconds.
        """
        _check_ping(interval, timeout)
        self._server.set_ping(float(interval), float(timeout))

    # ------------------------------------------------------------------ posting

    def post(self, room_id: str, text: str, *, user_id: str = "human",
             **extra: Any) -> Dict[str, Any]:
        """Post ``text`` in ``room_id`` as a human user.

        Every socket listening to the room gets a ``message`` event built by
        :func:`watchers_bot.protocol.message_payload`; ``extra`` keys go to the
        payload's top level (and may replace standard ones, to test odd
        payloads).  Message ids are increasing integers.  Returns the payload.
        """
        return self._posting.post(room_id, text, user_id, extra)

    def post_many(self, room_id: str, texts: Iterable[str], *, user_id: str = "human") -> int:
        """Post many messages in ``room_id`` as ``user_id``, fast, in order.

        Same payloads as :meth:`post` (without extras), but encoded once and
        written to each listener's socket as pre-built websocket frames in
        large batches, so a benchmark measures the client, not the server.
        Returns the number of messages posted.
        """
        return self._posting.post_many(room_id, texts, user_id)

    def push_raw(
        self, event: str, *args: Any, to: Optional[str] = None, room: Optional[str] = None
    ) -> int:
        """Emit ``event`` with arbitrary arguments (e.g. a malformed payload).

        To the socket ``to`` (a sid), to the listeners of ``room`` (a room id),
        or to every connected socket when neither is given.  The arguments go
        out as the event's arguments, as given (none, one, or several).
        Returns the number of sockets addressed.
        """
        return self._posting.push_raw(event, list(args), to, room)

    def push_packet(self, encoded: str, *, to: Optional[str] = None) -> int:
        """Send one raw Socket.IO packet, as text, to the socket ``to`` or to everyone.

        ``encoded`` is the Socket.IO part of an Engine.IO message, e.g.
        ``'2["message",{"roomId":'`` (cut short on purpose) or
        ``'2["message",1,2]'``.  Returns the number of sockets addressed.
        """
        return self._posting.push_packet(encoded, to)
