"""Configuration mistakes fail fast, with an error that names them (issue 9)."""

import logging
import os
import threading
import time

import pytest
from helpers import KEY, TOKEN, make_bot, wait_until

from watchers_bot import Bot, BotClosed, ConfigError, ConnectFailed


def test_ca_certs_that_does_not_exist_is_refused_at_construction_naming_the_path(tmp_path):
    missing = tmp_path / "nonexistent.pem"
    with pytest.raises(ValueError, match=r"nonexistent\.pem.*does not exist"):
        Bot(TOKEN, KEY, url="wss://example.invalid", ca_certs=str(missing))
    with pytest.raises(ValueError, match="is not a file"):
        Bot(TOKEN, KEY, url="wss://example.invalid", ca_certs=tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads any file: run as a normal user to check permissions")
def test_ca_certs_that_cannot_be_read_is_refused_at_construction(tmp_path):
    unreadable = tmp_path / "ca.pem"
    unreadable.write_text("x")
    unreadable.chmod(0)
    with pytest.raises(ValueError, match=r"ca\.pem.*cannot be read"):
        Bot(TOKEN, KEY, url="wss://example.invalid", ca_certs=str(unreadable))


def token_bot(emulator, token, **options):
    return Bot(token, KEY, "bot-1", url=emulator.url, **{
        "connect_timeout": 5.0, "ack_timeout": 5.0, "reconnect_delay": 0.05,
        "reconnect_delay_max": 0.5, **options})


@pytest.mark.parametrize(("token", "error"), [
    (lambda: 1 / 0, "ZeroDivisionError"),
    (lambda: None, "must return a str, not NoneType"),
    (lambda: "  ", "empty"),
])
def test_a_token_callable_that_fails_on_the_first_connect_raises_at_once(emulator, token, error):
    with token_bot(emulator, token, connect_timeout=30.0) as bot:
        start = time.monotonic()
        with pytest.raises(ConnectFailed, match=error) as info:
            bot.connect()
        # At once, not after retrying for connect_timeout (30 s).
        assert time.monotonic() - start < 5
        assert "token callable" in str(info.value)
        assert bot.state == "idle"


def test_a_token_callable_failing_while_reconnecting_is_retried_and_shown_in_health(emulator):
    failing = threading.Event()

    def token():
        if failing.is_set():
            raise RuntimeError("the vault is sealed")
        return TOKEN

    with token_bot(emulator, token) as bot:
        bot.listen("r")
        failing.set()
        emulator.kick()  # a server-side disconnect of every socket
        wait_until(lambda: "vault is sealed" in (bot.health().last_error or ""), 10,
                   "health() to show the token callable's error")
        assert bot.state == "reconnecting"  # still trying, with backoff
        failing.clear()
        wait_until(lambda: bot.connected, 10, "the bot to reconnect once the token works")


def test_a_whitespace_only_token_variable_is_reported_as_empty():
    with pytest.raises(ConfigError, match="WATCHERS_TOKEN is set but empty"):
        Bot.from_env({"WATCHERS_TOKEN": "  \t", "WATCHERS_API_KEY": KEY})
    with pytest.raises(ConfigError, match="WATCHERS_TOKEN is not set"):
        Bot.from_env({"WATCHERS_API_KEY": KEY})
    with pytest.raises(ConfigError, match="WATCHERS_API_KEY is set but empty"):
        Bot.from_env({"WATCHERS_TOKEN": TOKEN, "WATCHERS_API_KEY": ""})


def test_waiting_forever_on_a_bot_without_rooms_logs_a_warning_once(emulator, caplog):
    with make_bot(emulator) as bot, caplog.at_level(logging.WARNING, logger="watchers_bot"):
        closer = threading.Timer(0.3, bot.close)
        closer.start()
        assert list(bot.messages()) == []  # ends when closed
        closer.join()
    warnings = [r for r in caplog.records if "listens to no room" in r.getMessage()]
    assert len(warnings) == 1
    assert "bot.listen(room)" in warnings[0].getMessage()


def test_no_such_warning_with_a_room_or_a_timeout(emulator, caplog):
    with make_bot(emulator) as bot, caplog.at_level(logging.WARNING, logger="watchers_bot"):
        assert list(bot.messages(timeout=0.1)) == []
        bot.listen("r")
        emulator.post("r", "hi")
        assert bot.receive().text == "hi"
    assert not [r for r in caplog.records if "listens to no room" in r.getMessage()]


def test_warned_once_across_calls(emulator, caplog):
    with make_bot(emulator) as bot, caplog.at_level(logging.WARNING, logger="watchers_bot"):
        iterators = [bot.messages() for _ in range(3)]  # the check runs at the call
        threading.Timer(0.2, bot.close).start()
        with pytest.raises(BotClosed):
            bot.receive()
    assert len(iterators) == 3
    assert len([r for r in caplog.records if "listens to no room" in r.getMessage()]) == 1
