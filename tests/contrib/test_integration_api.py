"""run_in_thread, state listeners, health, duplicate-bot warning, insecure URLs."""

import threading
import time
import warnings

import pytest
from helpers import TOKEN, make_bot, wait_until

from watchers_bot import Bot, DuplicateBotWarning, HandlerThread


def test_run_in_thread_handles_messages_and_survives_a_raising_handler(emulator, caplog):
    seen = []

    def handler(msg):
        if msg.text == "boom":
            raise RuntimeError("handler bug")
        seen.append((msg.text, threading.current_thread().name))
        bot.reply(msg, "re: " + msg.text)  # handlers may call the bot

    with make_bot(emulator) as bot:
        bot.listen("r")
        handle = bot.run_in_thread(handler)
        assert isinstance(handle, HandlerThread)
        assert handle.running
        for text in ("one", "boom", "two"):
            emulator.post("r", text)
        sent = emulator.wait_for_sent(2)
        assert [s.text for s in sent] == ["re: one", "re: two"]
        assert seen == [("one", "watchers-bot-handler"), ("two", "watchers-bot-handler")]
        wait_until(lambda: handle.handled == 2 and handle.errors == 1, what="counts")
        assert "handler bug" in caplog.text
        assert handle.stop(5)
        assert not handle.running
        emulator.post("r", "after stop")
        assert bot.receive(timeout=5).text == "after stop"  # stopped: nobody else consumed it


def test_handler_thread_ends_when_the_bot_closes(emulator):
    bot = make_bot(emulator)
    bot.listen("r")
    handle = bot.run_in_thread(lambda msg: None)
    bot.close()
    assert handle.join(5)
    assert handle.error is None


def test_handler_thread_records_a_fatal_error(emulator):
    with make_bot(emulator) as bot:
        bot.listen("r")
        handle = bot.run_in_thread(lambda msg: None)
        emulator.revoke_token(TOKEN)
        assert handle.join(10)
        assert type(handle.error).__name__ == "AuthError"


def test_run_in_thread_checks_its_argument(emulator):
    with make_bot(emulator) as bot, pytest.raises(TypeError, match="handler"):
        bot.run_in_thread("not callable")


def test_state_listeners_hear_every_change_off_the_socket_thread(emulator):
    changes = []
    threads = set()

    def listener(old, new):
        changes.append((old, new))
        threads.add(threading.current_thread().name)

    bot = make_bot(emulator, on_state_change=listener)
    also = []
    bot.on_state_change(lambda old, new: also.append(new))
    bot.listen("r")
    emulator.drop()
    wait_until(lambda: bot.stats.reconnects == 1 and bot.connected, what="reconnect")
    bot.close()
    assert changes == [
        ("idle", "connecting"), ("connecting", "connected"),
        ("connected", "reconnecting"), ("reconnecting", "connected"),
        ("connected", "closed"),
    ]
    assert also == [new for _, new in changes]
    assert threads == {"watchers-bot-callbacks"}


def test_health_snapshot(emulator):
    with make_bot(emulator) as bot:
        health = bot.health()
        assert (health.state, health.ok, health.last_message_at) == ("idle", False, None)
        bot.listen("r")
        emulator.post("r", "hi")
        bot.receive(timeout=5)
        health = bot.health()
        assert health.ok
        assert health.state == "connected"
        assert health.rooms == ("r",)
        assert health.last_message_at is not None
        assert health.connected_since <= time.time()
        data = health.as_dict()
        assert data["rooms"] == ["r"]
        assert "test-key" not in repr(data)
        assert "test-token" not in repr(data)


def test_second_open_bot_with_same_credentials_warns(emulator):
    with make_bot(emulator) as first:
        first.listen("r")
        second = make_bot(emulator)
        with pytest.warns(DuplicateBotWarning, match="same credentials"):
            second.listen("r")
        second.close()
    with make_bot(emulator) as third, warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateBotWarning)
        third.listen("r")  # the others are closed: no warning


@pytest.mark.parametrize("url", ["ws://example.test/", "http://10.0.0.1:80/"])
def test_unencrypted_remote_url_is_refused_unless_allowed(url):
    with pytest.raises(ValueError, match="allow_insecure"):
        Bot("t", "k", url=url)
    Bot("t", "k", url=url, allow_insecure=True).close()


@pytest.mark.parametrize("url", ["ws://127.0.0.1:1/", "http://localhost:1", "http://[::1]:1/"])
def test_loopback_urls_may_be_unencrypted(url):
    Bot("t", "k", url=url).close()
