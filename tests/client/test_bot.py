"""The Bot against the local emulator: real Socket.IO over real websockets on loopback."""

import logging
import signal
import threading
import time

import pytest
from helpers import KEY, TOKEN, client_threads, make_bot, wait_until

from watchers_bot import (
    AckTimeout,
    AuthError,
    Bot,
    BotClosed,
    ConnectFailed,
    ConnectionLost,
    Message,
    ReceiveTimeout,
    ServerError,
)


@pytest.fixture
def bot(emulator):
    b = make_bot(emulator)
    yield b
    b.close()




def test_listen_send_receive_round_trip(emulator, bot):
    assert bot.connect() is bot
    assert bot.connected
    bot.listen("room-1", "room-2")
    assert bot.rooms == ("room-1", "room-2")
    assert emulator.wait_for_listeners("room-1")
    assert bot.send("room-1", "hello") is None  # the documented empty ack
    [sent] = emulator.wait_for_sent(1)
    assert (sent.room_id, sent.text, sent.user_id) == ("room-1", "hello", "bot-1")
    emulator.post("room-2", "hi bot", user_id="alice")
    msg = bot.receive(timeout=5)
    assert isinstance(msg, Message)
    assert (msg.room_id, msg.text, msg.user_id, msg.project) == ("room-2", "hi bot", "alice",
                                                                  emulator.project)
    assert isinstance(msg.id, int)
    assert msg.raw["message"]["text"] == "hi bot"
    bot.reply(msg, "pong")
    assert emulator.wait_for_sent(2)[-1].room_id == "room-2"
    stats = bot.stats
    assert stats.sent == 2
    assert stats.received >= 1


def test_listen_and_send_connect_lazily(emulator, bot):
    bot.listen("r")
    assert bot.connected
    assert emulator.connections == 1


def test_messages_arrive_in_server_order(emulator, bot):
    bot.listen("r")
    texts = [f"m{i}" for i in range(3000)]
    emulator.post_many("r", texts)
    got = [m.text for _, m in zip(range(len(texts)), bot.messages(timeout=5))]
    assert got == texts
    assert bot.stats.dropped == 0


def test_own_messages_are_skipped_by_default(emulator, bot):
    bot.listen("r")
    bot.send("r", "from me")
    emulator.post("r", "from a human")
    assert bot.receive(timeout=5).text == "from a human"
    assert bot.stats.skipped_own == 1


def test_own_messages_delivered_when_asked(emulator):
    with make_bot(emulator, include_own=True) as bot:
        bot.listen("r")
        bot.send("r", "from me")
        msg = bot.receive(timeout=5)
        assert (msg.text, msg.user_id) == ("from me", "bot-1")


def test_messages_with_timeout_ends_when_quiet(emulator, bot):
    bot.listen("r")
    emulator.post("r", "one")
    start = time.monotonic()
    assert [m.text for m in bot.messages(timeout=0.3)] == ["one"]
    assert time.monotonic() - start < 3


def test_receive_timeout_is_a_timeout_error(emulator, bot):
    bot.listen("r")
    with pytest.raises(ReceiveTimeout) as info:
        bot.receive(timeout=0.1)
    assert isinstance(info.value, TimeoutError)


def test_bad_token_raises_auth_error_once_without_leaking(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wrong-token-0123456789"
    bot = Bot(secret, KEY, "b", url=emulator.url, connect_timeout=5)
    start = time.monotonic()
    for call in (bot.connect, lambda: bot.listen("r"), lambda: bot.send("r", "x")):
        with pytest.raises(AuthError) as info:
            call()
        assert "Unauthorized" in str(info.value)
        assert secret not in str(info.value)
        assert secret not in repr(info.value.raw)
    assert time.monotonic() - start < 5
    assert emulator.connections <= 3  # one attempt per call, no retry loop
    assert bot.state == "idle"
    bot.close()
    assert secret not in caplog.text


def test_secrets_never_logged_even_at_debug(emulator, caplog):
    token, key = "tok-SECRET-abcdef", "key-SECRET-abcdef"
    emulator.add_token(token)
    emulator.add_api_key(key)
    caplog.set_level(logging.DEBUG)
    # On the library's logger too: a Django test's LOGGING may have set it to WARNING.
    caplog.set_level(logging.DEBUG, logger="watchers_bot")
    with Bot(token, key, "b", url=emulator.url, include_own=True) as bot:
        bot.listen("r")
        bot.send("r", "hello")
        bot.receive(timeout=5)
        emulator.set_ack("external/send", "error")
        with pytest.raises(ServerError) as info:
            bot.send("r", "again")
        assert key not in str(info.value)
        assert key not in repr(info.value.raw)
    assert "Sending packet" in caplog.text  # engineio's packet log did run
    assert token not in caplog.text
    assert key not in caplog.text


def test_server_error_ack_raises_and_connection_stays_up(emulator, bot):
    bot.listen("r")
    emulator.set_ack("external/send", "error",
                     error={"status": "error", "statusCode": 503, "message": "Unavailable"})
    with pytest.raises(ServerError) as info:  # (429, a rate limit, is retried: test_rate_limit)
        bot.send("r", "x")
    assert (info.value.code, info.value.message, info.value.event) == (503, "Unavailable",
                                                                       "external/send")
    emulator.set_ack("external/send", "normal")
    bot.send("r", "y")
    assert bot.connected
    assert bot.stats.send_failures == 1


def test_listen_error_raises_and_room_not_remembered(emulator, bot):
    emulator.set_ack("external/listen", "error")
    with pytest.raises(ServerError):
        bot.listen("r")
    assert bot.rooms == ()


def test_exception_event_fails_the_send_at_once(emulator, bot):
    bot.listen("r")
    emulator.set_ack("external/send", "exception")
    start = time.monotonic()
    with pytest.raises(ServerError) as info:
        bot.send("r", "x", timeout=5)
    assert time.monotonic() - start < 2.5
    assert not isinstance(info.value, AckTimeout)
    assert info.value.event == "external/send"


def test_exception_event_matches_the_right_pending_request(emulator, bot):
    bot.listen("r")
    emulator.set_ack("external/send", "exception")
    futures = [bot.send_async("r", f"t{i}", timeout=5) for i in range(5)]
    for f in futures:
        with pytest.raises(ServerError):
            f.result(3)
    assert bot.stats.pending == 0


def test_withheld_ack_times_out_saying_outcome_unknown(emulator, bot):
    bot.listen("r")
    emulator.set_ack("external/send", "withhold")
    start = time.monotonic()
    with pytest.raises(AckTimeout, match="may or may not") as info:
        bot.send("r", "x", timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert 0.4 < time.monotonic() - start < 3
    future = bot.send_async("r", "y", timeout=0.3)
    with pytest.raises(AckTimeout):
        future.result(5)  # expired by the bot itself, not by this wait
    assert bot.stats.pending == 0


def test_delayed_ack_within_timeout_succeeds(emulator, bot):
    bot.listen("r")
    emulator.set_ack("external/send", "delay", delay=0.3)
    assert bot.send("r", "x", timeout=5) is None


def test_pending_send_fails_at_once_when_link_drops(emulator, bot):
    bot.listen("r")
    emulator.set_ack("external/send", "withhold")
    future = bot.send_async("r", "x", timeout=30)
    emulator.wait_for_sent(1)
    start = time.monotonic()
    emulator.drop()
    with pytest.raises(ConnectionLost, match="may or may not"):
        future.result(10)
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("fault", ["drop", "kick", "restart"])
def test_reconnects_and_listens_again(emulator, bot, fault):
    bot.listen("a", "b")
    emulator.wait_for_listeners("b")
    getattr(emulator, fault)()
    wait_until(lambda: bot.stats.reconnects >= 1 and bot.connected, 10, "reconnection")
    emulator.wait_for_listeners("a")
    emulator.wait_for_listeners("b")
    emulator.post("b", "after " + fault)
    assert bot.receive(timeout=5).text == "after " + fault
    bot.send("a", "still works")


def test_send_during_reconnect_waits_and_goes_through(emulator, bot):
    bot.listen("r")
    emulator.restart(down_for=0.5)
    bot.send("r", "sent while reconnecting")
    assert emulator.wait_for_sent(1)[-1].text == "sent while reconnecting"


def test_revoked_token_stops_the_bot_with_auth_error(emulator, bot):
    bot.listen("r")
    emulator.post("r", "queued before revocation")
    wait_until(lambda: bot.stats.delivered == 1, what="first message")
    before = emulator.connections
    emulator.revoke_token(TOKEN)
    it = bot.messages(timeout=10)
    assert next(it).text == "queued before revocation"
    with pytest.raises(AuthError):
        next(it)
    assert bot.state == "failed"
    assert emulator.connections - before <= 2  # no retry storm
    with pytest.raises(AuthError):
        bot.send("r", "x")


def test_reconnect_false_fails_for_good_on_drop(emulator):
    with make_bot(emulator, reconnect=False) as bot:
        bot.listen("r")
        emulator.drop()
        with pytest.raises(ConnectionLost):
            bot.receive(timeout=5)
        assert bot.state == "failed"


def test_reconnection_gives_up_after_attempts(emulator):
    with make_bot(emulator, reconnect_attempts=2, connect_timeout=1) as bot:
        bot.listen("r")
        emulator.stop()
        with pytest.raises(ConnectFailed, match="gave up"):
            bot.receive(timeout=15)
        assert bot.state == "failed"


def test_first_connect_to_nothing_fails_in_time():
    with socket_free_port() as port:
        bot = Bot(TOKEN, KEY, "b", url=f"http://127.0.0.1:{port}", connect_timeout=1)
        start = time.monotonic()
        with pytest.raises(ConnectFailed):
            bot.connect()
        assert time.monotonic() - start < 3
        assert bot.state == "idle"
        bot.close()


def test_malformed_payloads_are_skipped_and_counted(emulator, bot, caplog):
    bot.listen("r")
    for bad in (None, "text", {"roomId": "r"}, {"roomId": "r", "message": {"id": 1}}, [1, 2]):
        emulator.push_raw("message", bad, room="r")
    emulator.push_raw("message", {"roomId": "r"}, "two args", room="r")
    emulator.push_raw("exception", "not even an object", room="r")
    emulator.post("r", "good one")
    assert bot.receive(timeout=5).text == "good one"
    assert bot.stats.malformed == 6
    assert bot.connected
    assert "malformed" in caplog.text


def test_inbox_overflow_drops_oldest_and_counts(emulator):
    with make_bot(emulator, max_queue=10) as bot:
        bot.listen("r")
        emulator.post_many("r", [str(i) for i in range(100)])
        wait_until(lambda: bot.stats.received == 100, what="100 messages")
        assert bot.stats.dropped == 90
        assert [m.text for m in bot.messages(timeout=0.2)] == [str(i) for i in range(90, 100)]


def test_many_threads_send_at_once(emulator, bot):
    bot.listen("r")
    errors = []

    def worker(n):
        try:
            for i in range(40):
                bot.send("r", f"{n}-{i}")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    sent = emulator.wait_for_sent(320)
    assert sorted(s.text for s in sent) == sorted(f"{n}-{i}" for n in range(8) for i in range(40))
    assert bot.stats.sent == 320


def test_send_async_pipelines_and_callbacks_run_off_the_socket_thread(emulator, bot):
    bot.listen("r")
    seen = []
    futures = [bot.send_async("r", f"p{i}") for i in range(300)]
    futures[0].add_done_callback(lambda f: seen.append(threading.current_thread().name))
    for f in futures:
        assert f.result(10) is None
    wait_until(lambda: seen, what="done-callback")
    assert seen == ["watchers-bot-callbacks"]
    assert [s.text for s in emulator.wait_for_sent(300)] == [f"p{i}" for i in range(300)]


def test_oversized_text_rejected_before_the_wire_connection_stays_up(emulator, bot):
    bot.listen("r")
    with pytest.raises(ValueError, match="too large"):
        bot.send("r", "x" * 1_100_000)
    bot.send("r", "x" * 500_000)
    assert bot.connected
    assert len(emulator.wait_for_sent(1)[0].text) == 500_000


def test_close_ends_iterators_and_waiting_calls_promptly(emulator):
    bot = make_bot(emulator)
    bot.listen("r")
    emulator.set_ack("external/send", "withhold")
    outcomes = {}

    def iterate():
        outcomes["messages"] = list(bot.messages())

    def receive():
        try:
            bot.receive()
        except BotClosed as exc:
            outcomes["receive"] = exc

    def send():
        try:
            bot.send("r", "x", timeout=30)
        except BotClosed as exc:
            outcomes["send"] = exc

    threads = [threading.Thread(target=f) for f in (iterate, receive, send)]
    for t in threads:
        t.start()
    emulator.wait_for_sent(1)
    start = time.monotonic()
    bot.close()
    for t in threads:
        t.join(5)
    assert time.monotonic() - start < 3
    assert outcomes["messages"] == []
    assert isinstance(outcomes["receive"], BotClosed)
    assert "outcome is unknown" in str(outcomes["send"])





def test_close_leaves_no_thread_behind(emulator):
    wait_until(lambda: not client_threads(), 3, "threads of earlier tests to end")
    bot = make_bot(emulator, include_own=True)
    bot.listen("r")
    bot.send_async("r", "x").add_done_callback(lambda f: None)
    bot.receive(timeout=5)
    emulator.drop()
    wait_until(lambda: bot.stats.reconnects == 1 and bot.connected, what="reconnect")
    assert {t.name for t in client_threads()} >= {"watchers-bot-supervisor",
                                                 "watchers-bot-callbacks"}
    bot.close()
    wait_until(lambda: not client_threads(), 3, f"threads to end: {client_threads()}")


def test_no_sigint_handler_installed(emulator):
    before = signal.getsignal(signal.SIGINT)
    with make_bot(emulator) as bot:
        bot.listen("r")
        assert signal.getsignal(signal.SIGINT) is before


class socket_free_port:
    def __enter__(self):
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False


def test_close_while_listening_again_after_reconnect(emulator, caplog):
    bot = make_bot(emulator)
    bot.listen("r")
    emulator.set_ack("external/listen", "withhold")
    emulator.kick()
    emulator.wait_for_requests(2, "external/listen", timeout=5)  # the re-listen is in flight
    bot.close()
    emulator.wait_for_clients(0, timeout=3)
    wait_until(lambda: not client_threads(), 3, f"threads to end: {client_threads()}")
    assert "supervisor thread failed" not in caplog.text


def test_normal_close_logs_no_warning(emulator, caplog):
    caplog.set_level(logging.WARNING)
    with make_bot(emulator, include_own=True) as bot:
        bot.listen("r")
        bot.send("r", "hi")
        bot.receive(timeout=5)
    wait_until(lambda: not client_threads(), 3, "threads to end")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_close_interrupted_by_ctrl_c_can_be_finished(emulator, monkeypatch):
    """A second Ctrl-C inside close() must not leave a live socket behind a 'closed' bot."""
    from watchers_bot.client.link import Link

    bot = make_bot(emulator)
    bot.listen("r")
    real_retire = Link.retire
    calls = []

    def interrupted_once(link, **kwargs):
        calls.append(link)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_retire(link, **kwargs)

    monkeypatch.setattr(Link, "retire", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        bot.close()
    assert bot.state == "closed"
    assert emulator.clients  # still connected: the teardown did not finish
    bot.close()  # finishes it
    emulator.wait_for_clients(0, timeout=3)
    wait_until(lambda: not client_threads(), 3, "threads to end")
