"""Construction, configuration and argument checks: nothing here touches the network."""

import logging
import socket

import pytest

from watchers_bot import REGIONS, Bot, BotClosed, ConfigError, State


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("constructing or configuring a Bot must not touch the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_defaults_resolve_to_europe_and_do_not_connect():
    bot = Bot("tok-123456", "key-123456", "bot-1")
    assert bot.url == "wss://bot.watchers.io/"
    assert bot.state == State.IDLE.value == "idle"
    assert not bot.connected
    assert bot.rooms == ()
    bot.close()


@pytest.mark.parametrize(
    ("region", "url"),
    [("eu", "wss://bot.watchers.io/"), ("us", "wss://bot.us.watchers.io/"),
     ("sa", "wss://bot.sa.watchers.io/"), ("hk", "wss://bot.hk.watchers.io/"),
     ("za", "wss://bot.za.watchers.io/"), ("US", "wss://bot.us.watchers.io/")],
)
def test_regions(region, url):
    with Bot("t", "k", region=region) as bot:
        assert bot.url == url


def test_unknown_region_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown region 'mars'") as info:
        Bot("t", "k", region="mars")
    for code in REGIONS:
        assert code in str(info.value)


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:9/", "wss://example.test", "http://localhost:8765", "https://x.test/"]
)
def test_url_overrides_region(url):
    with Bot("t", "k", region="us", url=url) as bot:
        assert bot.url == url


@pytest.mark.parametrize("url", ["ftp://x.test", "127.0.0.1:80", "http://", "wss://u:p@x.test"])
def test_bad_url(url):
    with pytest.raises(ValueError, match="url"):
        Bot("t", "k", url=url)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"token": None}, TypeError, "token"),
        ({"token": ""}, ValueError, "token"),
        ({"token": 5}, TypeError, "token"),
        ({"api_key": None}, TypeError, "api_key"),
        ({"api_key": "  "}, ValueError, "api_key"),
        ({"bot_id": 7}, TypeError, "bot_id"),
        ({"bot_id": ""}, ValueError, "bot_id"),
        ({"connect_timeout": 0}, ValueError, "connect_timeout"),
        ({"connect_timeout": "5"}, TypeError, "connect_timeout"),
        ({"ack_timeout": float("inf")}, ValueError, "ack_timeout"),
        ({"ack_timeout": True}, TypeError, "ack_timeout"),
        ({"max_queue": -1}, ValueError, "max_queue"),
        ({"max_queue": 1.5}, TypeError, "max_queue"),
        ({"overflow": "block"}, ValueError, "overflow"),
        ({"reconnect_attempts": 0}, ValueError, "reconnect_attempts"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, exc, name):
    args = {"token": "t", "api_key": "k", "bot_id": "b"}
    args.update(kwargs)
    token, api_key, bot_id = args.pop("token"), args.pop("api_key"), args.pop("bot_id")
    with pytest.raises(exc, match=name):
        Bot(token, api_key, bot_id, **args)


def test_token_may_be_a_callable():
    with Bot(lambda: "fresh-token", "k") as bot:
        assert bot.state == "idle"


def test_send_and_listen_arguments_are_checked_before_connecting():
    with Bot("t", "k", "b", url="http://127.0.0.1:9") as bot:
        with pytest.raises(TypeError, match="room_id"):
            bot.send(5, "hi")
        with pytest.raises(ValueError, match="room_id"):
            bot.send("", "hi")
        with pytest.raises(TypeError, match="text"):
            bot.send("r", None)
        with pytest.raises(ValueError, match="text"):
            bot.send("r", "")
        with pytest.raises(ValueError, match="too large"):
            bot.send("r", "x" * 1_000_001)
        with pytest.raises(TypeError, match="room_id"):
            bot.send_async(None, "hi")
        with pytest.raises(TypeError, match="at least one room"):
            bot.listen()
        with pytest.raises(TypeError, match=r"listen\(\*rooms\)"):
            bot.listen(["a", "b"])
        with pytest.raises(ValueError, match="room_id"):
            bot.listen("a", " ")
        with pytest.raises(ValueError, match="timeout"):
            bot.receive(timeout=-1)
        with pytest.raises(TypeError, match="message"):
            bot.reply("not a message", "hi")
        assert bot.state == "idle"


def test_send_without_bot_id_names_bot_id():
    with Bot("t", "k", url="http://127.0.0.1:9") as bot, pytest.raises(ConfigError, match="bot_id"):
        bot.send("r", "hi")


def test_from_env(monkeypatch):
    env = {"WATCHERS_TOKEN": "tok", "WATCHERS_API_KEY": "key", "WATCHERS_BOT_ID": "b1",
           "WATCHERS_REGION": "hk"}
    with Bot.from_env(env) as bot:
        assert bot.url == REGIONS["hk"]
        assert bot.bot_id == "b1"
    env["WATCHERS_URL"] = "ws://127.0.0.1:1234"
    with Bot.from_env(env, ack_timeout=3) as bot:
        assert bot.url == "ws://127.0.0.1:1234"
    for var in ("WATCHERS_TOKEN", "WATCHERS_API_KEY"):
        missing = {k: v for k, v in env.items() if k != var}
        with pytest.raises(ConfigError, match=var):
            Bot.from_env(missing)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with Bot.from_env() as bot:
        assert bot.url == "ws://127.0.0.1:1234"


def test_repr_and_errors_never_show_secrets():
    token, key = "tok-SECRET-1234", "key-SECRET-5678"
    bot = Bot(token, key, "b", url="http://127.0.0.1:9")
    text = repr(bot) + str(bot.stats)
    assert token not in text
    assert key not in text
    assert "http://127.0.0.1:9" in repr(bot)
    assert "idle" in repr(bot)
    bot.close()


def test_calls_after_close_raise_bot_closed():
    bot = Bot("t", "k", "b", url="http://127.0.0.1:9")
    bot.close()
    bot.close()  # idempotent
    assert bot.closed
    assert bot.state == "closed"
    for call in (bot.connect, lambda: bot.listen("r"), lambda: bot.send("r", "x"),
                 lambda: bot.send_async("r", "x"), lambda: bot.receive(0.1), bot.messages):
        with pytest.raises(BotClosed):
            call()
    with pytest.raises(BotClosed), bot:
        pass


def test_url_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(ValueError, match="credentials") as info:
        Bot("t", "k", url="ftp://user:hunter2@x.test")
    assert "hunter2" not in str(info.value)


def test_importing_the_package_is_cheap():
    """The pytest plugin loads the package in every pytest session: no socketio until used."""
    import subprocess
    import sys

    code = ("import sys, watchers_bot; assert 'socketio' not in sys.modules; "
            "from watchers_bot import Bot; assert 'socketio' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_socketio_and_engineio_warnings_pass_on_as_info(caplog):
    """Their warnings repeat what the bot reports itself (lost links, late acks)."""
    from watchers_bot._logging import ENGINEIO_LOG, SOCKETIO_LOG

    # On the library's logger: an app's logging config (the Django example's LOGGING,
    # set up by tests/contrib/test_django.py in this process) may have raised its level.
    caplog.set_level(logging.INFO, logger="watchers_bot")
    SOCKETIO_LOG.warning("Unknown callback received, ignoring.")
    ENGINEIO_LOG.warning("WebSocket connection was closed, aborting")
    SOCKETIO_LOG.error("a real error")
    assert [(r.name, r.levelname) for r in caplog.records] == [
        ("watchers_bot.socketio", "INFO"), ("watchers_bot.engineio", "INFO"),
        ("watchers_bot.socketio", "ERROR"),
    ]
