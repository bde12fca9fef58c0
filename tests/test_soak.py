"""Soak: a bot under continuous traffic and a random fault every few seconds.

Length: ``WATCHERS_SOAK_SECONDS`` (default 120).  Run it alone with
``python -m pytest tests/test_soak.py -s`` to see its figures, or leave it out
with ``-m 'not soak'``.

The bot listens to four rooms through the fault proxy; humans post in them
(one by one, and in bursts), two threads send, and every 1.5-3.5 s one fault
hits: RST, FIN, half-open link, server drop, server-side disconnect, restart
(sometimes staying down a while), frozen server, a latency spike, delayed
acks, ``exception`` errors.  It checks:

- delivery: on every socket the server wrote to, the bot got a prefix of what
  was written, each message once, in order per room (see
  ``faultkit.check_delivery``): nothing written while the link was up is lost.
  Messages posted while the bot had no link (or had not listened again yet)
  were written to no socket of the bot and are not expected; the unread tail
  of a link that died is counted (the protocol has no replay, so no client can
  get those);
- every send returned or raised a typed error; an acked send was posted; a
  ``ConnectFailed`` send was not;
- the bot's thread count and the memory allocated by the library stay flat.
"""

from __future__ import annotations

import collections
import gc
import os
import random
import threading
import time
import tracemalloc

import pytest
from faultkit import Consumer, check_delivery, client_threads, drain, make_rig, wait_until

from watchers_bot import AckTimeout, ConnectFailed, ConnectionLost, ServerError

pytest_plugins = ["conftest_faults"]

SOAK_SECONDS = float(os.environ.get("WATCHERS_SOAK_SECONDS", "120"))
ROOMS = ("r0", "r1", "r2", "r3")
SEND = "external/send"
LISTEN = "external/listen"
#: The client side of the library (protocol.py is left out: the emulator uses it too).
LIBRARY_FILES = (
    "*/watchers_bot/client/*", "*/watchers_bot/transport/*", "*/watchers_bot/models.py",
    "*/watchers_bot/_logging.py", "*/socketio/client.py", "*/socketio/base_client.py",
    "*/engineio/client.py", "*/engineio/base_client.py", "*/websocket/*",
)
#: Modules whose objects, counted, should not pile up (the server's are left out).
CENSUS_MODULES = ("watchers_bot.", "socketio.client", "socketio.base_client", "engineio.client",
                  "engineio.base_client", "websocket.", "concurrent.futures", "threading")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


def library_snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, pattern) for pattern in LIBRARY_FILES])


def library_bytes(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


def census() -> collections.Counter:
    """Live objects per class, for the client-side classes of the library and its stack
    (not the emulator's: it keeps a record of everything on purpose)."""
    gc.collect()
    counts: collections.Counter = collections.Counter()
    for obj in gc.get_objects():
        cls = type(obj)
        module = getattr(cls, "__module__", "")
        if (isinstance(module, str) and module.startswith(CENSUS_MODULES)
                and module != "watchers_bot.emulator"
                and not module.startswith("watchers_bot.emulator.")):
            counts[f"{module}.{cls.__qualname__}"] += 1
    return counts


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 180)
def test_soak(capsys):
    rng = random.Random(int(os.environ.get("WATCHERS_SOAK_SEED", "20261125")))
    rig = make_rig()
    emu, proxy = rig.emulator, rig.proxy
    tracemalloc.start(1)
    stop = threading.Event()
    figures: dict = collections.Counter()
    send_outcomes: dict = {}
    surprises: list = []
    faults: list = []
    clean_ends: list = []
    victims: dict = {}  # sid -> the fault that hit it
    lock = threading.Lock()
    try:
        bot = rig.bot(connect_timeout=3.0, ack_timeout=2.0, reconnect_delay=0.05,
                      reconnect_delay_max=0.5)
        bot.listen(*ROOMS)
        consumer = Consumer(bot)

        def poster() -> None:
            i = 0
            while not stop.is_set():
                room = ROOMS[i % len(ROOMS)]
                try:
                    if i % 97 == 0:
                        emu.post_many(room, [f"burst {i}-{k}" for k in range(40)])
                        figures["posted"] += 40
                    else:
                        emu.post(room, f"p{i}")
                        figures["posted"] += 1
                except Exception:  # the server is restarting: a human's post fails too
                    figures["posts refused (server down)"] += 1
                    stop.wait(0.05)
                i += 1
                stop.wait(0.004)

        def sender(n: int) -> None:
            i = 0
            while not stop.is_set():
                text = f"s{n}-{i}"
                i += 1
                try:
                    bot.send(ROOMS[i % len(ROOMS)], text, timeout=2.0)
                    outcome = "ok"
                except (ConnectionLost, AckTimeout, ConnectFailed, ServerError) as exc:
                    outcome = type(exc).__name__
                except Exception as exc:  # an untyped error is a bug
                    outcome = f"untyped {type(exc).__name__}"
                    surprises.append(repr(exc))
                with lock:
                    send_outcomes[text] = outcome
                stop.wait(0.01)

        def wait_connected(what: str) -> None:
            try:
                wait_until(lambda: bot.connected, 30, f"the bot to come back after {what}")
            except AssertionError as exc:
                surprises.append(str(exc))

        def fault(kind: str) -> None:
            for sid in emu.clients:
                victims[sid] = kind
            if kind == "rst":
                proxy.cut()
            elif kind == "fin":
                proxy.close_links()
            elif kind == "half-open":
                proxy.silence(reset_after=4.0)
            elif kind == "drop":
                emu.drop()
            elif kind == "kick":
                clean_ends.extend(emu.clients)
                emu.kick()
            elif kind == "restart":
                clean_ends.extend(emu.clients)
                emu.restart(down_for=rng.choice([0.0, 0.5, 2.0]))
            elif kind == "crash":
                emu.restart(down_for=rng.choice([0.0, 1.0]), drop=True)
            elif kind == "freeze":
                emu.freeze()
                wait_until(lambda: not bot.connected, 5, "the frozen link to be noticed")
                wait_connected(kind)
                emu.thaw()
            elif kind == "latency":
                proxy.set_latency(0.25)
                stop.wait(2.0)
                proxy.set_latency(0.0)
            elif kind == "slow acks":
                emu.set_ack(SEND, "delay", delay=2.5, times=4)
            elif kind == "exceptions":
                emu.set_ack(SEND, "exception", times=4)
            elif kind == "slow re-listen":
                emu.set_ack(LISTEN, "delay", delay=1.0, times=2)
                emu.kick()
            wait_connected(kind)

        kinds = ["rst", "fin", "half-open", "drop", "kick", "restart", "crash", "freeze",
                 "latency", "slow acks", "exceptions", "slow re-listen"]
        workers = [threading.Thread(target=poster, name="soak-poster")]
        workers += [threading.Thread(target=sender, args=(n,), name=f"soak-sender-{n}")
                    for n in range(2)]
        for t in workers:
            t.start()

        start = time.monotonic()
        end = start + SOAK_SECONDS
        warm = start + min(10.0, SOAK_SECONDS / 4)
        threads_baseline = memory_baseline = None
        first_snapshot = None
        objects_baseline: collections.Counter = collections.Counter()
        rss_baseline = 0
        threads_max = 0
        # The first few faults cover every kind once, then they are random.
        schedule = rng.sample(kinds, len(kinds))
        while time.monotonic() < end:
            stop.wait(rng.uniform(1.5, 3.5))
            if threads_baseline is None and time.monotonic() >= warm and bot.connected:
                threads_baseline = len(client_threads())
                first_snapshot = library_snapshot()
                memory_baseline = library_bytes(first_snapshot)
                objects_baseline = census()
                rss_baseline = rss_kib()
            if threads_baseline is not None:
                threads_max = max(threads_max, len(client_threads()))
            if time.monotonic() >= end:
                break
            kind = schedule.pop(0) if schedule else rng.choice(kinds)
            faults.append(kind)
            fault(kind)

        stop.set()
        for t in workers:
            t.join(10)
        assert not any(t.is_alive() for t in workers), "a poster or sender hung"
        emu.set_ack(SEND, "normal")
        emu.set_ack(LISTEN, "normal")
        wait_until(lambda: bot.connected and all(len(emu.listeners(r)) == 1 for r in ROOMS),
                   30, "the bot to be connected and listening at the end")
        live = drain(consumer, emu, ROOMS)

        # flat: threads back to the baseline once settled, memory not growing
        wait_until(lambda: len(client_threads()) <= (threads_baseline or 99), 10,
                   f"threads back to {threads_baseline}: {sorted(map(str, client_threads()))}")
        threads_end = len(client_threads())
        last_snapshot = library_snapshot()
        memory_end = library_bytes(last_snapshot)
        top_growth = [str(stat) for stat in
                      last_snapshot.compare_to(first_snapshot, "lineno")[:5]]
        objects_end = census()
        rss_end = rss_kib()
        stats = bot.stats
        bot.close()
        consumer.stop()
    finally:
        stop.set()
        tracemalloc.stop()
        rig.close()

    report = check_delivery(emu.written, consumer.received, complete_sids=live)
    clean_tail = sum(report.tails.get(sid, 0) for sid in set(clean_ends))
    tails_by_fault: collections.Counter = collections.Counter()
    for sid, tail in report.tails.items():
        if tail:
            tails_by_fault[victims.get(sid, "?")] += tail
    outcomes = collections.Counter(send_outcomes.values())
    posted = {m.text for m in emu.sent}
    acked_not_posted = [t for t, o in send_outcomes.items() if o == "ok" and t not in posted]
    failed_but_posted = [t for t, o in send_outcomes.items()
                         if o == "ConnectFailed" and t in posted]
    growth = memory_end - (memory_baseline or memory_end)
    piling_up = {name: (objects_baseline[name], n) for name, n in objects_end.items()
                 if n > objects_baseline[name] + 10}

    # The figures are the point of a soak run: shown even when pytest captures output.
    with capsys.disabled():
        print(f"\n--- soak: {SOAK_SECONDS:g} s, {len(faults)} faults ---")
        print("faults:     ", dict(collections.Counter(faults)))
        print(f"messages:    posted {figures['posted']}, written to the bot {report.written}, "
              f"received {report.received}, lost while the link was up 0 (checked), "
              f"unread tails of dead links {report.tail_lost} (by fault: "
              f"{dict(tails_by_fault)}; after clean server disconnects: {clean_tail}), "
              f"posts refused while the server was down {figures['posts refused (server down)']}")
        print(f"sends:       {len(send_outcomes)}: {dict(outcomes)}; acked but not posted "
              f"{len(acked_not_posted)}; ConnectFailed but posted {len(failed_but_posted)}")
        print(f"bot:         reconnects {stats.reconnects}, links {report.sockets}, "
              f"dropped {stats.dropped}, malformed {stats.malformed}")
        print(f"threads:     bot+client baseline {threads_baseline}, max {threads_max}, "
              f"end {threads_end}")
        print(f"memory:      library allocations {memory_baseline} -> {memory_end} bytes "
              f"({growth:+d}); library objects {sum(objects_baseline.values())} -> "
              f"{sum(objects_end.values())}; RSS {rss_baseline} -> {rss_end} KiB "
              "(RSS includes the test's own records)")

    assert not surprises, surprises
    assert set(outcomes) <= {"ok", "ConnectionLost", "AckTimeout", "ConnectFailed",
                             "ServerError"}
    assert not acked_not_posted, acked_not_posted[:10]
    assert not failed_but_posted, failed_but_posted[:10]
    assert outcomes["ok"] > 0
    assert stats.dropped == 0
    assert stats.malformed == 0
    assert stats.reconnects >= len(faults) // 2
    assert report.received > 0
    assert threads_end <= (threads_baseline or 0)
    assert threads_max <= (threads_baseline or 0) + 6, (threads_baseline, threads_max)
    assert growth < 256_000, f"library memory grew by {growth} bytes: {top_growth}"
    assert not piling_up, f"objects piling up (baseline, end): {piling_up}"
