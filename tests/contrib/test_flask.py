"""The Flask integration and examples/flask_app against the emulator.

In-process tests use Flask's test client; the reloader tests run the real
``flask run --reload`` and ``python app.py`` (``app.run(debug=True)``) in
subprocesses, to check that only the serving process ever connects.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("flask")

from watchers_bot import Bot, ConfigError
from watchers_bot.contrib.flask import WatchersBot

ROOT = Path(__file__).resolve().parents[2]
APP_PATH = ROOT / "examples" / "flask_app" / "app.py"
PROC_TIMEOUT = 20.0

FAST = {"connect_timeout": 3.0, "ack_timeout": 3.0, "reconnect_delay": 0.05,
        "reconnect_delay_max": 0.5}


def load_example():
    spec = importlib.util.spec_from_file_location("flask_example_app", APP_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return load_example()


def config_for(emulator, **extra):
    config = {
        "TESTING": True,
        "WATCHERS_TOKEN": "test-token",
        "WATCHERS_API_KEY": "test-key",
        "WATCHERS_BOT_ID": "flask-bot",
        "WATCHERS_URL": emulator.url,
        "WATCHERS_ROOMS": ["room-1"],
        "WATCHERS_OPTIONS": dict(FAST),
    }
    config.update(extra)
    return config


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("WATCHERS_TOKEN", "WATCHERS_API_KEY", "WATCHERS_BOT_ID", "WATCHERS_URL",
                 "WATCHERS_REGION", "WATCHERS_ROOMS", "WATCHERS_RUN_HANDLERS",
                 "FLASK_RUN_FROM_CLI", "WERKZEUG_RUN_MAIN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_app(example, emulator, clean_env):
    apps = []

    def make(**extra):
        app = example.create_app(config_for(emulator, **extra))
        apps.append(app)
        return app

    yield make
    for app in apps:
        example.watchers.close(app)


def test_send_route_returns_the_ack(make_app, emulator, example):
    app = make_app()
    assert emulator.connections == 0  # init_app never connects
    response = app.test_client().post("/send", json={"room": "room-1", "text": "hello"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"ok": True, "ack": None}
    [sent] = emulator.wait_for_sent(1)
    assert (sent.room_id, sent.text, sent.user_id) == ("room-1", "hello", "flask-bot")


def test_bad_request_is_400(make_app):
    client = make_app().test_client()
    assert client.post("/send", json={"room": "room-1"}).status_code == 400
    response = client.post("/send", json={"room": "room-1", "text": ""})
    assert response.status_code == 400
    assert response.get_json()["error"] == "ValueError"


def test_parallel_requests_share_one_bot(make_app, emulator, example):
    app = make_app(WATCHERS_ROOMS=[])
    barrier = threading.Barrier(2, timeout=10)
    results = [None, None]
    bots = [None, None]

    def worker(i):
        client = app.test_client()
        with app.app_context():
            barrier.wait()
            bots[i] = example.watchers.bot
        results[i] = client.post("/send", json={"room": "room-1", "text": f"t{i}"})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PROC_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert [r.status_code for r in results] == [200, 200]
    assert bots[0] is bots[1]
    assert sorted(s.text for s in emulator.wait_for_sent(2)) == ["t0", "t1"]
    assert emulator.connections == 1
    assert len(emulator.clients) == 1


def test_background_handler_answers_ping_with_an_app_context(make_app, emulator, example):
    app = make_app(PONG_TEXT="pong from the app config")
    assert app.test_client().get("/health").status_code in (200, 503)  # first request starts it
    emulator.wait_for_listeners("room-1", timeout=10)
    emulator.post("room-1", "ping", user_id="alice")
    emulator.post("room-1", "not for me", user_id="alice")
    [reply] = emulator.wait_for_sent(1, timeout=10)
    assert (reply.room_id, reply.text) == ("room-1", "pong from the app config")
    with app.app_context():
        handler = example.watchers.handler_thread
    deadline = time.monotonic() + 10
    while handler.handled < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (handler.handled, handler.errors) == (2, 0)
    health = app.test_client().get("/health")
    assert health.status_code == 200
    data = health.get_json()
    assert data["state"] == "connected"
    assert data["ok"] is True
    assert data["rooms"] == ["room-1"]
    assert data["handler"]["running"] is True
    assert "test-token" not in health.get_data(as_text=True)
    assert "test-key" not in health.get_data(as_text=True)


def test_a_handler_that_raises_does_not_stop_the_loop(make_app, emulator, example, caplog):
    ext = WatchersBot()
    calls = []

    @ext.on_message
    def boom(msg):
        calls.append(msg.text)
        if msg.text == "boom":
            raise RuntimeError("handler failed")

    from flask import Flask
    app = Flask("raising")
    app.config.update(config_for(emulator))
    ext.init_app(app)
    try:
        assert ext.start(app)
        emulator.wait_for_listeners("room-1", timeout=10)
        emulator.post("room-1", "boom")
        emulator.post("room-1", "fine")
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls == ["boom", "fine"]
        with app.app_context():
            handler = ext.handler_thread
        while handler.handled + handler.errors < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (handler.handled, handler.errors) == (1, 1)
    finally:
        ext.close(app)
    assert not handler.running


def test_run_handlers_off_connects_without_listening(make_app, emulator, example):
    app = make_app(WATCHERS_RUN_HANDLERS="false")
    assert app.test_client().get("/").status_code == 404  # any request starts the bot
    emulator.wait_for_clients(1, timeout=10)
    assert not emulator.listeners("room-1")
    with app.app_context():
        assert example.watchers.handler_thread is None
        assert example.watchers.bot.rooms == ()


def test_an_extension_bound_to_one_app_works_outside_a_context(emulator, clean_env):
    from flask import Flask

    app = Flask("bound")
    app.config.update(config_for(emulator, WATCHERS_ROOMS=[]))
    ext = WatchersBot(app)
    try:
        assert ext.send("room-1", "no context needed") is None
        assert ext.health()["ok"] is True
        with pytest.raises(RuntimeError, match="already registered"):
            ext.init_app(app)
    finally:
        ext.close()
    assert emulator.wait_for_sent(1)[0].text == "no context needed"


@pytest.mark.parametrize(("mode", "status", "delivery"), [
    ("error", 502, "refused"),
    ("withhold", 504, "unknown"),
])
def test_send_errors_map_to_http_statuses(make_app, emulator, mode, status, delivery):
    client = make_app(WATCHERS_ROOMS=[]).test_client()
    emulator.set_ack("external/send", mode)
    response = client.post("/send", json={"room": "room-1", "text": "x", "timeout": 0.3})
    assert response.status_code == status
    body = response.get_json()
    assert body["ok"] is False
    assert body["delivery"] == delivery
    if status == 504:
        assert "may or may not" in body["detail"]


def test_unreachable_server_is_503(example, emulator, clean_env):
    url = emulator.url
    emulator.stop()
    app = example.create_app(config_for(emulator, WATCHERS_URL=url, WATCHERS_ROOMS=[],
                                        WATCHERS_OPTIONS={**FAST, "connect_timeout": 0.3}))
    try:
        response = app.test_client().post("/send", json={"room": "room-1", "text": "x"})
        assert response.status_code == 503
        assert response.get_json()["error"] == "ConnectFailed"
        assert response.get_json()["delivery"] == "not sent"
        assert app.test_client().get("/health").status_code == 503
    finally:
        example.watchers.close(app)


def test_send_helper_honours_its_timeout_while_the_server_is_down(example, emulator, clean_env):
    from watchers_bot import ConnectFailed

    url = emulator.url
    emulator.stop()
    app = example.create_app(config_for(emulator, WATCHERS_URL=url, WATCHERS_ROOMS=[],
                                        WATCHERS_OPTIONS={**FAST, "connect_timeout": 30.0}))
    try:
        with app.app_context():
            start = time.monotonic()
            with pytest.raises(ConnectFailed, match="nothing was sent"):
                example.watchers.send("room-1", "x", timeout=1)
            took = time.monotonic() - start
        assert took < 1 + 1.5, f"send(timeout=1) took {took:.1f}s"
    finally:
        example.watchers.close(app)


def test_health_view_is_503_when_the_server_refuses_the_rooms(make_app, emulator):
    # A wrong API key: the link is up, but the server refuses every listen (401).
    client = make_app(WATCHERS_API_KEY="wrong-key").test_client()
    client.get("/health")  # the first request starts the bot

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = client.get("/health")
        if response.get_json().get("refused"):
            break
        time.sleep(0.05)
    assert response.status_code == 503
    body = response.get_json()
    assert body["state"] == "connected"  # connected, yet not healthy
    assert body["ok"] is False
    assert list(body["refused"]) == ["room-1"]
    assert "401" in body["refused"]["room-1"]
    assert "wrong-key" not in response.get_data(as_text=True)


def test_missing_settings_name_the_key(example, clean_env):
    app = example.create_app({"WATCHERS_API_KEY": "k"})
    try:
        with app.app_context(), pytest.raises(ConfigError, match="WATCHERS_TOKEN"):
            _ = example.watchers.bot
        # Requests that don't use the bot still work; health says what is wrong.
        response = app.test_client().get("/health")
        assert response.status_code == 503
        assert "WATCHERS_TOKEN" in response.get_json()["start_error"]
    finally:
        example.watchers.close(app)


def test_settings_fall_back_to_the_environment(example, emulator, clean_env, monkeypatch):
    monkeypatch.setenv("WATCHERS_TOKEN", "test-token")
    monkeypatch.setenv("WATCHERS_API_KEY", "test-key")
    monkeypatch.setenv("WATCHERS_BOT_ID", "env-bot")
    monkeypatch.setenv("WATCHERS_URL", emulator.url)
    monkeypatch.setenv("WATCHERS_ROOMS", "room-a, room-b")
    app = example.create_app({"WATCHERS_BOT_ID": "config-bot"})
    try:
        with app.app_context():
            bot = example.watchers.bot
            assert isinstance(bot, Bot)
            assert (bot.url, bot.bot_id) == (emulator.url, "config-bot")  # config wins
            assert app.extensions["watchers_bot"].rooms == ("room-a", "room-b")
    finally:
        example.watchers.close(app)


def test_a_flask_cli_process_that_does_not_serve_does_not_start(make_app, emulator,
                                                                example, monkeypatch):
    app = make_app()
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # the reloader's watcher, flask routes...
    assert example.watchers.start(app) is False
    assert emulator.connections == 0
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")  # the reloader's serving child
    assert example.watchers.start(app) is True
    emulator.wait_for_listeners("room-1", timeout=10)
    assert emulator.connections == 1


FORK_SCRIPT = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("example_app", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
app = mod.create_app({"WATCHERS_ROOMS": []})
with app.app_context():
    parent_bot = mod.watchers.bot
    parent_bot.send("room-1", "before fork")
pid = os.fork()                      # as gunicorn --preload forks its workers
if pid == 0:
    with app.app_context():
        child_bot = mod.watchers.bot
        assert child_bot is not parent_bot
        child_bot.send("room-1", "from the child")
    sys.exit(0)                      # exit hooks run here: the parent's bot must be left alone
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
with app.app_context():
    assert mod.watchers.bot is parent_bot
    parent_bot.send("room-1", "after fork")
assert parent_bot.stats.reconnects == 0, parent_bot.stats
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_gets_its_own_bot_and_leaves_the_parents_alone(emulator):
    proc = subprocess.Popen([sys.executable, "-c", FORK_SCRIPT, str(APP_PATH)],
                            env=subprocess_env(emulator), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=PROC_TIMEOUT)
    finally:
        if proc.poll() is None:  # a hung child: kill the whole group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=PROC_TIMEOUT)
    assert proc.returncode == 0, err
    assert out.strip() == "ok"
    assert "DuplicateBotWarning" not in err  # the inherited bot is not counted as open
    assert [s.text for s in emulator.sent] == ["before fork", "from the child", "after fork"]
    assert emulator.connections == 2
    emulator.wait_for_clients(0, timeout=10)


def test_importing_the_package_imports_no_framework():
    code = ("import sys, watchers_bot, watchers_bot.contrib, watchers_bot.emulator;"
            "bad = [m for m in ('flask', 'django') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=PROC_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- real servers


def subprocess_env(emulator, **extra):
    env = dict(os.environ)
    for name in ("FLASK_RUN_FROM_CLI", "WERKZEUG_RUN_MAIN", "WERKZEUG_SERVER_FD",
                 "FLASK_APP", "FLASK_DEBUG", "WATCHERS_REGION"):
        env.pop(name, None)
    env.update(
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT),
        WATCHERS_TOKEN="test-token", WATCHERS_API_KEY="test-key", WATCHERS_BOT_ID="flask-bot",
        WATCHERS_URL=emulator.url, WATCHERS_ROOMS="room-1",
    )
    env.update(extra)
    return env


class Server:
    """A server subprocess in a session of its own; killed (whole group) at the end."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(args, env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines = []
        self._port = None
        self._found = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
            if match and self._port is None:
                self._port = int(match.group(1))
                self._found.set()
        self._found.set()

    def port(self):
        assert self._found.wait(PROC_TIMEOUT), "server did not start"
        assert self._port is not None, "".join(self.lines)
        return self._port

    def get(self, path):
        url = f"http://127.0.0.1:{self.port()}{path}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=PROC_TIMEOUT) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(PROC_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(PROC_TIMEOUT)
        self._reader.join(PROC_TIMEOUT)
        return "".join(self.lines)


def check_one_bot_in_the_serving_process(server, emulator):
    server.port()
    # The watcher process loaded the app before printing this line, and
    # starting the bot would connect at once: nobody may be connected yet.
    assert emulator.connections == 0
    status, data = server.get("/health")  # the serving child starts its bot
    assert status in (200, 503), data
    emulator.wait_for_listeners("room-1", timeout=10)
    emulator.post("room-1", "ping", user_id="alice")
    [reply] = emulator.wait_for_sent(1, timeout=10)
    assert reply.text == "pong"
    assert emulator.connections == 1
    output = server.stop()
    assert "Traceback" not in output, output
    emulator.wait_for_clients(0, timeout=10)  # closed cleanly at exit
    assert len(emulator.sent) == 1  # one bot answered, once


def test_flask_run_with_the_reloader_connects_once(emulator):
    server = Server([sys.executable, "-m", "flask", "--app", f"{APP_PATH}:create_app",
                     "run", "--reload", "--port", "0"], subprocess_env(emulator))
    try:
        check_one_bot_in_the_serving_process(server, emulator)
    finally:
        server.stop()


def test_app_run_debug_connects_once(emulator):
    server = Server([sys.executable, str(APP_PATH)],
                    subprocess_env(emulator, FLASK_DEBUG="1", PORT="0"))
    try:
        check_one_bot_in_the_serving_process(server, emulator)
        assert any("Restarting with" in line for line in server.lines)  # the reloader ran
    finally:
        server.stop()


@contextlib.contextmanager
def flask_watchers_run(app, *args, env):
    """``flask --app APP watchers run ARGS`` in a process group of its own; never leaked."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", app, "watchers", "run", *args],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=PROC_TIMEOUT)


def stop(proc, sig):
    """Send ``sig`` to the process group; its (returncode, stderr)."""
    os.killpg(proc.pid, sig)
    _out, err = proc.communicate(timeout=PROC_TIMEOUT)
    return proc.returncode, err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_flask_watchers_run_handles_messages_and_stops_cleanly(emulator, sig, code):
    with flask_watchers_run(f"{APP_PATH}:create_app", env=subprocess_env(emulator)) as proc:
        emulator.wait_for_listeners("room-1", timeout=PROC_TIMEOUT)
        emulator.post("room-1", "ping")
        assert emulator.wait_for_sent(1, timeout=10)[0].text == "pong"
        returncode, err = stop(proc, sig)
    assert returncode == code, err
    assert "Traceback" not in err, err
    emulator.wait_for_clients(0, timeout=10)


def test_a_router_is_a_flask_handler_and_its_returned_text_the_reply(emulator, clean_env):
    from flask import Flask

    from watchers_bot import Router

    router = Router()
    router.command("ping")(lambda msg, ctx: "pong " + ctx.args)
    ext = WatchersBot()
    ext.on_message(router)
    app = Flask("routed")
    app.config.update(config_for(emulator))
    ext.init_app(app)
    try:
        assert ext.start(app)
        emulator.wait_for_listeners("room-1", timeout=10)
        emulator.post("room-1", "no command")
        emulator.post("room-1", "/ping 7")
        assert [s.text for s in emulator.wait_for_sent(1, timeout=10)] == ["pong 7"]
        assert router.unmatched == 1
    finally:
        ext.close(app)


@pytest.mark.parametrize(("workers", "answer"), [("2", "met b"), ("1", "alone")])
def test_flask_watchers_run_workers_handle_rooms_at_once(emulator, workers, answer):
    scripts = ROOT / "tests" / "scripts"
    env = subprocess_env(emulator, WATCHERS_ROOMS="room-a,room-b",
                         PYTHONPATH=os.pathsep.join([str(ROOT), str(scripts)]))
    with flask_watchers_run("rendezvous:create_app", "--workers", workers, env=env) as proc:
        emulator.wait_for_listeners("room-b", timeout=PROC_TIMEOUT)
        # Server order: room-a first.  One worker starts it and room-b waits behind it.
        emulator.post("room-a", "wait for b")
        emulator.post("room-b", "here")
        sent = emulator.wait_for_sent(2, timeout=15)
        returncode, err = stop(proc, signal.SIGTERM)
    assert returncode == 0, err
    assert {s.room_id: s.text for s in sent} == {"room-a": answer, "room-b": "b here"}
