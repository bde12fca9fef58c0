"""Every private name of python-engineio, python-socketio and websocket-client we use.

One table (:data:`SEAMS`): each row names an upstream class or module, the
underscore name or undocumented attribute of it that watchers_bot calls,
overrides or reads, and the override (:class:`Override`) that needs it.  An
override is installed only when every name it needs is present *and* the
installed versions are in the tested range; ``WATCHERS_FAST_PATH=0`` turns the
fast-path overrides off on purpose, so the fallback (upstream's own code) can be
run and tested.  ``tests/transport/test_transport.py`` checks the table against
the installed releases (class attributes here, at import; instance attributes on
real clients in the test).

The other modules of this package (``engineio``, ``socketio``, ``websocket``)
and ``client/link.py`` touch upstream only through names listed here.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
from typing import Any, Callable, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

import engineio
import socketio
import websocket

from .. import settings

__all__ = [
    "FAST_PATH", "SEAMS", "TESTED", "Override", "Seam", "enabled", "missing",
    "proxy_rules", "version", "versions_tested",
]

log = logging.getLogger("watchers_bot")


class Override(str, enum.Enum):
    """The groups of upstream behaviour watchers_bot replaces; each is all or nothing."""

    #: Socket.IO packets handled on the read thread, in server order, instead of
    #: a thread started per packet (correctness: message order).
    INLINE_DISPATCH = "inline_dispatch"
    #: A close that does not read the socket from a second thread (correctness:
    #: two threads in SSL_read abort the process) and waits 0.1 s, not 3 s.
    WS_CLOSE = "ws_close"
    #: A TLS socket's reads and writes one thread at a time, waiting outside the
    #: lock (correctness: a read racing a write reports a false EOF and drops the link).
    TLS_SERIAL = "tls_serial"
    #: Compact UTF-8 JSON for our packets, as the JavaScript client sends.
    WIRE_JSON = "wire_json"
    #: Fast path: EVENT/ACK packets decoded with one regex + one json.loads.
    FAST_RECEIVE = "fast_receive"
    #: Fast path: requests encoded in one step, a lone one written at once,
    #: the rest batched by the write loop into one socket write.
    FAST_SEND = "fast_send"
    #: Fast path: websocket frames parsed from a read buffer of our own.
    FAST_READER = "fast_reader"
    #: Fast path: the emulator's server answers plain listens and sends without
    #: upstream's Packet decode, dispatch and ack encoding (emulator/fastpath.py).
    EMULATOR_FAST = "emulator_fast"

    def __str__(self) -> str:
        return self.value


#: The overrides WATCHERS_FAST_PATH=0 turns off (the rest are about correctness).
FAST_OVERRIDES: FrozenSet[Override] = frozenset(
    {Override.FAST_RECEIVE, Override.FAST_SEND, Override.FAST_READER, Override.EMULATOR_FAST})


class Seam(NamedTuple):
    """One upstream name we depend on."""

    owner: Any  #: the upstream class or module
    name: str  #: the attribute
    instance: bool  #: set in ``__init__`` (checked on an instance), not on the class
    uses: Tuple[Override, ...]  #: the overrides that need it
    how: str  #: what we do with it


_D, _W, _J = Override.INLINE_DISPATCH, Override.WS_CLOSE, Override.WIRE_JSON
_T = Override.TLS_SERIAL
_R, _S, _F = Override.FAST_RECEIVE, Override.FAST_SEND, Override.FAST_READER
_E = Override.EMULATOR_FAST
_EC, _SC, _WS = engineio.Client, socketio.Client, websocket.WebSocket
_SS = socketio.Server
# websocket-client's private URL module (None if it is gone: its seam is then missing).
_URL: Any = getattr(websocket, "_url", None)

#: Every underscore name or undocumented attribute of upstream used anywhere in
#: ``watchers_bot`` (``transport``, ``client`` and the CLI's doctor).
SEAMS: Tuple[Seam, ...] = (
    # python-socketio
    Seam(_SC, "_engineio_client_class", False, (_D,), "overridden: picks our Engine.IO client"),
    Seam(_SC, "_handle_eio_message", False, (_R,), "overridden: fast EVENT/ACK decoding"),
    Seam(_SC, "_generate_ack_id", False, (_S,), "called: registers an ack callback"),
    Seam(_SC, "emit", False, (_S,), "overridden (public, same signature)"),
    Seam(_SC, "callbacks", True, (_R, _S), "read/popped: {namespace: {ack id: callback}}; "
         "entries of expired requests are removed (client/link.py)"),
    Seam(_SC, "handlers", True, (_R,), "read: {namespace: {event: handler}}"),
    Seam(_SC, "_binary_packet", True, (_R,), "read: a binary packet is being assembled"),
    Seam(_SC, "packet_class", True, (_J, _R, _S), "replaced: our packets' json"),
    Seam(_SC, "namespaces", True, (_S,), "read: connected namespaces"),
    Seam(_SC, "eio", True, (_D, _R, _S), "read: the Engine.IO client (also by client/link.py)"),
    Seam(_SC, "failed_namespaces", True, (), "read by client/link.py: the connect was refused"),
    Seam(socketio.packet.Packet, "json", False, (_J, _R, _S), "replaced on a subclass"),
    # python-socketio's server (the emulator)
    Seam(_SS, "_handle_eio_message", False, (_E,), "overridden: plain requests answered "
         "directly, the rest passed on"),
    Seam(_SS, "_binary_packet", True, (_E,), "read: a binary packet is being assembled"),
    Seam(_SS, "async_handlers", True, (_E,), "read: handlers run in threads (fast path off)"),
    Seam(_SS, "manager", True, (_E,), "read: sid_from_eio_sid, is_connected"),
    Seam(_SS, "eio", True, (_E,), "read: send_packet queues the ack"),
    Seam(_SS, "not_handled", True, (_E,), "read: the handler sent no ack"),
    Seam(_SS, "packet_class", True, (), "called by emulator/generation.py: encodes a "
         "broadcast once for all its targets"),
    Seam(socketio.base_manager.BaseManager, "eio_sid_from_sid", False, (), "called by "
         "emulator/generation.py: the Engine.IO session of a Socket.IO sid"),
    Seam(socketio.base_manager.BaseManager, "pre_connect", False, (), "relied on by "
         "emulator/generation.py (python-socketio 5.18+, checked by emulator/deps.py): "
         "connect() comes once the connect handler accepted"),
    Seam(engineio.Server, "sockets", True, (), "read by emulator/server.py: the engine "
         "sockets to close at shutdown"),
    Seam(engineio.Server, "ping_interval", True, (), "set on a running server by "
         "Emulator.set_ping (emulator/server.py)"),
    Seam(engineio.Server, "ping_timeout", True, (), "set with ping_interval"),
    # python-engineio
    Seam(engineio.Server, "_async", True, (), "replaced per emulator server "
         "(emulator/server.py): its websocket wrapper, the emulator's own for a plain "
         "connection with the fast path on, else upstream's SimpleWebSocketWSGI, whose "
         "close() must not raise, and which closes a connection's socket only once "
         "simple-websocket's reader let go of it: reads the wrapper's `ws` and its reader "
         "`ws.thread`, lends simple-websocket environ['werkzeug.socket'] (checked by "
         "tests/emulator/test_tls_close.py)"),
    Seam(engineio.socket.Socket, "_websocket_handler", False, (_E,), "relied on "
         "(emulator/websocket.py): the wrapper's handler is this bound method, so its "
         "__self__ is the engine socket; its writer calls poll(), then send() per packet; "
         "it sets a timeout on a wrapper attribute named `_sock` or `socket` (a TLS socket "
         "with a timeout, read and written by two threads, failed connects): neither of "
         "ours has one"),
    Seam(engineio.socket.Socket, "poll", False, (_E,), "wrapped per connection by the "
         "emulator's websocket (an instance attribute): counts the writer's batch, which "
         "is then written in one system call"),
    Seam(engineio.socket.Socket, "send", False, (_E,), "wrapped per connection (an "
         "instance attribute): by emulator/server.py always (through the websocket "
         "handler's __self__, skipped if that has no send), dropping a packet for a "
         "session closed since engineio looked it up instead of raising "
         "SocketIsClosedError in the answering thread; then by the emulator's websocket: "
         "a packet of the request's own thread is written without the queue while "
         "nothing is queued; calls check_ping_timeout() first, as upstream's send() does"),
    Seam(engineio.socket.Socket, "check_ping_timeout", False, (_E,), "called by that send"),
    Seam(_EC, "_trigger_event", False, (_D,), "relied on: calls start_background_task "
         "per packet, which we override"),
    Seam(_EC, "_receive_packet", False, (_R,), "overridden: MESSAGE packets go straight on"),
    Seam(_EC, "_write_loop", False, (_S,), "overridden: batches queued packets"),
    Seam(_EC, "handlers", True, (_D, _R), "read: {event: handler}"),
    Seam(_EC, "queue", True, (_S,), "read/put: the write queue (also by client/link.py to "
         "wake a write loop whose sentinel was drained)"),
    Seam(_EC, "queue_empty", True, (_S,), "read: the queue's Empty exception"),
    Seam(_EC, "state", True, (_S,), "read: 'connected' (also by client/link.py)"),
    Seam(_EC, "ws", True, (_S,), "read: the websocket"),
    Seam(_EC, "current_transport", True, (_S,), "read: 'websocket'"),
    Seam(_EC, "ping_interval", True, (_S,), "read: the write loop's wait"),
    Seam(_EC, "ping_timeout", True, (_S,), "read: the write loop's wait"),
    Seam(_EC, "read_loop_task", True, (), "joined by client/link.py when a link is retired"),
    Seam(_EC, "write_loop_task", True, (_S,), "set to None by the write loop; joined by "
         "client/link.py"),
    Seam(engineio, "json", False, (_J, _R), "read: engineio's json module (safe ints)"),
    # websocket-client
    Seam(_WS, "_recv", False, (_F, _T), "overridden (TLS) and called: one read from the "
         "socket"),
    Seam(_WS, "_send", False, (_S, _T), "overridden and called: one write to the socket"),
    Seam(_WS, "send_close", False, (_F,), "called (public): answers a close frame"),
    Seam(_WS, "readlock", True, (_W, _F), "held: one reader at a time"),
    Seam(_WS, "lock", True, (_S,), "held: one writer at a time"),
    Seam(_WS, "get_mask_key", True, (_S,), "read: the frame mask hook"),
    Seam(_WS, "sock", True, (_W, _S, _T), "read: the socket (set to None when it closed)"),
    Seam(_WS, "connected", True, (_W, _T), "read and set"),
    Seam(_URL, "get_proxy_info", False, (), "called by cli/doctor/network.py: the proxy "
         "the websocket would use (http_proxy, no_proxy...), see proxy_rules()"),
)

#: The tested version ranges [low, high) of each distribution (setup.cfg pins the same).
TESTED: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    "python_socketio": ((5, 14), (6,)),
    "python_engineio": ((4, 13), (5,)),
    "websocket_client": ((1, 6), (2,)),
}
_MODULES = {"python_socketio": socketio, "python_engineio": engineio,
            "websocket_client": websocket}


def version(dist: str) -> Tuple[int, ...]:
    """The installed version of ``dist`` (a key of :data:`TESTED`), () if unknown."""
    module = _MODULES[dist]
    text = None
    # The dist-info folder beside the package says it in its name: much cheaper
    # than importlib.metadata's scan of sys.path (~40 ms at import).
    with contextlib.suppress(Exception):
        site = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
        found = [d for d in os.listdir(site)
                 if d.startswith(dist + "-") and d.endswith(".dist-info")]
        if len(found) == 1:
            text = found[0][len(dist) + 1:-len(".dist-info")]
    if text is None:
        from importlib import metadata

        try:
            text = metadata.version(dist.replace("_", "-"))
        except Exception:  # pragma: no cover - not installed as a distribution
            return ()
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def versions_tested() -> List[str]:
    """The installed distributions outside their tested range ([] when all are in it)."""
    out = []
    for dist, (low, high) in TESTED.items():
        have = version(dist)
        if not low <= have < high:
            out.append(f"{dist.replace('_', '-')} {'.'.join(map(str, have)) or '?'}")
    return out


def missing(*, instances: Tuple[Any, ...] = ()) -> List[Seam]:
    """The seams not where the table says.  Class attributes are looked up on
    their owner; instance attributes only on a given instance of their owner."""
    gone = []
    for seam in SEAMS:
        if not seam.instance:
            if not hasattr(seam.owner, seam.name):
                gone.append(seam)
            continue
        for obj in instances:
            if isinstance(obj, seam.owner) and not hasattr(obj, seam.name):
                gone.append(seam)
    return gone


def _fast_path_wanted() -> bool:
    # Read here, at import, because the overrides are class definitions.
    # Unset or blank: the setting's default (on).
    setting = settings.get("FAST_PATH")
    value = os.environ.get(setting.env)
    return bool(setting.default) if value is None or not value.strip() else settings.flag(value)


def _decide() -> Dict[Override, bool]:
    out_of_range = versions_tested()
    gone = {o for seam in missing() for o in seam.uses}
    wanted = _fast_path_wanted()
    if out_of_range:
        log.warning("watchers_bot: %s outside the tested range; running upstream's own "
                    "code paths (no overrides)", ", ".join(out_of_range))
    if gone:
        log.warning("watchers_bot: upstream moved names these overrides need, which are "
                    "off: %s", ", ".join(sorted(map(str, gone))))
    return {o: not out_of_range and o not in gone and (wanted or o not in FAST_OVERRIDES)
            for o in Override}


_ENABLED = _decide()


def enabled(override: Override) -> bool:
    """Whether ``override`` is installed in this process."""
    return _ENABLED[override]


#: Whether every fast-path override is on (tested versions, names present, not turned off).
FAST_PATH = all(_ENABLED[o] for o in FAST_OVERRIDES)


def proxy_rules() -> Optional[Callable[..., Any]]:
    """websocket-client's own proxy rules (``get_proxy_info(host, secure)`` returning
    ``(host, port, auth)``), or None when a release moved them."""
    rules = getattr(_URL, "get_proxy_info", None)
    return rules if callable(rules) else None
