"""A controllable TCP proxy on loopback, for fault-injection tests.

::

    with FaultProxy(("127.0.0.1", emulator.port)) as proxy:
        bot = Bot(..., url=proxy.url)
        proxy.set_latency(0.2)        # each chunk is held 200 ms, each way
        proxy.set_throttle(10_000)    # bytes per second, each way, per link
        proxy.cut()                   # RST: SO_LINGER 0, then close
        proxy.close_links()           # FIN: an orderly close of both sides
        proxy.silence()               # half-open: nothing forwarded, no FIN, no RST
        proxy.refuse(True)            # new connections are reset at once

Faults apply to the links open when they are called (``silence``, ``cut``,
``close_links``); ``set_latency``, ``set_throttle`` and ``refuse`` apply to
open and new links alike.  One thread accepts; each link has one thread per
direction.  Every wait is bounded and :meth:`stop` joins every thread.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import struct
import threading
import time
from typing import Deque, List, Optional, Tuple

_POLL = 0.02  # how often idle threads look at their flags
_CHUNK = 65536
_JOIN_TIMEOUT = 3.0
_SEND_TIMEOUT = 2.0  # a peer that reads nothing for this long ends the link


def _reset(sock: socket.socket) -> None:
    """Close with RST: SO_LINGER on, zero timeout."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _finish(sock: socket.socket) -> None:
    """Close with FIN."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One proxied connection: client <-> upstream, one pump thread per direction."""

    def __init__(self, proxy: "FaultProxy", client: socket.socket, upstream: socket.socket,
                 number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.number = number
        self.silent = False
        self.silent_until = float("inf")  # a silent link is reset after this time
        self.ended = threading.Event()
        self.bytes = {"up": 0, "down": 0}
        self._end_lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream, "up"),
                             name=f"faultproxy-{number}-up", daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client, "down"),
                             name=f"faultproxy-{number}-down", daemon=True),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def end(self, how: str = "fin") -> None:
        """End the link: ``"fin"`` (orderly close) or ``"rst"`` (reset), both sides."""
        with self._end_lock:
            if self.ended.is_set():
                return
            self.ended.set()
        close = _reset if how == "rst" else _finish
        close(self.client)
        close(self.upstream)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        queued: Deque[Tuple[float, bytes]] = collections.deque()
        sent_at = time.monotonic()  # throttle: when the bytes sent so far are "paid for"
        try:
            while not self.ended.is_set() and not self.proxy._stopping.is_set():
                if self.silent:
                    # Half-open: neither read nor write; the sockets stay open.
                    if time.monotonic() >= self.silent_until:
                        self.end("rst")  # like a NAT entry that finally expires
                        return
                    self.ended.wait(_POLL)
                    continue
                now = time.monotonic()
                wait = _POLL
                if queued:
                    wait = min(wait, max(queued[0][0] - now, 0.0))
                readable, _, _ = select.select([src], [], [], wait)
                if readable and not self.silent:
                    data = src.recv(_CHUNK)
                    if not data:  # the peer closed its side: pass the FIN on
                        self._flush(queued, dst, direction, sent_at, until=float("inf"))
                        self.end("fin")
                        return
                    queued.append((time.monotonic() + self.proxy.latency, data))
                if not self.silent:
                    sent_at = self._flush(queued, dst, direction, sent_at,
                                          until=time.monotonic())
        except OSError:
            self.end("fin")

    def _flush(self, queued: Deque[Tuple[float, bytes]], dst: socket.socket, direction: str,
               sent_at: float, until: float) -> float:
        while queued and queued[0][0] <= until and not self.ended.is_set():
            _, data = queued.popleft()
            rate = self.proxy.throttle
            if rate:
                # Send in slices, each after the time its bytes cost has passed.
                for i in range(0, len(data), max(rate // 20, 1)):
                    piece = data[i:i + max(rate // 20, 1)]
                    sent_at = max(sent_at, time.monotonic()) + len(piece) / rate
                    delay = sent_at - time.monotonic()
                    if delay > 0 and self.ended.wait(delay):
                        return sent_at
                    dst.sendall(piece)
            else:
                dst.sendall(data)
            self.bytes[direction] += len(data)
        return sent_at


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` to ``upstream`` that can misbehave on demand."""

    def __init__(self, upstream: Tuple[str, int], *, connect_timeout: float = 2.0) -> None:
        self.upstream = upstream
        self.connect_timeout = connect_timeout
        self.latency = 0.0
        self.throttle = 0  # bytes/s per direction per link; 0 = unlimited
        self._refuse = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._links: List[_Link] = []
        self._numbers = 0
        self.accepted = 0
        self.refused = 0
        #: ``time.monotonic()`` of every connection attempt, accepted or not.
        self.attempts: List[float] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="faultproxy-accept",
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every link (FIN), stop accepting, join every thread (bounded)."""
        self._stopping.set()
        self._thread.join(_JOIN_TIMEOUT)
        with contextlib.suppress(OSError):
            self._listener.close()
        for link in self.links(alive_only=False):
            link.end("fin")
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for link in self.links(alive_only=False):
            for t in link.threads:
                t.join(max(deadline - time.monotonic(), 0.0))

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def threads(self) -> List[threading.Thread]:
        """Threads still running (accept loop and pumps)."""
        out = [self._thread] if self._thread.is_alive() else []
        for link in self.links(alive_only=False):
            out.extend(t for t in link.threads if t.is_alive())
        return out

    # ------------------------------------------------------------------ accepting

    def _accept(self) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener], [], [], _POLL * 5)
            if not readable:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            self.attempts.append(time.monotonic())
            if self._refuse:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=self.connect_timeout)
            except OSError:
                self.refused += 1
                _reset(client)  # the server is down: the client sees a refused link
                continue
            for s in (client, upstream):
                s.settimeout(_SEND_TIMEOUT)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._numbers += 1
                link = _Link(self, client, upstream, self._numbers)
                # forget ended links so a long soak does not accumulate them
                self._links = [lk for lk in self._links if not lk.ended.is_set()
                               or any(t.is_alive() for t in lk.threads)]
                self._links.append(link)
                self.accepted += 1
            link.start()

    # ------------------------------------------------------------------ faults

    def links(self, alive_only: bool = True) -> List[_Link]:
        with self._lock:
            return [lk for lk in self._links if not (alive_only and lk.ended.is_set())]

    def set_latency(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it (each direction)."""
        self.latency = float(seconds)

    def set_throttle(self, bytes_per_second: int) -> None:
        """Forward at most this many bytes per second per direction per link (0: no limit)."""
        self.throttle = int(bytes_per_second)

    def refuse(self, on: bool = True) -> None:
        """Reset new connections at once (a server that is down)."""
        self._refuse = bool(on)

    def cut(self) -> int:
        """Reset every open link (RST to both sides); returns how many."""
        links = self.links()
        for link in links:
            link.end("rst")
        return len(links)

    def close_links(self) -> int:
        """Close every open link in order (FIN to both sides); returns how many."""
        links = self.links()
        for link in links:
            link.end("fin")
        return len(links)

    def silence(self, reset_after: Optional[float] = None) -> int:
        """Stop forwarding on every open link, both ways, keeping the sockets open
        (no FIN, no RST): a half-open link.  New links are not affected.  With
        ``reset_after``, the silent links are reset that many seconds later
        (so a long run does not pile them up).  Returns how many went silent."""
        links = self.links()
        until = float("inf") if reset_after is None else time.monotonic() + reset_after
        for link in links:
            link.silent_until = until
            link.silent = True
        return len(links)

    def wait_for_links(self, count: int, timeout: float = 5.0) -> List[_Link]:
        """Wait until exactly ``count`` links are open (polling, bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            links = [lk for lk in self.links() if not lk.silent]
            if len(links) == count:
                return links
            if time.monotonic() >= deadline:
                raise TimeoutError(f"faultproxy: {len(links)} open link(s), wanted {count}")
            time.sleep(_POLL)
