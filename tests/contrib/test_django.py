"""The Django integration and examples/django_project against the emulator.

In-process tests load the example project's settings and use Django's test
client with ``override_settings``; ``runbot`` runs as ``manage.py runbot``
in a subprocess.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("django")

import django
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "django_project"
PROC_TIMEOUT = 20.0
FAST = {"connect_timeout": 3.0, "ack_timeout": 3.0, "reconnect_delay": 0.05,
        "reconnect_delay_max": 0.5}
ENV_NAMES = ("WATCHERS_TOKEN", "WATCHERS_API_KEY", "WATCHERS_BOT_ID", "WATCHERS_URL",
             "WATCHERS_REGION", "WATCHERS_ROOMS", "WATCHERS_HANDLER")


@pytest.fixture(scope="module", autouse=True)
def django_project():
    """The example project's settings, loaded once in this process.

    ``django.setup()`` applies the project's LOGGING (the library's logger at WARNING, with a
    console handler); that is put back afterwards so later tests see the library's defaults."""
    sys.path.insert(0, str(PROJECT))
    previous = os.environ.get("DJANGO_SETTINGS_MODULE")
    library_logger = logging.getLogger("watchers_bot")
    saved = (library_logger.level, list(library_logger.handlers), library_logger.propagate)
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    try:
        django.setup()
        from django.conf import settings

        assert settings.ROOT_URLCONF == "example_project.urls"
        yield
    finally:
        if previous is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = previous
        library_logger.setLevel(saved[0])
        library_logger.handlers[:] = saved[1]
        library_logger.propagate = saved[2]


@pytest.fixture
def integration(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    from watchers_bot.contrib import django as integration

    yield integration
    integration.close_bot()


def watchers_for(emulator, **extra):
    value = {"TOKEN": "test-token", "API_KEY": "test-key", "BOT_ID": "django-bot",
             "URL": emulator.url, "ROOMS": ["room-1"], "OPTIONS": dict(FAST)}
    value.update(extra)
    return value


def test_settings_are_read(integration, emulator):
    from watchers_bot.contrib.django import conf

    with override_settings(WATCHERS=watchers_for(emulator, ROOMS="a, b,,a",
                                                 HANDLER="x.y")):
        bot = integration.get_bot()
        assert (bot.url, bot.bot_id) == (emulator.url, "django-bot")
        assert conf.rooms() == ("a", "b")
        assert conf.handler_path() == "x.y"
        assert conf.bot_kwargs()["ack_timeout"] == 3.0
        assert integration.get_bot() is bot
        assert emulator.connections == 0  # created, not connected
    # Changing WATCHERS (override_settings) closes the bot; the next one is new.
    assert bot.closed


def test_settings_fall_back_to_the_environment(integration, emulator, monkeypatch):
    monkeypatch.setenv("WATCHERS_TOKEN", "test-token")
    monkeypatch.setenv("WATCHERS_API_KEY", "test-key")
    monkeypatch.setenv("WATCHERS_BOT_ID", "env-bot")
    monkeypatch.setenv("WATCHERS_URL", emulator.url)
    monkeypatch.setenv("WATCHERS_ROOMS", "r1,r2")
    from watchers_bot.contrib.django import conf

    with override_settings(WATCHERS={"BOT_ID": "settings-bot"}):
        bot = integration.get_bot()
        assert (bot.url, bot.bot_id) == (emulator.url, "settings-bot")  # settings win
        assert conf.rooms() == ("r1", "r2")


@pytest.mark.parametrize("watchers", [
    None, {}, {"API_KEY": "k"}, {"TOKEN": "  ", "API_KEY": "k"},
])
def test_a_missing_token_names_the_setting(integration, watchers):
    with override_settings(WATCHERS=watchers), \
            pytest.raises(ImproperlyConfigured, match=r"WATCHERS\['TOKEN'\].*WATCHERS_TOKEN"):
        integration.get_bot()


def test_a_missing_api_key_and_bad_settings_are_named(integration):
    with override_settings(WATCHERS={"TOKEN": "t"}), \
            pytest.raises(ImproperlyConfigured, match=r"WATCHERS\['API_KEY'\]"):
        integration.get_bot()
    with override_settings(WATCHERS={"TOKEN": "t", "APIKEY": "k"}), \
            pytest.raises(ImproperlyConfigured, match="APIKEY"):
        integration.get_bot()
    with override_settings(WATCHERS={"TOKEN": "t", "API_KEY": "k", "REGION": "mars"}), \
            pytest.raises(ImproperlyConfigured, match="region"):
        integration.get_bot()


def test_a_send_without_bot_id_names_the_setting(integration, emulator):
    with override_settings(WATCHERS=watchers_for(emulator, BOT_ID=None)), \
            pytest.raises(ImproperlyConfigured, match=r"WATCHERS\['BOT_ID'\]"):
        integration.send("room-1", "x")


def test_send_honours_its_timeout_while_the_server_is_down(integration, emulator):
    from watchers_bot import ConnectFailed

    url = emulator.url
    emulator.stop()
    options = {**FAST, "connect_timeout": 30.0}
    with override_settings(WATCHERS=watchers_for(emulator, URL=url, ROOMS=[], OPTIONS=options)):
        start = time.monotonic()
        with pytest.raises(ConnectFailed, match="nothing was sent"):
            integration.send("room-1", "x", timeout=1)
        took = time.monotonic() - start
    assert took < 1 + 1.5, f"send(timeout=1) took {took:.1f}s"


def test_get_bot_is_one_bot_for_all_threads(integration, emulator):
    with override_settings(WATCHERS=watchers_for(emulator)):
        barrier = threading.Barrier(8, timeout=10)
        bots = []

        def worker():
            barrier.wait()
            bots.append(integration.get_bot())

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PROC_TIMEOUT)
        assert len(bots) == 8
        assert all(b is bots[0] for b in bots)


def test_the_view_sends(integration, emulator):
    from django.test import Client

    with override_settings(WATCHERS=watchers_for(emulator)):
        client = Client()
        response = client.post("/send", {"room": "room-1", "text": "hello from django"},
                               content_type="application/json")
        assert response.status_code == 200, response.content
        assert response.json() == {"ok": True, "ack": None}
        [sent] = emulator.wait_for_sent(1)
        assert (sent.room_id, sent.text, sent.user_id) == ("room-1", "hello from django",
                                                           "django-bot")
        # A second request reuses the bot's connection.
        assert client.post("/send", {"room": "room-1", "text": "again"},
                           content_type="application/json").status_code == 200
        assert emulator.connections == 1

        assert client.post("/send", {"room": "room-1"},
                           content_type="application/json").status_code == 400
        emulator.set_ack("external/send", "error")
        refused = client.post("/send", {"room": "room-1", "text": "x"},
                              content_type="application/json")
        assert refused.status_code == 502
        assert refused.json()["delivery"] == "refused"
        emulator.set_ack("external/send", "withhold")
        unknown = client.post("/send", {"room": "room-1", "text": "x", "timeout": 0.3},
                              content_type="application/json")
        assert unknown.status_code == 504
        assert unknown.json()["delivery"] == "unknown"


def test_asend_from_async_code(integration, emulator):
    import asyncio

    with override_settings(WATCHERS=watchers_for(emulator)):
        assert asyncio.run(integration.asend("room-1", "async hello")) is None
    assert emulator.wait_for_sent(1)[0].text == "async hello"


def test_the_view_answers_503_when_the_server_is_unreachable(integration, emulator):
    from django.test import Client

    url = emulator.url
    emulator.stop()
    with override_settings(WATCHERS=watchers_for(
            emulator, URL=url, OPTIONS={**FAST, "connect_timeout": 0.3})):
        response = Client().post("/send", {"room": "room-1", "text": "x"},
                                 content_type="application/json")
    assert response.status_code == 503
    assert response.json()["error"] == "ConnectFailed"


# --------------------------------------------------------------------------- runbot


def runbot(emulator, *args, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ENV_NAMES and k != "DJANGO_SETTINGS_MODULE"}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               PYTHONUNBUFFERED="1", WATCHERS_TOKEN="test-token",
               WATCHERS_API_KEY="test-key", WATCHERS_BOT_ID="django-bot",
               WATCHERS_URL=emulator.url)
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "manage.py", "runbot", *args], cwd=str(PROJECT),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(proc, sig=None):
    """Send ``sig`` (if any), wait, and return (code, stdout, stderr); never leaks the process."""
    try:
        if sig is not None:
            os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=PROC_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=PROC_TIMEOUT)
    return proc.returncode, out, err


def test_runbot_answers_and_exits_130_on_ctrl_c(emulator):
    proc = runbot(emulator)
    try:
        emulator.wait_for_listeners("room-1", timeout=PROC_TIMEOUT)
        emulator.post("room-1", "ping", user_id="alice")
        [reply] = emulator.wait_for_sent(1, timeout=10)
        assert (reply.room_id, reply.text, reply.user_id) == ("room-1", "pong", "django-bot")
    finally:
        code, _out, err = finish(proc, signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert "interrupted" in err
    emulator.wait_for_clients(0, timeout=10)


def test_runbot_options_override_settings_and_sigterm_exits_0(emulator):
    proc = runbot(emulator, "--rooms", "room-a,room-b", "room-c",
                  "--handler", "example_project.handlers.shout")
    try:
        for room in ("room-a", "room-b", "room-c"):
            emulator.wait_for_listeners(room, timeout=PROC_TIMEOUT)
        assert not emulator.listeners("room-1")
        emulator.post("room-c", "boom")  # the handler raises: logged, the loop goes on
        emulator.post("room-c", "quiet please")
        assert emulator.wait_for_sent(1, timeout=10)[0].text == "QUIET PLEASE"
    finally:
        code, _out, err = finish(proc, signal.SIGTERM)
    assert code == 0, err
    assert "raised on message" in err  # the pool's report, with its traceback
    assert err.count("Traceback") == 1  # the handler's, logged; none for the exit


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--handler", "example_project.handlers.nope"), {}, "cannot import the handler"),
    ((), {"WATCHERS_TOKEN": ""}, "WATCHERS['TOKEN'] is not set"),
])
def test_runbot_configuration_errors_are_one_line(emulator, args, env, message):
    code, _out, err = finish(runbot(emulator, *args, **env))
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_runbot_takes_a_router(emulator):
    proc = runbot(emulator, "--handler", "example_project.handlers.router")
    try:
        emulator.wait_for_listeners("room-1", timeout=PROC_TIMEOUT)
        emulator.post("room-1", "not a command")
        emulator.post("room-1", "/echo routed words")
        assert [s.text for s in emulator.wait_for_sent(1, timeout=10)] == ["routed words"]
    finally:
        code, _out, err = finish(proc, signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("workers", "answer"), [("2", "met b"), ("1", "alone")])
def test_runbot_workers_handle_rooms_at_once(emulator, workers, answer):
    scripts = str(ROOT / "tests" / "scripts")
    proc = runbot(emulator, "--rooms", "room-a,room-b", "--handler", "rendezvous.handle",
                  "--workers", workers,
                  PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""), scripts]))
    try:
        emulator.wait_for_listeners("room-b", timeout=PROC_TIMEOUT)
        # Server order: room-a first.  One worker starts it and room-b waits behind it.
        emulator.post("room-a", "wait for b")
        emulator.post("room-b", "here")
        sent = emulator.wait_for_sent(2, timeout=15)
    finally:
        code, _out, err = finish(proc, signal.SIGTERM)
    assert code == 0, err
    assert {s.room_id: s.text for s in sent} == {"room-a": answer, "room-b": "b here"}


def test_runbot_refuses_zero_workers(emulator):
    code, _out, err = finish(runbot(emulator, "--workers", "0"))
    assert code != 0
    assert "--workers: must be at least 1" in err

