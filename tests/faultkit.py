"""Helpers shared by the fault, fuzz and soak tests (their fixtures are in
``conftest_faults.py``, loaded with ``pytest_plugins = ["conftest_faults"]``).

:func:`make_rig` builds a :class:`Rig`: an emulator with short pings (1 s interval, 1 s
timeout, so a half-open link is noticed in about 2 s) that records which
message was written to which socket, a :class:`faultproxy.FaultProxy` in front
of it, and a factory of bots connected through the proxy.
"""

from __future__ import annotations

import array
import collections
import os
import threading
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from faultproxy import FaultProxy
from helpers import CLIENT_THREAD_MARKERS, client_threads, wait_until  # noqa: F401 (re-exported)

from watchers_bot import Bot
from watchers_bot.emulator import Emulator, WrittenMessage

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

TOKEN = "test-token"
KEY = "test-key"
BOT_ID = "bot-1"

#: Errors a send may raise on purpose; anything else is a bug.
TYPED_SEND_ERRORS: Tuple[str, ...] = (
    "ConnectionLost", "AckTimeout", "ConnectFailed", "ServerError",
)





class Rig:
    """An emulator, a fault proxy in front of it, and bots connected through the proxy."""

    def __init__(self, emulator: Emulator, proxy: FaultProxy) -> None:
        self.emulator = emulator
        self.proxy = proxy
        self.bots: List[Bot] = []

    def bot(self, **kwargs: Any) -> Bot:
        options: Dict[str, Any] = {
            "connect_timeout": 3.0, "ack_timeout": 3.0,
            "reconnect_delay": 0.05, "reconnect_delay_max": 0.5,
        }
        options.update(kwargs)
        via_proxy = options.pop("via_proxy", True)
        url = self.proxy.url if via_proxy else self.emulator.url
        bot = Bot(options.pop("token", TOKEN), KEY, options.pop("bot_id", BOT_ID), url=url,
                  **options)
        self.bots.append(bot)
        return bot

    def close(self) -> None:
        for bot in self.bots:
            bot.close()
        self.proxy.stop()
        self.emulator.stop()


def make_rig(**emulator_options: Any) -> Rig:
    options: Dict[str, Any] = {
        "tokens": [TOKEN], "api_keys": [KEY], "ping_interval": 1, "ping_timeout": 1,
        "record_writes": True, "echo_sender": False,
    }
    options.update(emulator_options)
    emulator = Emulator(**options).start()
    proxy = FaultProxy(("127.0.0.1", emulator.port)).start()
    return Rig(emulator, proxy)


# --------------------------------------------------------------------------- delivery


class DeliveryReport:
    """What :func:`check_delivery` found (all counts are messages)."""

    def __init__(self) -> None:
        self.written = 0  # written by the server to one of the bot's sockets
        self.received = 0  # received by the consumer
        self.tail_lost = 0  # written to a link that died, after the last one read on it
        self.tails: Dict[str, int] = {}  # tail_lost per socket
        self.sockets = 0

    def __repr__(self) -> str:
        return (f"<DeliveryReport written={self.written} received={self.received} "
                f"tail_lost={self.tail_lost} sockets={self.sockets}>")


def check_delivery(
    written: Sequence[WrittenMessage],
    received: Sequence[Tuple[str, Any]],
    *,
    complete_sids: Iterable[str] = (),
) -> DeliveryReport:
    """Check what a consumer received against what the server wrote to the bot.

    ``written`` are the emulator's records (every socket in them is the bot's);
    ``received`` is ``(room_id, message_id)`` in the order the consumer got them.

    - nothing is received twice, nothing is received that was not written;
    - each room's messages come in server order (ids increase);
    - on each socket, what was received is a *prefix* of what was written to
      it: the only messages allowed to be missing are the tail of a link that
      died (written to the kernel, never read by the client).  Messages posted
      while the bot had no link (or had not listened again yet) were written to
      no socket of the bot and are not expected;
    - on the sockets in ``complete_sids`` (links that ended cleanly or are still
      up after a final drain) everything written was received.
    """
    report = DeliveryReport()
    ids = [m for _, m in received]
    assert len(ids) == len(set(ids)), "a message was delivered twice: " + repr(
        [m for m, n in collections.Counter(ids).items() if n > 1][:10])
    per_room: Dict[str, List[Any]] = collections.defaultdict(list)
    for room, m in received:
        per_room[room].append(m)
    for room, got in per_room.items():
        assert got == sorted(got), f"room {room}: out of order: {_first_inversion(got)}"
    by_sid: Dict[str, List[WrittenMessage]] = collections.defaultdict(list)
    for w in written:
        by_sid[w.sid].append(w)
    written_ids = {w.message_id for w in written}
    unexpected = [m for m in ids if m not in written_ids]
    assert not unexpected, f"received messages never written to the bot: {unexpected[:10]}"
    got = set(ids)
    complete = set(complete_sids)
    for sid, ws in by_sid.items():
        read = [i for i, w in enumerate(ws) if w.message_id in got]
        last = read[-1] if read else -1
        holes = [w.message_id for w in ws[:last + 1] if w.message_id not in got]
        assert not holes, (f"socket {sid}: messages missing before the last one read "
                           f"(lost while the link was up): {holes[:10]}")
        tail = len(ws) - (last + 1)
        if sid in complete:
            assert tail == 0, (f"socket {sid} ended cleanly but {tail} message(s) written "
                               f"to it never arrived: {[w.message_id for w in ws[last + 1:]][:10]}")
        report.tail_lost += tail
        report.tails[sid] = tail
    report.written = len(written)
    report.received = len(ids)
    report.sockets = len(by_sid)
    return report


def _first_inversion(seq: Sequence[Any]) -> Any:
    for i in range(1, len(seq)):
        if seq[i] < seq[i - 1]:
            return seq[max(i - 3, 0):i + 3]
    return None


class Consumer:
    """A thread reading ``bot.messages()``; ``received`` lists ``(room_id, id)``.

    Ids and room indexes are kept in arrays, not as the objects the library
    decoded, so that a long run does not count the consumer's records as the
    library's memory.
    """

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._room_names: List[str] = []
        self._room_index: Dict[str, int] = {}
        self._rooms = array.array("l")
        self._ids = array.array("q")
        self._other: List[Tuple[str, Any]] = []  # ids that are not ints
        self.error: Any = None
        self.thread = threading.Thread(target=self._run, name="test-consumer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for msg in self.bot.messages():
                if isinstance(msg.id, int) and -2**63 <= msg.id < 2**63:
                    index = self._room_index.get(msg.room_id)
                    if index is None:
                        index = self._room_index[msg.room_id] = len(self._room_names)
                        self._room_names.append(msg.room_id)
                    self._rooms.append(index)
                    self._ids.append(msg.id)
                else:
                    self._other.append((msg.room_id, msg.id))
        except Exception as exc:  # surfaced by the test
            self.error = exc

    @property
    def received(self) -> List[Tuple[str, Any]]:
        names = self._room_names
        return [(names[r], m) for r, m in zip(self._rooms, self._ids)] + self._other

    def count(self) -> int:
        return len(self._ids) + len(self._other)

    def stop(self, timeout: float = 5.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the consumer did not end after close()"


def drain(consumer: Consumer, emulator: Emulator, rooms: Iterable[str],
          timeout: float = 10.0) -> List[str]:
    """Post a last message in each room and wait until the consumer got it and
    everything written before it to the sockets connected now; returns those
    sids (their delivery must then be complete).

    The marker matters: a post is written to the socket by the server's writer
    thread a moment later, so "everything written so far" alone could miss it.
    """
    sids = set(emulator.clients)
    markers = {emulator.post(room, "drain")["message"]["id"] for room in rooms}

    def done() -> bool:
        want = {w.message_id for w in emulator.written if w.sid in sids} | markers
        return want <= {m for _, m in consumer.received}

    wait_until(done, timeout, "the consumer to read everything written to the live link")
    return sorted(sids)
