"""The workers' bot: one per worker process, made on first use, reused by every task, made
afresh in each prefork child, configured from Celery settings and ``WATCHERS_*``."""

import pytest
from requirements import require_module

require_module("celery", extra="celery", what="the Celery bridge tests")

from celery import Celery  # noqa: E402
from celery_cluster import KEY, TOKEN, cluster_env, start_listener, start_worker  # noqa: E402

from watchers_bot import ConfigError  # noqa: E402
from watchers_bot.contrib.celery import Bridge  # noqa: E402


@pytest.mark.timeout(60)
def test_one_bot_per_pool_child_never_the_parents(redis_server, emu, procs, tmp_path):
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    procs.append(start_worker("w", dict(env, WATCHERS_TEST_BOT_IN_PARENT="1"), concurrency=2,
                              log_dir=str(tmp_path)))
    emu.wait_for_clients(1, timeout=30)  # the worker's main process, before it forked
    parent = set(emu.clients)
    rooms = [f"room-{n}" for n in range(8)]
    procs.append(start_listener("l", env, rooms, log_dir=str(tmp_path)))
    emu.wait_for(lambda e: all(e.listeners(r) for r in rooms), 30, what="the listener")
    listener = set().union(*(emu.listeners(r) for r in rooms))
    for i in range(10):
        for room in rooms:
            emu.post(room, f"{room}#{i}")
    emu.wait_for(lambda e: len([m for m in e.sent if m.text.startswith("re:")]) == 80, 40,
                 what="80 replies")
    senders = {m.sid for m in emu.sent if m.text.startswith("re:")}
    assert not senders & parent, "a child used the bot it inherited from the parent"
    assert 1 <= len(senders) <= 2  # one connection per pool child, not per task
    assert emu.connections == len(parent) + len(listener) + len(senders)
    assert parent <= set(emu.clients)  # the children did not close the parent's link


def test_bot_from_celery_settings_and_env(redis_server, emu, monkeypatch):
    monkeypatch.setenv("WATCHERS_TOKEN", TOKEN)
    monkeypatch.setenv("WATCHERS_API_KEY", KEY)
    monkeypatch.setenv("WATCHERS_URL", "https://bot.watchers.io/")  # the setting wins
    monkeypatch.delenv("WATCHERS_REGION", raising=False)
    app = Celery("wb", broker=redis_server.url)
    app.conf.watchers_bot = {"url": emu.url, "bot_id": "bot-7", "ack_timeout": 3.0}
    bridge = Bridge(app, lambda msg: None)
    bot = bridge.bot()
    try:
        assert bot.url.startswith(emu.url.rstrip("/"))
        assert bot.bot_id == "bot-7"
        assert bridge.bot() is bot  # made once, reused
        bot.send("room", "hi")
        assert [m.text for m in emu.wait_for_sent(1)] == ["hi"]
    finally:
        bot.close()
    assert bridge.bot() is not bot  # a closed bot is replaced
    bridge.bot().close()


def test_missing_token_names_the_variable(redis_server, monkeypatch):
    monkeypatch.delenv("WATCHERS_TOKEN", raising=False)
    monkeypatch.setenv("WATCHERS_API_KEY", KEY)
    bridge = Bridge(Celery("wb2", broker=redis_server.url), lambda msg: None)
    with pytest.raises(ConfigError, match="WATCHERS_TOKEN"):
        bridge.bot()


def test_bad_arguments():
    app = Celery("wb3", broker="redis://127.0.0.1:9/0")
    with pytest.raises(TypeError, match="handler"):
        Bridge(app, "not callable")
    with pytest.raises(ValueError, match="redis_url"):
        Bridge(Celery("wb4", broker="amqp://localhost//"), lambda msg: None)
    with pytest.raises(ValueError, match="batch"):
        Bridge(app, lambda msg: None, batch=-1)
    app.conf.watchers_lock_ttl = "soon"
    with pytest.raises(TypeError, match="lock_ttl"):
        Bridge(app, lambda msg: None)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"lock_ttl": 0}, ValueError, "lock_ttl"),
    ({"claim_ttl": "1"}, TypeError, "claim_ttl"),
    ({"reply_ttl": -5}, ValueError, "reply_ttl"),
    ({"batch": 0}, ValueError, "batch"),
    ({"batch": 1.5}, TypeError, "batch"),
])
def test_bad_settings_name_themselves(kwargs, error, match):
    # Constructing a bridge touches no network: nothing listens on this port.
    with pytest.raises(error, match=match):
        Bridge(Celery("wb5", broker="redis://127.0.0.1:9/0"), lambda msg: None, **kwargs)
