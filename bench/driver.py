"""One Python client under test, driven by ``bench/run.py`` over stdin/stdout.

    python bench/driver.py CLIENT URL TOKEN API_KEY

CLIENT is ``ours`` (``watchers_bot.Bot``) or ``raw`` (python-socketio's
``socketio.Client`` used the plain way: ``handle_sigint=False``,
``transports=['websocket']``, a ``message`` handler that hands payloads to the
consumer's thread through a ``queue.Queue``, ``call()`` for a blocking send and
``emit(callback=...)`` for pipelining).

Reads one JSON command per line, answers one JSON line per command (and a
``{"ready": ...}`` line first for the workloads the server has to feed).  See
``bench/run.py`` for the commands.  Every wait has a timeout.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import os
import queue
import sys
import threading
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Sequence, Tuple

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

WAIT = 120.0  # the longest any single wait in a workload may take
SEND_ROOM = "bench-send"  # nobody listens to it: sends are not echoed back
BOT_ID = "bench-bot"
RELISTEN_BACKOFF = 0.02  # the rooms bot's reconnect_delay (the default is 0.5 s)


def out(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(values: List[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def expected_text(i: int, size: int) -> str:
    head = f"{i:08d}"
    return head + "x" * (size - len(head)) if size > len(head) else head


class Ours:
    """``watchers_bot.Bot``."""

    name = "ours"

    def __init__(self, url: str, token: str, api_key: str) -> None:
        import warnings

        from watchers_bot import Bot, DuplicateBotWarning

        # connect_once() and hold() open a second bot with the same credentials on purpose
        warnings.simplefilter("ignore", DuplicateBotWarning)
        self._make = lambda **kw: Bot(token, api_key, BOT_ID, url=url, max_queue=0,
                                      connect_timeout=30, ack_timeout=30, **kw)
        self.bot = self._make()
        self.bot.connect()
        self._rooms_bot: Any = None

    def close(self) -> None:
        self.close_rooms()
        self.bot.close()

    # many rooms (bench/rooms.py) -------------------------------------------
    def listen_many(self, rooms: List[str], mode: str) -> Tuple[int, float]:
        """On a new bot: listen to every room (``args``: one ``listen(*rooms)``;
        ``loop``: ``listen(room)`` per room); returns (rooms acked, seconds)."""
        self.close_rooms()
        # A short first backoff step, so that re-listening, not the wait before
        # reconnecting, is what bench/rooms.py times after a drop.
        bot = self._rooms_bot = self._make(reconnect_delay=RELISTEN_BACKOFF)
        bot.connect()
        t0 = time.perf_counter()
        if mode == "args":
            bot.listen(*rooms, timeout=WAIT)
        elif mode == "loop":
            listen = bot.listen
            for room in rooms:
                listen(room)
        else:
            raise ValueError(f"unknown listen mode {mode!r}")
        seconds = time.perf_counter() - t0
        return len(set(bot.rooms) & set(rooms)), seconds

    def wait_relistened(self, n: int, reconnects: int) -> Dict[str, Any]:
        """Wait until the rooms bot reconnected (more than ``reconnects`` times)
        and is connected with all ``n`` rooms acknowledged again."""
        bot = self._rooms_bot
        ok = wait_until(lambda: bot.stats.reconnects > reconnects and bot.connected
                        and len(bot.rooms) == n, WAIT)
        at_ns = time.monotonic_ns()
        if not ok:
            raise TimeoutError(f"not connected again in {WAIT:g}s: state {bot.state}, "
                               f"{len(bot.rooms)} of {n} rooms")
        return {"at_ns": at_ns, "state": bot.state, "rooms": len(bot.rooms),
                "reconnects": bot.stats.reconnects}

    def reconnects(self) -> int:
        return self._rooms_bot.stats.reconnects if self._rooms_bot is not None else 0

    def close_rooms(self) -> None:
        if self._rooms_bot is not None:
            self._rooms_bot.close()
            self._rooms_bot = None

    # sends ---------------------------------------------------------------
    def seq(self, n: int) -> int:
        send = self.bot.send
        acks = 0
        for i in range(n):
            send(SEND_ROOM, f"seq {i}")
            acks += 1
        return acks

    def pipe(self, n: int, window: int) -> int:
        send_async = self.bot.send_async
        inflight: collections.deque = collections.deque()
        acks = 0
        for i in range(n):
            if len(inflight) >= window:
                inflight.popleft().result(WAIT)
                acks += 1
            inflight.append(send_async(SEND_ROOM, f"pipe {i}"))
        while inflight:
            inflight.popleft().result(WAIT)
            acks += 1
        return acks

    def pipe_cb(self, n: int, window: int) -> int:
        """The pattern users write: each done-callback sends the next one (a window of
        ``window`` in flight, refilled from ``add_done_callback``, as a Node client does)."""
        done = threading.Event()
        lock = threading.Lock()
        state = {"next": 0, "acked": 0, "failed": 0}
        send_async = self.bot.send_async

        def send_next() -> None:
            with lock:
                i = state["next"]
                if i >= n:
                    return
                state["next"] = i + 1
            send_async(SEND_ROOM, f"pipe {i}").add_done_callback(on_done)

        def on_done(future: Any) -> None:
            with lock:
                state["acked" if future.exception() is None else "failed"] += 1
                finished = state["acked"] + state["failed"] == n
            if finished:
                done.set()
            else:
                send_next()

        for _ in range(min(window, n)):
            send_next()
        if not done.wait(WAIT):
            raise TimeoutError(f"only {state['acked']} of {n} acks")
        if state["failed"]:
            raise RuntimeError(f"{state['failed']} of {n} sends failed")
        return state["acked"]

    # receiving -----------------------------------------------------------
    def listen(self, room: str) -> None:
        self.bot.listen(room)

    def consume(self, n: int, on_message: Callable[[str, Any], None]) -> None:
        receive = self.bot.receive
        for _ in range(n):
            msg = receive(WAIT)
            on_message(msg.text, msg.id)

    def connect_once(self) -> float:
        bot = self._make()
        try:
            t0 = time.perf_counter()
            bot.listen("bench-connect")
            return time.perf_counter() - t0
        finally:
            bot.close()

    def hold(self, room: str, n: int) -> Callable[[], int]:
        """A second client that listens to ``room`` and keeps what it gets unread."""
        bot = self._make()
        bot.listen(room)
        self._held = bot
        return lambda: bot.stats.received

    def release(self) -> None:
        self._held.close()
        self._held = None

    def idle(self, seconds: float) -> None:
        from watchers_bot import ReceiveTimeout

        with contextlib.suppress(ReceiveTimeout):
            self.bot.receive(seconds)


class Raw:
    """python-socketio's ``socketio.Client``, the plain way."""

    name = "raw"

    def __init__(self, url: str, token: str, api_key: str) -> None:
        import socketio

        self._socketio = socketio
        self.url = url
        self.token = token
        self.api_key = api_key
        self.inbox: queue.Queue = queue.Queue()
        self.sio = self._connect(self.inbox)

    def _connect(self, inbox: queue.Queue) -> Any:
        sio = self._socketio.Client(handle_sigint=False, reconnection=False)
        sio.on("message", inbox.put)
        sio.connect(self.url, auth={"bearer": self.token}, transports=["websocket"],
                    wait_timeout=30)
        return sio

    def close(self) -> None:
        self.close_rooms()
        self.sio.disconnect()

    def _payload(self, text: str) -> Dict[str, str]:
        return {"roomId": SEND_ROOM, "apiKey": self.api_key, "userId": BOT_ID, "text": text}

    def seq(self, n: int) -> int:
        call = self.sio.call
        acks = 0
        for i in range(n):
            call("external/send", self._payload(f"seq {i}"), timeout=WAIT)
            acks += 1
        return acks

    def pipe(self, n: int, window: int) -> int:
        payloads = (self._payload(f"pipe {i}") for i in range(n))
        return len(windowed(self.sio, "external/send", payloads, n, window))

    def listen_many(self, rooms: List[str], mode: str) -> Tuple[int, float]:
        """On a new connection: one listen per room, ``window`` in flight
        (``emit(callback=...)``); returns (rooms acked ok, seconds)."""
        if mode != "window":
            raise ValueError(f"unknown listen mode {mode!r} for raw")
        self.close_rooms()
        sio = self._rooms_sio = self._connect(queue.Queue())
        payloads = ({"roomId": room, "apiKey": self.api_key} for room in rooms)
        t0 = time.perf_counter()
        acks = windowed(sio, "external/listen", payloads, len(rooms), 256)
        seconds = time.perf_counter() - t0
        ok = sum(1 for a in acks if a and isinstance(a[0], dict) and a[0].get("status") == "ok")
        return ok, seconds

    def close_rooms(self) -> None:
        sio, self._rooms_sio = getattr(self, "_rooms_sio", None), None
        if sio is not None:
            sio.disconnect()

    # raw python-socketio's natural pipelining already releases its window from callbacks
    pipe_cb = pipe

    def listen(self, room: str) -> None:
        self.sio.call("external/listen", {"roomId": room, "apiKey": self.api_key}, timeout=WAIT)

    def consume(self, n: int, on_message: Callable[[str, Any], None]) -> None:
        get = self.inbox.get
        for _ in range(n):
            payload = get(timeout=WAIT)
            body = payload["message"]
            on_message(body["text"], body["id"])

    def connect_once(self) -> float:
        sio = self._socketio.Client(handle_sigint=False, reconnection=False)
        try:
            t0 = time.perf_counter()
            sio.connect(self.url, auth={"bearer": self.token}, transports=["websocket"],
                        wait_timeout=30)
            sio.call("external/listen", {"roomId": "bench-connect", "apiKey": self.api_key},
                     timeout=WAIT)
            return time.perf_counter() - t0
        finally:
            sio.disconnect()

    def hold(self, room: str, n: int) -> Callable[[], int]:
        inbox: queue.Queue = queue.Queue()
        sio = self._connect(inbox)
        sio.call("external/listen", {"roomId": room, "apiKey": self.api_key}, timeout=WAIT)
        self._held = sio
        return inbox.qsize

    def release(self) -> None:
        self._held.disconnect()
        self._held = None

    def idle(self, seconds: float) -> None:
        with contextlib.suppress(queue.Empty):
            self.inbox.get(timeout=seconds)


def windowed(sio: Any, event: str, payloads: Any, n: int, window: int) -> List[Sequence[Any]]:
    """Emit ``n`` requests with ``emit(callback=...)``, at most ``window`` in
    flight; returns the ack arguments (in ack order) once all ``n`` are in."""
    slots = threading.Semaphore(window)
    done = threading.Event()
    lock = threading.Lock()
    acks: List[Sequence[Any]] = []

    def on_ack(*args: Any) -> None:
        with lock:
            acks.append(args)
            if len(acks) == n:
                done.set()
        slots.release()

    emit = sio.emit
    for payload in payloads:
        if not slots.acquire(timeout=WAIT):
            raise TimeoutError("no ack in time")
        emit(event, payload, callback=on_ack)
    if n and not done.wait(WAIT):
        raise TimeoutError(f"only {len(acks)} of {n} acks")
    return acks


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


def run_command(client: Any, cmd: Dict[str, Any]) -> Dict[str, Any]:
    name = cmd["cmd"]
    if name == "seq":
        t0 = time.perf_counter()
        acks = client.seq(cmd["n"])
        seconds = time.perf_counter() - t0
        return {"acks": acks, "seconds": seconds}
    if name == "pipe":
        t0 = time.perf_counter()
        acks = client.pipe(cmd["n"], cmd.get("window", 256))
        seconds = time.perf_counter() - t0
        return {"acks": acks, "seconds": seconds}
    if name == "pipe_cb":
        t0 = time.perf_counter()
        acks = client.pipe_cb(cmd["n"], cmd.get("window", 256))
        seconds = time.perf_counter() - t0
        return {"acks": acks, "seconds": seconds}
    if name == "burst":
        n, size, room = cmd["n"], cmd.get("size", 100), cmd["room"]
        client.listen(room)
        state = {"count": 0, "in_order": True, "last_id": None, "first_ns": 0}

        def on_message(text: str, msg_id: Any) -> None:
            i = state["count"]
            if i == 0:
                state["first_ns"] = time.monotonic_ns()
            if text != expected_text(i, size) or (
                state["last_id"] is not None and not msg_id > state["last_id"]
            ):
                state["in_order"] = False
            state["last_id"] = msg_id
            state["count"] = i + 1

        out({"ready": True})
        client.consume(n, on_message)
        last_ns = time.monotonic_ns()
        return {"count": state["count"], "in_order": state["in_order"],
                "first_ns": state["first_ns"], "last_ns": last_ns}
    if name == "latency":
        n, room = cmd["n"], cmd["room"]
        client.listen(room)
        lat: List[float] = []

        def on_stamp(text: str, msg_id: Any) -> None:
            lat.append((time.monotonic_ns() - int(text)) / 1000.0)

        out({"ready": True})
        client.consume(n, on_stamp)
        return {"count": len(lat), "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99)}
    if name == "connect":
        times = [client.connect_once() for _ in range(cmd["k"])]
        times.sort()
        return {"count": len(times), "median_s": times[len(times) // 2]}
    if name == "memory":
        n, room = cmd["n"], cmd["room"]
        gc.collect()
        tracemalloc.start()
        try:
            received = client.hold(room, n)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            out({"ready": True})
            ok = wait_until(lambda: received() >= n, WAIT)
            time.sleep(0.05)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            count = received()
            client.release()
        finally:
            tracemalloc.stop()
        return {"count": count if ok else -count, "bytes_per_message": (after - before) / n}
    if name == "idle":
        seconds = cmd["seconds"]
        cpu0, t0 = time.process_time(), time.perf_counter()
        client.idle(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        return {"cpu_ms_per_s": cpu * 1000.0 / wall, "threads": threading.active_count()}
    if name == "listen_many":
        rooms = [f"{cmd['prefix']}{i}" for i in range(cmd["n"])]
        acked, seconds = client.listen_many(rooms, cmd["mode"])
        return {"acked": acked, "seconds": seconds, "reconnects": getattr(
            client, "reconnects", lambda: 0)()}
    if name == "wait_relistened":
        return client.wait_relistened(cmd["n"], cmd["reconnects"])
    if name == "close_rooms":
        client.close_rooms()
        return {}
    raise ValueError(f"unknown command {name!r}")


def main(argv: List[str]) -> int:
    kind, url, token, api_key = argv[1:5]
    client = {"ours": Ours, "raw": Raw}[kind](url, token, api_key)
    out({"ready": True, "client": kind})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                break
            try:
                result = run_command(client, cmd)
                result["ok"] = True
            except Exception as exc:  # reported, the run goes on
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out(result)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
