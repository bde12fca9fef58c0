"""health() and stats tell the truth (issue 9)."""

import socket
import warnings

import pytest
from helpers import KEY, TOKEN, make_bot, wait_until

from watchers_bot import AckTimeout, Bot, ConnectFailed, DuplicateBotWarning, ServerError


def test_a_room_the_server_refused_shows_in_health_and_ok_is_false(emulator):
    bot = Bot(TOKEN, "wrong-key", "bot-1", url=emulator.url, connect_timeout=5, ack_timeout=5)
    with bot:
        with pytest.raises(ServerError) as info:
            bot.listen("room-1")
        assert info.value.code == 401
        health = bot.health()
        assert bot.connected  # the link is up ...
        assert health.ok is False  # ... but the bot cannot listen
        assert list(health.refused) == ["room-1"]
        assert "401" in health.refused["room-1"]
        assert "wrong-key" not in repr(health)
        assert health.as_dict()["refused"] == dict(health.refused)


def test_ok_again_once_the_refused_room_is_listened_to(emulator):
    bot = make_bot(emulator)
    with bot:
        bot.listen("a")
        assert bot.health().ok
        assert bot.health().refused == {}
        emulator.set_ack("external/listen", "error")
        with pytest.raises(ServerError):
            bot.listen("b")
        assert not bot.health().ok
        assert list(bot.health().refused) == ["b"]
        emulator.set_ack("external/listen", "normal")
        bot.listen("b")
        assert bot.health().ok
        assert bot.health().refused == {}


def test_a_room_whose_listen_timed_out_makes_health_not_ok(emulator):
    bot = make_bot(emulator)
    with bot:
        emulator.set_ack("external/listen", "withhold")
        with pytest.raises(AckTimeout):
            bot.listen("a", timeout=0.5)
        assert bot.connected
        assert not bot.health().ok


def test_while_reconnecting_to_a_dead_server_health_gives_the_current_reason(emulator):
    bot = make_bot(emulator, connect_timeout=30.0)
    with bot:
        bot.listen("r")
        emulator.stop()
        wait_until(lambda: bot.state == "reconnecting", 10, "the bot to see the server go")
        wait_until(lambda: "refused" in (bot.health().last_error or "").lower(), 10,
                   "health().last_error to say the connection is refused")
        assert not bot.health().ok
        for _ in range(3):
            with pytest.raises(ConnectFailed):
                bot.send("r", "x", timeout=0.3)
        assert bot.stats.send_failures == 3
        # The failed sends did not hide the link's reason.
        assert "refused" in bot.health().last_error.lower()


def test_connect_failed_sends_count_as_send_failures():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Bot(TOKEN, KEY, "bot-1", url=f"http://127.0.0.1:{port}", connect_timeout=0.3) as bot:
        for _ in range(3):
            with pytest.raises(ConnectFailed, match="nothing was sent"):
                bot.send("r", "x")
        assert bot.stats.send_failures == 3
        assert "refused" in bot.health().last_error.lower()


def test_no_duplicate_warning_for_two_bots_with_different_bot_ids(emulator):
    with make_bot(emulator, bot_id="bot-a") as a, make_bot(emulator, bot_id="bot-b") as b:
        a.connect()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DuplicateBotWarning)
            b.connect()
        with make_bot(emulator, bot_id="bot-a") as c, pytest.warns(DuplicateBotWarning):
            c.connect()
