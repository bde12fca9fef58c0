"""Fault injection: for each fault, what the user of a Bot sees.

The bots here talk to the emulator through ``tests/faultproxy.py`` (a TCP
proxy that can cut, close, silence, delay and throttle the link); the
emulator's own controls give the server-side faults.  Short pings (1 s + 1 s)
make half-open links detectable in about two seconds.  Behaviour already
covered by ``test_bot.py`` is not repeated; these tests add the faults and
what each one looks like from the API.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from faultkit import (
    KEY,
    TOKEN,
    TYPED_SEND_ERRORS,
    Consumer,
    check_delivery,
    client_threads,
    drain,
    make_rig,
    wait_until,
)

from watchers_bot import (
    AckTimeout,
    AuthError,
    Bot,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    ReceiveTimeout,
    ServerError,
)

pytest_plugins = ["conftest_faults"]

pytestmark = pytest.mark.timeout(60)

SEND = "external/send"
LISTEN = "external/listen"


class StateLog:
    """Records the bot's state changes (heard through ``on_state_change``)."""

    def __init__(self, bot: Bot) -> None:
        self.changes: list = []
        self.lock = threading.Lock()
        bot.on_state_change(self._on)

    def _on(self, old: str, new: str) -> None:
        with self.lock:
            self.changes.append((time.monotonic(), old, new))

    def states(self) -> list:
        with self.lock:
            return [new for _, _, new in self.changes]

    def first(self, state: str) -> float:
        with self.lock:
            return next(t for t, _, new in self.changes if new == state)


def send_outcome(bot: Bot, room: str, text: str, timeout: float) -> str:
    """``"ok"`` or the name of the typed error the send raised (anything else propagates)."""
    try:
        bot.send(room, text, timeout=timeout)
    except (ConnectionLost, AckTimeout, ConnectFailed, ServerError) as exc:
        return type(exc).__name__
    return "ok"


# --------------------------------------------------------------------------- the tools


def test_emulator_records_what_it_wrote_to_each_socket(proxied):
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    emu.post("r", "one")
    emu.post_many("r", ["two", "three"])
    emu.push_raw("message", {"roomId": "r", "message": {"id": "x", "text": "raw"}}, room="r")
    got = [m.id for m in bot.messages(timeout=1)]
    [sid] = emu.clients
    assert [(w.sid, w.room_id, w.message_id) for w in emu.written] == [
        (sid, "r", i) for i in got]
    assert got[-1] == "x"
    assert len(got) == 4
    emu.freeze()  # held back by a frozen writer: not written, so not recorded
    emu.post("r", "held")
    time.sleep(0.2)  # part of the fault schedule: the writer is stalled
    assert len(emu.written) == 4
    emu.thaw()
    wait_until(lambda: len(emu.written) == 5, what="the held message to be written")


def test_proxy_forwards_with_latency_and_throttle(proxied):
    proxied.emulator.set_ping(10, 10)  # a throttled link must not look dead
    bot = proxied.bot(include_own=True)
    proxied.emulator.echo_sender = True
    bot.listen("r")
    proxied.proxy.set_latency(0.15)
    start = time.monotonic()
    bot.send("r", "slow")
    assert time.monotonic() - start >= 0.3  # one round trip, both ways delayed
    assert bot.receive(timeout=5).text == "slow"
    proxied.proxy.set_latency(0)
    proxied.proxy.set_throttle(40_000)
    start = time.monotonic()
    bot.send("r", "x" * 60_000, timeout=10)  # ~1.5 s upstream at 40 kB/s
    assert time.monotonic() - start >= 1.0
    # What the user sees when the link is too slow for the ack timeout: AckTimeout
    # (outcome unknown), and the message was in fact posted.
    with pytest.raises(AckTimeout, match="may or may not"):
        bot.send("r", "y" * 60_000, timeout=0.5)
    proxied.emulator.wait_for_sent(2, timeout=10)
    proxied.proxy.set_throttle(0)
    assert bot.send("r", "fast again") is None
    assert bot.connected
    assert bot.stats.reconnects == 0


# --------------------------------------------------------------------------- link faults


@pytest.mark.parametrize("fault", ["cut", "close_links"])
def test_link_cut_or_closed(proxied, fault):
    """RST or FIN on the link: waiting sends fail at once with ConnectionLost, the
    state goes reconnecting -> connected, rooms are listened to again."""
    emu = proxied.emulator
    bot = proxied.bot()
    states = StateLog(bot)
    bot.listen("a", "b")
    emu.set_ack(SEND, "withhold", times=1)
    future = bot.send_async("a", "in flight", timeout=30)
    emu.wait_for_sent(1)
    start = time.monotonic()
    assert getattr(proxied.proxy, fault)() == 1
    with pytest.raises(ConnectionLost, match="may or may not have been posted"):
        future.result(5)
    assert time.monotonic() - start < 1.0
    wait_until(lambda: bot.connected and bot.stats.reconnects == 1, 10, "reconnection")
    wait_until(lambda: states.states()[-2:] == ["reconnecting", "connected"], 2, "states")
    emu.wait_for_listeners("a")
    emu.wait_for_listeners("b")
    emu.post("b", "after")
    assert bot.receive(timeout=5).text == "after"
    assert bot.send("a", "works") is None
    assert bot.health().ok
    assert bot.health().reconnects == 1


def test_silent_link_is_detected_within_the_ping_window(proxied):
    """Half-open (nothing forwarded, no FIN/RST): the client notices when no ping
    came for pingInterval + pingTimeout (1 + 1 s here), fails the waiting send
    with ConnectionLost and reconnects by itself."""
    emu = proxied.emulator
    bot = proxied.bot(ack_timeout=30)
    states = StateLog(bot)
    bot.listen("r")
    proxied.proxy.wait_for_links(1)
    future = bot.send_async("r", "into the void", timeout=30)
    start = time.monotonic()
    proxied.proxy.silence()
    # A send on the silent link goes nowhere and is not acknowledged.
    with pytest.raises(ConnectionLost):
        future.result(10)
    detected = time.monotonic() - start
    assert detected < 1 + 1 + 1.5, f"half-open link noticed after {detected:.1f}s"
    wait_until(lambda: bot.connected and bot.stats.reconnects == 1, 10, "reconnection")
    assert "reconnecting" in states.states()
    assert states.first("reconnecting") - start < 3.5
    emu.wait_for_listeners("r")
    emu.post("r", "after silence")
    assert bot.receive(timeout=5).text == "after silence"


def test_frozen_server_is_detected_and_recovered(proxied):
    """The server's writer stalls (emulator.freeze): same as a silent link."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    start = time.monotonic()
    emu.freeze()
    wait_until(lambda: bot.state == "reconnecting", 4, "the frozen link to be noticed")
    assert time.monotonic() - start < 3.5
    wait_until(lambda: bot.connected, 10, "reconnection")
    emu.wait_for_listeners("r")
    emu.post("r", "thawed")
    assert bot.receive(timeout=5).text == "thawed"


# --------------------------------------------------------------------------- server faults


def test_server_disconnect_fails_pending_and_delivers_everything_before_it(proxied):
    """A server-side disconnect (deploy, kick): messages written before it all
    arrive, the waiting send fails with ConnectionLost, the bot comes back."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    consumer = Consumer(bot)
    emu.post_many("r", [f"m{i}" for i in range(300)])
    emu.set_ack(SEND, "withhold", times=1)
    future = bot.send_async("r", "unacked", timeout=30)
    emu.wait_for_sent(1)
    [old] = emu.clients
    emu.kick()
    with pytest.raises(ConnectionLost):
        future.result(5)
    wait_until(lambda: bot.connected and bot.stats.reconnects == 1, 10, "reconnection")
    emu.wait_for_listeners("r")
    emu.post("r", "after kick")
    live = drain(consumer, emu, ["r"])
    bot.close()
    consumer.stop()
    report = check_delivery(emu.written, consumer.received, complete_sids=[old, *live])
    assert report.received == 302  # with the drain marker
    assert report.tail_lost == 0


def test_server_down_for_a_while_then_back(proxied):
    """Server down for 3 s: the bot keeps trying with capped, jittered backoff
    (spaced attempts, no storm), a send made meanwhile raises ConnectFailed
    after connect_timeout with nothing sent, and the bot recovers on its own."""
    emu = proxied.emulator
    bot = proxied.bot(reconnect_delay=0.2, reconnect_delay_max=0.8, connect_timeout=1.0)
    bot.listen("r")
    attempts_before = len(proxied.proxy.attempts)
    requests_before = len(emu.requests)
    restart = threading.Thread(target=emu.restart, kwargs={"down_for": 3.0})
    t0 = time.monotonic()
    restart.start()
    wait_until(lambda: bot.state == "reconnecting", 3, "the bot to notice the restart")
    start = time.monotonic()
    with pytest.raises(ConnectFailed, match="nothing was sent"):
        bot.send("r", "while down")
    assert 0.9 <= time.monotonic() - start < 2.0
    restart.join(15)
    assert not restart.is_alive()
    wait_until(lambda: bot.connected, 10, "the bot to come back by itself")
    emu.wait_for_listeners("r")
    recovered = time.monotonic() - t0
    assert recovered < 3.0 + 0.8 + 2.0, f"recovered only after {recovered:.1f}s"
    attempts = proxied.proxy.attempts[attempts_before:]
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert 3 <= len(attempts) <= 12, f"{len(attempts)} attempts in ~3 s: {gaps}"
    assert min(gaps) >= 0.09, f"attempts not spaced: {gaps}"  # half of the first step
    assert max(gaps) <= 0.8 + 1.5, f"backoff not capped: {gaps}"  # cap + one attempt
    assert len({round(g, 2) for g in gaps}) > 1, "no jitter"
    # nothing reached the server for the failed send
    assert not [r for r in emu.requests[requests_before:]
                if r.event == SEND and r.payload.get("text") == "while down"]
    emu.post("r", "back")
    assert bot.receive(timeout=5).text == "back"


def test_server_restart_with_a_crash_recovers(proxied):
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    emu.restart(drop=True)
    wait_until(lambda: bot.connected and bot.stats.reconnects == 1, 10, "reconnection")
    emu.wait_for_listeners("r")
    emu.post("r", "after crash")
    assert bot.receive(timeout=5).text == "after crash"


def test_token_revoked_while_connected_no_retry_storm(proxied):
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    handler = bot.run_in_thread(lambda msg: None)
    connections, refused = emu.connections, emu.refused
    emu.revoke_token(TOKEN)
    with pytest.raises(AuthError, match="refused the bearer token"):
        bot.receive(timeout=10)
    assert bot.state == "failed"
    assert not bot.health().ok
    with pytest.raises(AuthError):
        list(bot.messages(timeout=1))
    wait_until(lambda: not handler.running, 3, "the handler loop to stop")
    assert isinstance(handler.error, AuthError)
    settled = (emu.connections, emu.refused, len(proxied.proxy.attempts))
    time.sleep(2.0)  # part of the check: watch for further attempts
    assert (emu.connections, emu.refused, len(proxied.proxy.attempts)) == settled
    assert emu.connections == connections
    assert emu.refused - refused == 1
    with pytest.raises(AuthError):  # calls fail at once, without a new attempt
        bot.send("r", "x")
    assert emu.refused - refused == 1
    assert TOKEN not in repr(bot)
    assert TOKEN not in str(bot.health())


def test_token_callable_is_asked_again_on_reconnect(proxied):
    """Token refresh: a callable token is called on every (re)connection."""
    emu = proxied.emulator
    current = {"token": TOKEN}
    calls = []

    def token():
        calls.append(current["token"])
        return current["token"]

    bot = proxied.bot(token=token)
    bot.listen("r")
    emu.add_token("fresh-token")
    current["token"] = "fresh-token"
    emu.revoke_token(TOKEN)
    wait_until(lambda: bot.connected and bot.stats.reconnects == 1, 10, "reconnection")
    assert calls[0] == TOKEN
    assert calls[-1] == "fresh-token"
    emu.wait_for_listeners("r")
    emu.post("r", "refreshed")
    assert bot.receive(timeout=5).text == "refreshed"


# --------------------------------------------------------------------------- acks


def test_ack_delayed_past_the_timeout(proxied):
    """The late ack is ignored; the user saw AckTimeout (outcome unknown) and the
    message was in fact posted; nothing stays pending."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    emu.set_ack(SEND, "delay", delay=1.0, times=1)
    start = time.monotonic()
    with pytest.raises(AckTimeout, match="may or may not have been posted") as info:
        bot.send("r", "late", timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert 0.3 <= time.monotonic() - start < 0.9
    assert emu.wait_for_sent(1)[0].text == "late"
    assert bot.stats.pending == 0
    time.sleep(1.0)  # part of the check: let the late ack arrive
    assert bot.connected
    assert bot.stats.pending == 0
    assert bot.stats.send_failures == 1
    assert bot.send("r", "next") is None
    assert bot.stats.sent == 1


def test_listen_ack_never_sent(proxied):
    emu = proxied.emulator
    bot = proxied.bot()
    bot.connect()
    emu.set_ack(LISTEN, "withhold", times=1)
    with pytest.raises(AckTimeout, match="may or may not be subscribed"):
        bot.listen("r", timeout=0.5)
    assert bot.rooms == ()
    bot.listen("r2")
    assert bot.rooms == ("r2",)
    assert bot.stats.pending == 0


def test_exception_events(proxied):
    """NestJS ``exception`` events fail the matching request at once with
    ServerError; one that matches nothing is logged and harmless."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.connect()
    emu.set_ack(LISTEN, "exception", error={"status": "error", "message": "no such room",
                                             "statusCode": 404}, times=1)
    start = time.monotonic()
    with pytest.raises(ServerError) as info:
        bot.listen("nope", timeout=10)
    assert time.monotonic() - start < 2
    assert (info.value.event, info.value.code, info.value.message) == (
        LISTEN, 404, "no such room")
    assert bot.rooms == ()
    bot.listen("r")
    # Exception events that match no pending request: logged, harmless.  (With
    # a request pending, an exception without a cause is pinned on it.)
    emu.push_raw("exception", {"status": "error", "message": "stray"})
    emu.push_raw("exception")
    emu.push_raw("exception", 42, [1, 2])
    emu.post("r", "sync")  # same socket, so read after the strays
    assert bot.receive(timeout=5).text == "sync"
    emu.set_ack(SEND, "exception", times=1)
    with pytest.raises(ServerError, match="Internal server error"):
        bot.send("r", "x", timeout=10)
    assert bot.send("r", "y") is None
    assert bot.connected
    assert bot.stats.pending == 0


# --------------------------------------------------------------------------- concurrency


def test_many_threads_send_while_the_link_drops(proxied):
    """Every call returns or raises a typed error in bounded time; an acked send
    was posted; a ConnectFailed send was not."""
    emu = proxied.emulator
    bot = proxied.bot(ack_timeout=2.0, connect_timeout=2.0)
    bot.listen("r")
    emu.set_ack(SEND, "delay", delay=0.1)  # keep sends in flight when the link drops
    outcomes: dict = {}
    surprises: list = []
    slowest = [0.0]
    lock = threading.Lock()
    stop_faults = threading.Event()

    def worker(n: int) -> None:
        for i in range(25):
            text = f"{n}-{i}"
            start = time.monotonic()
            try:
                outcome = send_outcome(bot, "r", text, timeout=2.0)
            except Exception as exc:  # not a typed error: a bug
                outcome = f"untyped {type(exc).__name__}: {exc}"
                surprises.append(outcome)
            with lock:
                outcomes[text] = outcome
                slowest[0] = max(slowest[0], time.monotonic() - start)

    def faults() -> None:
        kinds = [proxied.proxy.cut, proxied.proxy.close_links, emu.kick, emu.drop]
        i = 0
        while not stop_faults.wait(0.4):
            kinds[i % len(kinds)]()
            i += 1

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    faulter = threading.Thread(target=faults)
    faulter.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    stop_faults.set()
    faulter.join(5)
    assert not any(t.is_alive() for t in workers), "a send hung"
    assert not surprises, surprises
    assert len(outcomes) == 200
    assert set(outcomes.values()) <= {"ok", *TYPED_SEND_ERRORS}
    # connect_timeout (2) + ack timeout (2) + slack: no call waited longer
    assert slowest[0] < 2.0 + 2.0 + 1.5, f"a call took {slowest[0]:.1f}s"
    posted = {m.text for m in emu.sent}
    assert {t for t, o in outcomes.items() if o == "ok"} <= posted
    assert not {t for t, o in outcomes.items() if o == "ConnectFailed"} & posted
    assert "ok" in outcomes.values()
    assert "ConnectionLost" in outcomes.values()
    wait_until(lambda: bot.connected, 10, "the bot to settle")
    assert bot.stats.pending == 0
    emu.set_ack(SEND, "normal")
    assert bot.send("r", "after the storm") is None


@pytest.mark.parametrize("blocked_in", ["send", "listen", "receive", "messages"])
def test_close_from_another_thread_while_reconnecting(proxied, blocked_in):
    """Server down, bot reconnecting, a caller blocked: close() returns promptly,
    the caller gets BotClosed (or its iterator ends), no thread is left."""
    wait_until(lambda: not client_threads(), 5, "threads of earlier tests to end")
    bot = proxied.bot(connect_timeout=30, reconnect_delay=0.2, reconnect_delay_max=1.0)
    bot.listen("r")
    proxied.proxy.refuse(True)
    proxied.proxy.cut()
    wait_until(lambda: bot.state == "reconnecting", 5, "reconnecting")
    outcome: dict = {}

    def call() -> None:
        try:
            if blocked_in == "send":
                bot.send("r", "x", timeout=30)
            elif blocked_in == "listen":
                bot.listen("r2", timeout=30)
            elif blocked_in == "receive":
                bot.receive(timeout=30)
            else:
                outcome["items"] = list(bot.messages(timeout=30))
            outcome["returned"] = True
        except BaseException as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)  # part of the schedule: let the caller block
    assert caller.is_alive()
    start = time.monotonic()
    bot.close()
    caller.join(5)
    assert not caller.is_alive(), f"{blocked_in} still blocked after close()"
    assert time.monotonic() - start < 3.0
    if blocked_in == "messages":
        assert outcome == {"items": [], "returned": True}
    else:
        assert isinstance(outcome.get("error"), BotClosed), outcome
    assert bot.state == "closed"
    wait_until(lambda: not client_threads(), 5, f"threads to end: {client_threads()}")


def test_close_while_many_callers_are_blocked_on_a_live_link(proxied):
    wait_until(lambda: not client_threads(), 5, "threads of earlier tests to end")
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    emu.set_ack(SEND, "withhold")
    errors: list = []
    ended: list = []

    def sender(i: int) -> None:
        try:
            bot.send("r", f"s{i}", timeout=30)
        except BaseException as exc:
            errors.append(exc)

    def iterate() -> None:
        ended.append(list(bot.messages()))

    def receive() -> None:
        try:
            bot.receive()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=iterate) for _ in range(3)]
    threads += [threading.Thread(target=receive) for _ in range(3)]
    for t in threads:
        t.start()
    emu.wait_for_sent(4)
    start = time.monotonic()
    bot.close()
    for t in threads:
        t.join(5)
    assert time.monotonic() - start < 3
    assert not any(t.is_alive() for t in threads)
    assert ended == [[], [], []]
    assert len(errors) == 7, errors
    assert all(isinstance(e, BotClosed) for e in errors), errors
    assert sum("outcome is unknown" in str(e) for e in errors) == 4
    wait_until(lambda: not client_threads(), 5, f"threads to end: {client_threads()}")


# --------------------------------------------------------------------------- consumers


def test_slow_consumer_overflow_is_bounded_counted_and_warned_once(proxied, caplog):
    """A consumer that stops reading for longer than the ping window: the socket
    thread never blocks (the link stays up), the inbox keeps the newest 50,
    drops are counted, and the warning is rate-limited."""
    caplog.set_level(logging.WARNING, logger="watchers_bot")
    emu = proxied.emulator
    bot = proxied.bot(max_queue=50)
    bot.listen("r")
    for i in range(500):
        emu.post("r", f"m{i}")
    wait_until(lambda: bot.stats.received == 500, 10, "500 messages")
    time.sleep(2.5)  # the consumer is away for longer than ping interval + timeout
    assert bot.connected
    assert bot.stats.reconnects == 0
    stats = bot.stats
    assert (stats.dropped, stats.queued, stats.delivered) == (450, 50, 500)
    assert bot.health().dropped == 450
    warnings = [r for r in caplog.records if "inbox full" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert [m.text for m in bot.messages(timeout=0.5)] == [f"m{i}" for i in range(450, 500)]


def test_drop_newest_and_unbounded_policies(proxied):
    emu = proxied.emulator
    emu.echo_sender = False
    newest = proxied.bot(max_queue=10, overflow="drop_newest", bot_id="b1")
    newest.listen("n")
    unbounded = proxied.bot(max_queue=None, bot_id="b2", token=TOKEN, via_proxy=False)
    unbounded.listen("u")
    emu.post_many("n", [str(i) for i in range(100)])
    emu.post_many("u", [str(i) for i in range(5000)])
    wait_until(lambda: newest.stats.received == 100 and unbounded.stats.received == 5000,
               10, "all messages")
    assert newest.stats.dropped == 90
    assert [m.text for m in newest.messages(timeout=0.3)] == [str(i) for i in range(10)]
    assert unbounded.stats.dropped == 0
    assert unbounded.stats.queued == 5000


def test_consumer_code_that_raises(proxied):
    """An exception in the user's loop ends that loop only; the bot keeps working,
    and a handler thread that raises keeps handling."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    emu.post("r", "boom")
    emu.post("r", "next")
    def user_loop():
        for msg in bot.messages(timeout=5):
            raise RuntimeError(f"user code failed on {msg.text}")

    with pytest.raises(RuntimeError, match="failed on boom"):
        user_loop()
    assert bot.receive(timeout=5).text == "next"
    seen: list = []

    def handler(msg):
        seen.append(msg.text)
        if msg.text.startswith("bad"):
            raise RuntimeError("user bug")

    handle = bot.run_in_thread(handler)
    for text in ("bad 1", "good 1", "bad 2", "good 2"):
        emu.post("r", text)
    wait_until(lambda: len(seen) == 4, 5, "the handler to see 4 messages")
    assert handle.running
    assert handle.errors == 2
    assert handle.handled == 2
    assert bot.connected
    assert bot.send("r", "still sending") is None
    assert handle.stop(5)


def test_receive_after_close_and_timeouts_are_typed(proxied):
    bot = proxied.bot()
    bot.listen("r")
    with pytest.raises(ReceiveTimeout):
        bot.receive(timeout=0.1)
    bot.close()
    for call in (lambda: bot.receive(timeout=0.1), lambda: bot.send("r", "x"),
                 lambda: bot.listen("r"), lambda: bot.messages()):
        with pytest.raises(BotClosed):
            call()


# --------------------------------------------------------------------------- delivery


def test_every_message_written_to_the_bot_arrives_once_in_order_across_faults(proxied):
    """A poster posts continuously in two rooms while the link is cut, closed,
    silenced, kicked, dropped and frozen.  On every socket the bot received a
    prefix of what the server wrote to it (only a dead link's unread tail may
    miss), never a duplicate, always in order; clean ends lose nothing."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("a", "b")
    consumer = Consumer(bot)
    stop = threading.Event()

    def poster() -> None:
        i = 0
        while not stop.is_set():
            emu.post("ab"[i % 2], f"p{i}")
            i += 1
            time.sleep(0.002)

    posting = threading.Thread(target=poster)
    posting.start()
    clean_ends: list = []
    silenced: list = []
    try:
        for fault in ("cut", "close_links", "kick", "drop", "silence", "freeze", "kick"):
            wait_until(lambda: bot.connected and len(emu.listeners("b")) == 1, 15,
                       f"the bot to be back before {fault}")
            time.sleep(0.3)  # part of the schedule: traffic on a live link
            before = bot.stats.reconnects
            if fault == "kick":
                clean_ends += emu.clients
                emu.kick()
            elif fault in ("drop", "freeze"):
                getattr(emu, fault)()
            elif fault == "silence":
                silenced.extend(emu.clients)
                proxied.proxy.silence(reset_after=5)
            else:
                getattr(proxied.proxy, fault)()
            wait_until(lambda b=before: bot.stats.reconnects > b, 15, f"reconnect after {fault}")
    finally:
        stop.set()
        posting.join(5)
    wait_until(lambda: bot.connected, 10, "the last reconnection")
    live = drain(consumer, emu, ["a", "b"])
    bot.close()
    consumer.stop()
    assert consumer.error is None
    assert bot.stats.dropped == 0
    assert bot.stats.malformed == 0
    report = check_delivery(emu.written, consumer.received, complete_sids=clean_ends + live)
    assert report.sockets >= 6  # one link per fault and the last one (an extra one may die early)
    assert report.received > 500
    # Only the unread tails of dead links are missing.  A silent link's tail is
    # everything the server wrote to it during the ping window; the others' is
    # what was on the wire when the link died: a few at most.
    silent = silenced[0]
    assert sum(t for sid, t in report.tails.items() if sid != silent) <= 30, report.tails


def test_no_thread_leak_after_many_faults(proxied):
    wait_until(lambda: not client_threads(), 5, "threads of earlier tests to end")
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    wait_until(lambda: bot.connected, 5, "connected")
    baseline = len(client_threads())
    for i in range(6):
        [proxied.proxy.cut, emu.kick, emu.drop][i % 3]()
        wait_until(lambda n=i: bot.connected and bot.stats.reconnects == n + 1, 10, "reconnect")
    wait_until(lambda: len(client_threads()) <= baseline, 5,
               f"threads back to {baseline}: {client_threads()}")
    bot.close()
    wait_until(lambda: not client_threads(), 5, f"threads to end: {client_threads()}")


def test_close_is_bounded_with_a_silent_link(proxied):
    wait_until(lambda: not client_threads(), 5, "threads of earlier tests to end")
    bot = proxied.bot()
    bot.listen("r")
    proxied.proxy.silence()
    start = time.monotonic()
    bot.close()
    assert time.monotonic() - start < 3.0
    wait_until(lambda: not client_threads(), 5, f"threads to end: {client_threads()}")


def test_bot_stays_idle_until_used_and_a_refusing_server_fails_the_first_connect():
    rig = make_rig()
    try:
        rig.proxy.refuse(True)
        bot = rig.bot(connect_timeout=1.0)
        assert bot.state == "idle"
        assert rig.proxy.attempts == []
        start = time.monotonic()
        with pytest.raises(ConnectFailed):
            bot.listen("r")
        assert time.monotonic() - start < 2.0
        assert bot.state == "idle"
        rig.proxy.refuse(False)
        bot.listen("r")
        assert bot.connected
    finally:
        rig.close()


def test_api_key_revoked_while_connected(proxied):
    """A revoked API key is a ServerError (401) per request; the link stays up."""
    emu = proxied.emulator
    bot = proxied.bot()
    bot.listen("r")
    emu.revoke_api_key(KEY)
    with pytest.raises(ServerError) as info:
        bot.send("r", "x")
    assert info.value.code == 401
    assert KEY not in str(info.value)
    assert KEY not in repr(
        info.value.raw)
    assert bot.connected


def test_health_says_why_the_bot_failed(proxied):
    bot = proxied.bot()
    bot.listen("r")
    proxied.emulator.revoke_token(TOKEN)
    wait_until(lambda: bot.state == "failed", 10, "the bot to fail")
    assert "AuthError" in (bot.health().last_error or "")
