"""One connection to the server: open it, send on it, close it.

The only client module that imports socketio (through :mod:`..transport`, whose
:mod:`~watchers_bot.transport.upstream` table lists every private name used
here).  A fresh ``socketio.Client`` per link, with python-socketio's own
reconnection off (the supervisor in :mod:`.connection` reconnects) and
``handle_sigint=False`` (no process-wide SIGINT handler).  Its errors are
translated here: a refusal by the server becomes :class:`AuthError` only when
it has the protocol's unauthorized shape; everything else is a retryable
:class:`ConnectFailed` (unless it would repeat: TLS, a failing token callable).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import socketio

from .. import protocol
from .._logging import ENGINEIO_LOG, SOCKETIO_LOG
from ..errors import AuthError, ConnectFailed
from ..transport import SocketIOClient

__all__ = ["Link", "LinkHandlers", "is_auth_refusal"]

log = logging.getLogger("watchers_bot")

# How long retiring a link waits for its threads.
JOIN_TIMEOUT = 5.0
_FIRST_JOIN = 0.5


class LinkHandlers:
    """What a link calls on its read thread (events) or python-socketio's threads."""

    __slots__ = ("on_disconnect", "on_exception", "on_message")

    def __init__(self, on_message: Callable[[Tuple[Any, ...]], None],
                 on_exception: Callable[["Link", Tuple[Any, ...]], None],
                 on_disconnect: Callable[["Link", Any], None]) -> None:
        self.on_message = on_message
        self.on_exception = on_exception
        self.on_disconnect = on_disconnect


# What a refusal of the credentials looks like.  The connect_error payload is not
# documented (see protocol.md): NestJS gateways answer {"message": "Unauthorized"}
# or a 401/403 status; the emulator says "Unauthorized: invalid bearer token".
_AUTH_WORDS = ("unauthori", "forbidden", "invalid token", "invalid bearer", "jwt",
               "authenticat")
_AUTH_CODES = frozenset({401, 403, "401", "403"})


def is_auth_refusal(args: Any) -> bool:
    """Whether a ``connect_error`` payload refuses the credentials (terminal), as
    opposed to a server that cannot take the connection now (retried)."""
    body = args[0] if isinstance(args, (list, tuple)) and len(args) == 1 else args
    if isinstance(body, dict):
        if any(body.get(key) in _AUTH_CODES for key in ("status", "statusCode", "code")):
            return True
        body = body.get("message") or body.get("reason") or body.get("error")
    if isinstance(body, dict):
        return is_auth_refusal(body)
    return isinstance(body, str) and any(word in body.lower() for word in _AUTH_WORDS)


def _root_cause(exc: BaseException) -> BaseException:
    # python-socketio and python-engineio re-raise a bare "Connection error";
    # the real reason (refused, DNS, TLS) is further down the chain.
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


class Link:
    """One socketio.Client and what we learned about it."""

    __slots__ = ("alive", "client", "number", "refusal")

    def __init__(self, client: SocketIOClient, number: int) -> None:
        self.client = client
        self.number = number
        self.alive = True
        self.refusal: Optional[Tuple[Any, ...]] = None

    @classmethod
    def open(cls, number: int, url: str, auth: Callable[[], Dict[str, Any]],
             handlers: LinkHandlers, timeout: float, *, ssl_verify: bool = True,
             ca_certs: Optional[str] = None, socketio_path: str = "socket.io") -> "Link":
        """Open one Socket.IO connection; AuthError if refused, ConnectFailed otherwise."""
        client = SocketIOClient(
            reconnection=False,
            handle_sigint=False,
            logger=SOCKETIO_LOG,
            engineio_logger=ENGINEIO_LOG,
            request_timeout=timeout,
            ssl_verify=ssl_verify,
            websocket_extra_options=(
                {"sslopt": {"ca_certs": ca_certs}} if ca_certs and ssl_verify else None
            ),
        )
        link = cls(client, number)
        client.on("disconnect", lambda reason=None: handlers.on_disconnect(link, reason))
        client.on("connect_error", lambda *args: setattr(link, "refusal", args))
        client.on(protocol.EVENT_MESSAGE, lambda *args: handlers.on_message(args))
        client.on(protocol.EVENT_EXCEPTION, lambda *args: handlers.on_exception(link, args))
        log.debug("connecting to %s (link %d)", url, number)
        try:
            # Asked here, not by python-socketio, so that its failure is told
            # apart from the network's: it would repeat on every attempt.
            credentials = auth()
        except Exception as exc:
            raise ConnectFailed(
                f"could not connect to {url}: the token callable failed: "
                f"{type(exc).__name__}: {exc}",
                retryable=False,
            ) from exc
        try:
            client.connect(url, auth=credentials, transports=["websocket"],
                           socketio_path=socketio_path, wait_timeout=timeout)
        except socketio.exceptions.ConnectionError as exc:
            link.alive = False
            refused = bool(client.failed_namespaces)
            link.retire()
            if refused:
                raise link.refused(url) from None
            root = _root_cause(exc)
            if isinstance(root, ssl.SSLError):
                # A certificate or TLS failure repeats on every attempt: say so, at once.
                raise ConnectFailed(
                    f"could not connect to {url}: TLS failed: "
                    f"{getattr(root, 'verify_message', None) or root.reason or root} "
                    "(check ca_certs=, or the server's certificate)",
                    retryable=False,
                ) from None
            detail = exc if root is exc else f"{exc} ({type(root).__name__}: {root})"
            raise ConnectFailed(f"could not connect to {url}: {detail}") from None
        except Exception as exc:  # anything else python-socketio raised while connecting
            link.alive = False
            link.retire()
            raise ConnectFailed(
                f"could not connect to {url}: {type(exc).__name__}: {exc}"
            ) from None
        log.info("connected to %s (link %d)", url, number)
        return link

    def refused(self, url: str) -> Exception:
        """The error for a CONNECT the server refused: AuthError only for the protocol's
        unauthorized shapes; anything else (a server shutting down, restarting,
        overloaded) is a ConnectFailed the supervisor retries with backoff."""
        args = list(self.refusal or ())
        text = protocol.describe_connect_error(args)
        if is_auth_refusal(args):
            return AuthError(text, raw=protocol.mask_secrets(args))
        return ConnectFailed(f"could not connect to {url}: the server refused: {text}")

    # ------------------------------------------------------------------ requests

    def send(self, event: str, payload: Any,
             callback: Callable[..., None]) -> Tuple[bool, Optional[int]]:
        """Emit a request; (False, None) if the link is down (nothing went out),
        else (True, python-socketio's ack id when known)."""
        if not self.alive:
            return False, None
        try:
            return True, self.client.send_request(event, payload, callback)
        except socketio.exceptions.SocketIOError:
            return False, None

    def forget_acks(self, entries: Iterable[Tuple[Optional[int], Callable[..., Any]]]) -> None:
        """Drop python-socketio's callbacks of requests given up on."""
        self.client.forget_acks(entries)

    def acks_waiting(self) -> int:
        """How many ack callbacks python-socketio holds on this link."""
        return self.client.acks_waiting()

    # ------------------------------------------------------------------ closing

    def retire(self, *, initiate: bool = True) -> None:
        """Close the link (unless it is closing by itself); wait, bounded, for its threads."""
        self.alive = False
        client = self.client
        eio = client.eio
        # A link that dropped closes itself: python-socketio disconnects it on
        # its own thread after a server-side disconnect.  A second, concurrent
        # disconnect would drain the write loop's stop sentinel and leave the
        # read loop waiting ~30 s, so only links still up are disconnected here.
        if initiate and eio.state == "connected":
            try:
                client.disconnect()
            except Exception as exc:  # half torn down already
                log.debug("error while closing link %d: %r", self.number, exc)
        me = threading.current_thread()
        deadline = time.monotonic() + JOIN_TIMEOUT
        reader = eio.read_loop_task
        if isinstance(reader, threading.Thread) and reader is not me:
            reader.join(min(_FIRST_JOIN, JOIN_TIMEOUT))
            if reader.is_alive():
                eio.queue.put(None)  # wake a write loop whose sentinel was drained
                reader.join(max(deadline - time.monotonic(), 0.0))
        writer = eio.write_loop_task
        if isinstance(writer, threading.Thread) and writer is not me:
            writer.join(max(deadline - time.monotonic(), 0.0))
